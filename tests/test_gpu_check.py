"""benchmarks/gpu_check.py on the CPU (``--device cpu``: a ~10M-parameter model), so the script
that measures every CUDA path cannot rot between the runs that have a GPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_every_path_on_the_cpu(tmp_path, smollm2_tokenizer_dir):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/gpu_check.py"),
            "--device",
            "cpu",
            "--tokenizer",
            str(smollm2_tokenizer_dir),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    runs = {r["run"]: r for r in result["runs"]}
    assert set(runs) == {
        "train-ask",
        "train-chat",
        "train-chat-lora",
        "train-dpo",
        "train-chat-padded",
        "generate",
        "synthesize",
    }
    assert all(r["tokens_per_s"] > 0 and r["device"] == "cpu" for r in runs.values())
    trained = [r for name, r in runs.items() if name.startswith("train-")]
    assert all(r["saved"] and r["timed_steps"] >= 1 for r in trained)  # saved (LoRA merged) after training
    assert runs["train-chat"]["padding_share"] == 0.0 < runs["train-chat-padded"]["padding_share"]
    assert runs["generate"]["ok"] == runs["generate"]["prompts"] and runs["synthesize"]["sessions"] > 0
    summary = result["summary"]
    assert summary["all_on_device"] and not summary["failed"] and summary["packed_vs_padded"] > 0
    assert "packed vs padded tokens/s" in proc.stdout and "every run on cpu: yes" in proc.stdout
