"""How busy the machine is, as the in-process engines judge it before they pick their threads."""

from __future__ import annotations

import os
import subprocess
import sys

from parrot.backends import cpu


def test_a_machine_whose_cores_are_all_at_work_gets_one_thread():
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        assert cpu.busy_cores(window=1.0) >= 0.75 * (os.cpu_count() or 1)
        assert cpu.busy_machine_threads("test") == (1 if (os.cpu_count() or 1) > 1 else None)
    finally:
        for p in spinners:
            p.kill()


def test_the_load_average_lags_so_it_is_only_the_fallback(monkeypatch):
    """A step that has just ended leaves the 1-minute load average high on an idle machine: where
    /proc/stat tells the work of the last half second, the load average is not read."""
    monkeypatch.setattr(os, "getloadavg", lambda: (99.0, 99.0, 99.0))
    if cpu._cpu_times() is not None:
        assert cpu.busy_cores(window=0.2) <= os.cpu_count()
    monkeypatch.setattr(cpu, "_cpu_times", lambda: None)
    assert cpu.busy_cores() == 99.0
