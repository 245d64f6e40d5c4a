"""Keep freed memory in the process, so that each training step reuses the last one's.

On Linux, PyTorch's CPU tensors come from glibc's ``malloc``. A training step
allocates and frees the same large buffers (activations, gradients) every
time, and by default glibc hands large freed blocks back to the kernel:
blocks it served with an ``mmap`` of their own are unmapped on ``free``, and
free memory at the top of the heap beyond a threshold is released. The next
step page-faults that memory in again, and the kernel zeroes every new page:
with bf16 autocast and channels-last, thousands of page faults per update and
about a tenth of the CPU time spent in the kernel (``bench/allocator.py``).
Raising glibc's mmap and trim thresholds (``mallopt``) keeps those blocks in
the process for reuse.
Tools built for CPU training do the same by preloading jemalloc or tcmalloc;
this needs no extra library and no change to how Python is started.

The price: memory freed late in a run is not handed back to the system until
the process ends (the peak is what it was). GPU memory is not affected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap and are reused: more than any
# buffer of a training step here (a batch of 512 in float32 through the first
# 32-filter conv is 51 MB). glibc releases that refuse more than the documented
# maximum (32 MiB on 64-bit machines) get that instead.
MMAP_THRESHOLD = 256 * 2**20
MMAP_THRESHOLD_CAP = 32 * 2**20
# Free memory at the top of the heap is returned to the kernel only beyond this.
TRIM_THRESHOLD = 1024 * 2**20


def reuse_freed_memory() -> bool:
    """Make glibc keep and reuse freed blocks instead of unmapping them; True if it applied.

    Does nothing (returns False) where the C library is not glibc: macOS,
    Windows, musl-based Linux.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no C library found, or one without mallopt (musl)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mmap_set = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) or mallopt(
        M_MMAP_THRESHOLD, MMAP_THRESHOLD_CAP
    )
    trim_set = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    applied = bool(mmap_set and trim_set)
    log.debug("reuse_freed_memory: mallopt %s", "applied" if applied else "refused")
    return applied
