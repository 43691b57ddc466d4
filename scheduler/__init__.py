"""Valley: a workload placement scheduler for the Beijing-Hebei Cloud Computing Valley."""

__version__ = "0.1.0"
