"""Benchmark suites of ``valley bench``: quality and speed side by side with peers."""
