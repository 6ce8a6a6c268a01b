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
import time

log = logging.getLogger("parrot.backends")


def busy_machine_threads(engine: str) -> int | None:
    """1 when the machine is already busy (at least 3/4 of its cores at work, :func:`busy_cores`),
    else None (the engine's default: all cores). Only used when the role sets no ``threads``."""
    cores = os.cpu_count() or 1
    busy = busy_cores()
    if cores > 1 and busy is not None and busy >= 0.75 * cores:
        log.info(
            "machine busy (%.1f of %d cores at work): %s uses 1 thread; set threads=N to choose", busy, cores, engine
        )
        return 1
    return None


def busy_cores(window: float = 0.5) -> float | None:
    """How many cores' worth of work the machine is doing now: measured over ``window`` seconds from
    ``/proc/stat`` (Linux), else the 1-minute load average (None where neither is known). Not the
    load average where it can be helped: it lags a minute behind, so a pipeline's step that has
    just ended would make the next one think the machine busy."""
    first = _cpu_times()
    if first is None:
        try:
            return os.getloadavg()[0]
        except OSError:
            return None
    time.sleep(window)
    second = _cpu_times()
    total, idle = second[0] - first[0], second[1] - first[1]
    return (os.cpu_count() or 1) * (total - idle) / total if total > 0 else None


def _cpu_times() -> tuple[int, int] | None:
    """(all, idle + iowait) clock ticks of every core since boot, from ``/proc/stat``'s ``cpu`` line."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]), fields[3] + fields[4]) if len(fields) >= 5 else None
