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
import time
from pathlib import Path

from train_throughput import run_child, training_run_args, workspace

MODES = ("every", "labelled")  # baseline first


def run_mode(mode: str, view: str, model: Path, args) -> dict:
    """Train ``args.steps`` packed steps in one mode; return step times, tokens and losses."""
    from transformers import TrainerCallback

    from parrot.core.config import build_config
    from parrot.core.tokens import load_tokenizer
    from parrot.train.config import SFTTrainConfig
    from parrot.train.cpu import compact_lm_head
    from parrot.train.sft import ask_view, build_dataset, chat_view, sft_trainer

    tok = load_tokenizer(model)
    cfg = build_config(
        SFTTrainConfig,
        {
            "data": [str(args.data)],
            "output": str(args.tmp / f"{view}-{mode}"),
            "model": str(model),
            "max_length": args.max_length,
        },
        extra_field="trl_args",
    )
    counts: dict = {}
    ds = build_dataset(
        cfg.data,
        tok,
        ask_view() if view == "ask" else chat_view,
        cfg.max_length,
        str(args.tmp / f"cache-{view}"),
        counts,
        limit=args.sessions,
    )
    cfg.trl_args.update(
        per_device_train_batch_size=args.batch,
        max_steps=args.steps,
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
        learning_rate=1e-4,
    )
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
    tokens = sum(trainable[1 : len(step_ends)])
    return {
        "mode": mode,
        "view": view,
        "seconds": seconds,
        "trainable_tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    training_run_args(
        p, model="smollm2", sessions=200, max_length=1024, batch=2, steps=6, batch_help="packed rows per step"
    )
    p.add_argument("--views", default="ask,chat")
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # child process
    p.add_argument("--view", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.mode:  # child: one run, JSON on the last stdout line
        print(json.dumps(run_mode(args.mode, args.view, args.model_dir, args)))
        return 0

    rows = []
    with workspace(args) as (tmp, model):
        for view in args.views.split(","):
            runs = {mode: run_child(__file__, args, model, tmp, "--mode", mode, "--view", view) for mode in MODES}
            if None in runs.values():
                return 1
            base, new = runs["every"], runs["labelled"]
            diffs = [abs(a - b) for a, b in zip(base["losses"], new["losses"])]
            rows.append((view, base["tokens_per_s"], new["tokens_per_s"], diffs[0], max(diffs)))
    print(
        f"model={args.model} sessions={args.sessions} max_length={args.max_length} batch={args.batch} "
        f"steps={args.steps} (trainable tokens/s; the first step not timed)"
    )
    print(
        f"{'view':5} {'every position':>14} {'labelled only':>13} {'speed-up':>8} {'step-1 loss diff':>16} "
        f"{'max loss diff':>13}"
    )
    for view, base, new, first, drift in rows:
        print(f"{view:5} {base:>14.1f} {new:>13.1f} {new / base:>7.2f}x {first:>16.2e} {drift:>13.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
