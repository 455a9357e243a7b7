"""glibc malloc thresholds that keep TLS reads off the kernel's memory-mapping path.

uvloop's TLS transport asks ``SSLObject.read`` for up to 256 KiB on every read; CPython allocates
a bytes object of that size and shrinks it to what was read. Past glibc's default mmap threshold
(128 KiB, which never adapts upward here because the chunk is shrunk before it is freed) each such
allocation is an mmap, a page fault or two, an mremap and a munmap: about a fifth of the CPU a small
HTTPS request costs the server (and the client). With the threshold at 1 MiB and top-of-heap trimming
past 32 MiB, the buffer is carved from the heap and handed back to it, and the syscalls disappear.
The same is done by the MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ environment variables,
which are honoured instead when set.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20
TRIM_THRESHOLD = 32 << 20


def tune() -> bool:
    """Set the thresholds (glibc only; elsewhere, or when the environment sets them, do nothing)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        # the process's own symbols (libc is loaded): no library search, which would cost ~0.1 s
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.debug("malloc thresholds set: %s", ok)
    return ok
