"""Timing windows that notice when other processes took CPU time during them.

This machine is shared: a timing is only fair if nothing else ran meanwhile.
A :class:`Window` measures wall time, the CPU time of this process (all its
threads) and the CPU time of the whole machine (``/proc/stat``); the difference
is what other processes (or the hypervisor) used, in cores. A benchmark repeats
a window whose ``others_cores`` is above its limit.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import resource  # Unix only
except ImportError:  # pragma: no cover
    resource = None

PROC_STAT = Path("/proc/stat")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent not idle since boot (None where /proc/stat is missing)."""
    try:
        fields = PROC_STAT.read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / TICKS_PER_SECOND


@dataclass
class Window:
    """One timed interval: ``with Window() as w: ...``, then ``w.seconds``, ``w.others_cores``."""

    seconds: float = 0.0
    own_cpu_seconds: float = 0.0
    others_cores: float = 0.0  # mean number of cores others kept busy (0 when unknown)
    # This process's time in the kernel and its minor page faults (0 where unknown).
    system_seconds: float = 0.0
    minor_faults: int = 0

    def __enter__(self) -> Window:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._busy = machine_busy_seconds()
        self._usage = resource.getrusage(resource.RUSAGE_SELF) if resource else None
        self._own = time.process_time()
        self._wall = time.perf_counter()

    def stop(self) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.own_cpu_seconds = time.process_time() - self._own
        if self._usage is not None:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            self.system_seconds = usage.ru_stime - self._usage.ru_stime
            self.minor_faults = usage.ru_minflt - self._usage.ru_minflt
        busy = machine_busy_seconds()
        if busy is not None and self._busy is not None and self.seconds > 0:
            others = busy - self._busy - self.own_cpu_seconds
            self.others_cores = max(0.0, others / self.seconds)
