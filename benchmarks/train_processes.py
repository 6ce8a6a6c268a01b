"""One process against several: the same training, the same global batch, the same loss curve?

Trains a random-weight Llama (built from a config, with the SmolLM2 tokenizer) with ``parrot
train-chat`` twice: in one process with a per-device batch of P x B, then in P processes of B
each (``--accelerate multi-cpu`` on a CPU: torchrun and gloo; ``multi-gpu`` where there are P
GPUs). Each step sees the same sessions in both runs: accelerate deals one process's batches out
to the ranks in turn, from the same shuffled order. It prints both loss curves, their largest
relative difference (what the two-process tests hold to 1e-3), the world size each manifest
recorded, and the seconds of each run as a ratio (on a 2-core CPU two processes only share the
cores: the ratio says what the launch costs, not a speed-up).

    .venv/bin/python benchmarks/train_processes.py                 # 2 CPU processes, ~1 minute
    .venv/bin/python benchmarks/train_processes.py --lora --steps 12
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gpu_check

SHAPES = {
    "cpu": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    ),
    "cuda": gpu_check.MODELS["cuda"]["0.5B"],
}


def train(data: Path, model: Path, out: Path, processes: int, batch: int, args, device: str) -> dict:
    """``parrot train-chat`` in ``processes`` processes of ``batch`` sessions each; its manifest and seconds."""
    cmd = [str(Path(sys.executable).with_name("parrot")), "train-chat", str(data), "-o", str(out)]
    cmd += ["--model", str(model), "--max-length", str(args.max_length), *(["--lora"] if args.lora else [])]
    cmd += [f"max_steps={args.steps}", f"per_device_train_batch_size={batch}", "learning_rate=1e-3"]
    cmd += ["logging_steps=1", "disable_tqdm=true"]
    if processes > 1:
        cmd += ["--accelerate", "multi-gpu" if device == "cuda" else "multi-cpu", "--num-processes", str(processes)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PARROT_NO_PROGRESS": "1"})
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text(encoding="utf-8"))
    return {"manifest": manifest, "seconds": seconds, "curve": [loss for _, loss in manifest["loss_curve"]]}


def compare(tmp: Path, args, device: str) -> dict:
    """Both runs in ``tmp``; the figures."""
    from parrot.core.tokens import tokenizer_path

    tmp.mkdir(parents=True, exist_ok=True)
    sessions, _ = gpu_check.write_data(tmp, args.sessions)
    model, params = gpu_check.build_model(tmp / "model", tokenizer_path("smollm2"), SHAPES[device])
    one = train(sessions, model, tmp / "one", 1, args.processes * args.batch, args, device)
    many = train(sessions, model, tmp / "many", args.processes, args.batch, args, device)
    pairs = list(zip(one["curve"], many["curve"], strict=True))
    return {
        "params": params,
        "steps": len(pairs),
        "curves": {"one": one["curve"], "many": many["curve"]},
        "max_relative_difference": max(abs(b - a) / abs(a) for a, b in pairs),
        "distributed": {"one": one["manifest"]["distributed"], "many": many["manifest"]["distributed"]},
        "seconds": {"one": round(one["seconds"], 1), "many": round(many["seconds"], 1)},
    }


def show(result: dict, processes: int) -> None:
    print(f"{'step':>4}  {'1 process':>10}  {f'{processes} processes':>12}")
    for step, (a, b) in enumerate(zip(result["curves"]["one"], result["curves"]["many"], strict=True), 1):
        print(f"{step:>4}  {a:>10.5f}  {b:>12.5f}")
    d = result["distributed"]
    print(f"world size recorded: {d['one']['world_size']} and {d['many']['world_size']} ({d['many']['type']})")
    print(f"global batch: {d['one']['global_batch']} and {d['many']['global_batch']}")
    print(
        f"largest relative difference of the loss over {result['steps']} steps: {result['max_relative_difference']:.1e}"
    )
    s = result["seconds"]
    print(f"seconds: {s['one']} (1 process), {s['many']} ({processes}): ratio {s['many'] / s['one']:.2f}x")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--batch", type=int, default=2, help="sessions per process per step")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--sessions", type=int, default=64)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--lora", action="store_true")
    args = p.parse_args()
    import torch

    device = "cuda" if torch.cuda.device_count() >= args.processes else "cpu"
    with tempfile.TemporaryDirectory(prefix="parrot-processes-") as tmp:
        result = compare(Path(tmp), args, device)
    show(result, args.processes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
