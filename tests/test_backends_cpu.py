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


def test_llama_cpp_servers_loaded_together_share_out_the_cores(monkeypatch, tmp_path):
    """synthesize's asker and assistant, both llama.cpp in this process: each takes its share of
    the cores (each on every core, their threads would wait on each other's); a role that sets
    ``threads`` keeps it, and one model alone, or a model that is not a llama.cpp server, is left
    to its own choice."""
    from parrot.backends import BackendConfig
    from parrot.backends.executor import Executor
    from parrot.core.config import build_config

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    local = Executor()

    def threads(spec, models, **options):
        role = build_config(BackendConfig, {"spec": spec, **options})
        return local.load_backend(role, models=models).config.threads

    (tmp_path / "x.gguf").write_bytes(b"GGUF")  # neither is loaded: the backends are made, not started
    (tmp_path / "config.json").write_text("{}")
    assert threads("smollm2", 2) == 4 and threads("smollm2", 3) == 2 and threads(f"gguf:{tmp_path}/x.gguf", 2) == 4
    assert threads("smollm2", 2, threads=8) == 8
    assert threads("smollm2", 1) is None and threads(f"hf:{tmp_path}", 2) is None
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert threads("smollm2", 3) == 1
