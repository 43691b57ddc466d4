"""Resource vectors: CPU millicores, memory MiB, whole GPUs and a fractional GPU share.

In a request, ``gpus`` is a number of whole GPUs and ``gpu_millis`` (1..999) a share of one GPU;
at most one of the two is non-zero. In a capacity, ``gpus`` counts physical GPUs and
``gpu_millis`` is ``gpus * 1000``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from scheduler.domain.errors import ValidationError

GPU_MILLIS = 1000
MAX_CPU_MILLIS = 10_000_000  # 10,000 cores: larger than any node by far, rejects absurd input
MAX_MEMORY_MIB = 1 << 30  # 1 PiB
MAX_GPUS = 1024


@dataclass(frozen=True, slots=True)
class Resources:
    cpu_millis: int = 0
    memory_mib: int = 0
    gpus: int = 0
    gpu_millis: int = 0

    @property
    def gpu_demand_millis(self) -> int:
        """GPU demand of a request in millis: whole GPUs count 1000 each."""
        return self.gpus * GPU_MILLIS + self.gpu_millis

    @property
    def wants_gpu(self) -> bool:
        return self.gpus > 0 or self.gpu_millis > 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.cpu_millis + other.cpu_millis,
            self.memory_mib + other.memory_mib,
            self.gpus + other.gpus,
            self.gpu_millis + other.gpu_millis,
        )

    def scaled(self, k: int) -> Resources:
        return Resources(
            self.cpu_millis * k, self.memory_mib * k, self.gpus * k, self.gpu_millis * k
        )

    def validate_request(self, field: str = "resources") -> Resources:
        """Check the rules of a per-replica request; raises ValidationError naming the field."""
        for violation in self.request_violations(field):
            raise violation
        return self

    def request_violations(self, field: str = "resources") -> Iterator[ValidationError]:
        """Every rule of a per-replica request this one breaks, at most one per resource."""
        checks: list[tuple[str, int, int, int]] = [
            ("cpu_millis", self.cpu_millis, 1, MAX_CPU_MILLIS),
            ("memory_mib", self.memory_mib, 1, MAX_MEMORY_MIB),
            ("gpus", self.gpus, 0, MAX_GPUS),
            ("gpu_millis", self.gpu_millis, 0, GPU_MILLIS - 1),
        ]
        for name, value, low, high in checks:
            if not isinstance(value, int) or isinstance(value, bool):
                yield ValidationError(f"{field}.{name}", "must be an integer")
            elif value < low:
                rule = "must be > 0" if low == 1 else f"must be >= {low}"
                yield ValidationError(f"{field}.{name}", f"{rule} (got {value})")
            elif value > high:
                yield ValidationError(f"{field}.{name}", f"must be <= {high} (got {value})")
        if self.gpus and self.gpu_millis:
            yield ValidationError(
                f"{field}.gpu_millis",
                "at most one of gpus (whole GPUs) and gpu_millis (a share of one GPU) may be set",
            )
