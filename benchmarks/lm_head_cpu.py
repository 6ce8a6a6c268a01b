"""CPU training step: TRL's fused LM head on every position (TRL's CPU default, the baseline)
against Parrot's ``compact_lm_head`` (only the positions that carry a label).

Same model, same ShareGPT sessions, same packed batches, same seed, for both training views:
``ask`` (loss on the user turns: a small share of the tokens) and ``chat`` (the assistant turns).
Each run is its own process. Printed per view: trainable tokens/s of each mode, their ratio, and
the difference between the two runs' training losses at the first step (the same computation:
float noise) and the largest over all steps (Adam's updates let that noise grow a little).

    .venv/bin/python benchmarks/lm_head_cpu.py                       # SmolLM2-135M, ~6 min on 2 cores
    .venv/bin/python benchmarks/lm_head_cpu.py --views ask --steps 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("every", "labelled")  # baseline first


def run_mode(mode: str, view: str, model: Path, args) -> dict:
    """Train ``args.steps`` packed steps in one mode; return step times, tokens and losses."""
    from transformers import TrainerCallback

    from parrot.config import build_config
    from parrot.train.config import SFTTrainConfig
    from parrot.train.runtime import compact_lm_head
    from parrot.train.sft import ask_view, build_dataset, chat_view, load_tokenizer, sft_trainer

    tok = load_tokenizer(model)
    cfg = build_config(SFTTrainConfig, {"data": [str(args.data)], "output": str(args.tmp / f"{view}-{mode}"),
                                        "model": str(model), "max_length": args.max_length}, extra_field="trl_args")
    counts: dict = {}
    ds = build_dataset(cfg.data, tok, ask_view() if view == "ask" else chat_view, cfg.max_length,
                       str(args.tmp / f"cache-{view}"), counts, limit=args.sessions)
    cfg.trl_args.update(per_device_train_batch_size=args.batch, max_steps=args.steps, logging_steps=1,
                        disable_tqdm=True, seed=0, learning_rate=1e-4)
    trainer = sft_trainer(cfg, tok, model, ds)  # what train-ask / train-chat build

    trainable: list[int] = []
    collate = trainer.data_collator

    def counting_collator(examples):
        trainable.append(sum(sum(1 for x in e["labels"] if x != -100) for e in examples))
        return collate(examples)

    step_ends: list[float] = []

    class StepTimes(TrainerCallback):
        def on_step_end(self, *a, **kw):
            step_ends.append(time.perf_counter())

    trainer.data_collator = counting_collator
    trainer.add_callback(StepTimes())
    with compact_lm_head(enabled=mode == "labelled") as active:
        trainer.train()
    assert active == (mode == "labelled"), "this TRL's fused LM head is not the one compact_lm_head knows"
    # the first step is warm-up and not timed; step k trains batch k
    seconds = step_ends[-1] - step_ends[0]
    tokens = sum(trainable[1:len(step_ends)])
    return {"mode": mode, "view": view, "seconds": seconds, "trainable_tokens": tokens,
            "tokens_per_s": tokens / seconds,
            "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2", help="smollm2, small (random 4-layer Llama), or a checkpoint path")
    p.add_argument("--data", type=Path, default=ROOT / "data" / "sharegpt.jsonl")
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--batch", type=int, default=2, help="packed rows per step")
    p.add_argument("--steps", type=int, default=6, help="optimizer steps (the first is not timed)")
    p.add_argument("--views", default="ask,chat")
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # child process
    p.add_argument("--view", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.mode:  # child: one run, JSON on the last stdout line
        print(json.dumps(run_mode(args.mode, args.view, args.model_dir, args)))
        return 0

    if not args.data.is_file():
        subprocess.run([sys.executable, "-m", "parrot.cli", "prepare", "sharegpt", "-o", str(args.data),
                        "--dev-fraction", "0.02"], check=True)
    from parrot.checkpoint import resolve_model_path
    from train_throughput import small_model

    rows = []
    with tempfile.TemporaryDirectory(prefix="parrot-lm-head-") as tmp:
        tmp = Path(tmp)
        model = small_model(tmp / "model") if args.model == "small" else resolve_model_path(args.model)
        for view in args.views.split(","):
            runs = {}
            for mode in MODES:
                cmd = [sys.executable, __file__, "--mode", mode, "--view", view, "--model-dir", str(model),
                       "--tmp", str(tmp), "--data", str(args.data), "--sessions", str(args.sessions),
                       "--max-length", str(args.max_length), "--batch", str(args.batch), "--steps", str(args.steps)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    sys.stderr.write(proc.stderr[-4000:])
                    return 1
                runs[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            base, new = runs["every"], runs["labelled"]
            diffs = [abs(a - b) for a, b in zip(base["losses"], new["losses"])]
            rows.append((view, base["tokens_per_s"], new["tokens_per_s"], diffs[0], max(diffs)))
    print(f"model={args.model} sessions={args.sessions} max_length={args.max_length} batch={args.batch} "
          f"steps={args.steps} (trainable tokens/s; the first step not timed)")
    print(f"{'view':5} {'every position':>14} {'labelled only':>13} {'speed-up':>8} {'step-1 loss diff':>16} "
          f"{'max loss diff':>13}")
    for view, base, new, first, drift in rows:
        print(f"{view:5} {base:>14.1f} {new:>13.1f} {new / base:>7.2f}x {first:>16.2e} {drift:>13.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
