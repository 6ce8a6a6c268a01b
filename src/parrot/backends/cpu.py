"""CPU thread counts for in-process engines on a machine that may already be busy.

llama.cpp's threads and torch's intra-op (OpenMP) threads meet at a barrier after every
operation: when the OS deschedules one of them, the others wait. On an idle machine all cores
help; on an overloaded one a single thread is far faster. Measured on a shared 2-core machine
at load ~12: a 4-slot llama.cpp SmolLM2 server gave 1.9 tok/s with 2 threads and 25-29 tok/s
with 1; transformers SmolLM2 at batch 8 gave 1.3-1.5 tok/s with 2 torch threads and 14-16 with 1.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("parrot.backends")


def busy_machine_threads(engine: str) -> int | None:
    """1 when the machine is already busy (1-minute load average >= cores), else None (the
    engine's default: all cores). Only used when the role sets no ``threads``."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cores = os.cpu_count() or 1
    if cores > 1 and load >= cores:
        log.info("machine busy (load %.1f on %d cores): %s uses 1 thread; set threads=N to choose", load, cores, engine)
        return 1
    return None
