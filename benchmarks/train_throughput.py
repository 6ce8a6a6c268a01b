"""Training throughput: Parrot's packed, padding-free SFT against a plain padded SFTTrainer.

Same model, same ShareGPT sessions (train-chat view, cut at a turn boundary to --max-length),
same number of optimizer steps and about the same real tokens per step:

- ``padded``: SFTTrainer with ``packing=False``: random batches of --batch sessions, each padded
  to the longest in its batch (the baseline);
- ``grouped``: the same, with ``train_sampling_strategy=group_by_length`` (similar lengths together);
- ``packed``: what ``parrot train-chat`` does by default: sessions packed best-fit into
  --max-length rows, the batch flattened padding-free, position ids restarting per session.

Each variant runs in its own process (clean peak memory). The batches are counted exactly by
wrapping the trainer's collator: real tokens (session tokens), positions computed (including
padding), and trainable tokens. Printed: trained (non-padding) tokens/s, the share of computed
positions that are padding, peak memory, and the ratio of tokens/s to the padded baseline.
Targets: padding <= 10% and tokens/s >= the baseline.

    .venv/bin/python benchmarks/train_throughput.py                    # small random Llama, ~5 min on 2 cores
    .venv/bin/python benchmarks/train_throughput.py --model smollm2    # SmolLM2-135M-Instruct
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("padded", "grouped", "packed")


def small_model(out: Path) -> Path:
    """A 4-layer random Llama (hidden 256) with the SmolLM2 tokenizer: real shapes of work, fast on CPU."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from parrot.core.checkpoint import smollm2_tokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_tokenizer())
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def run_variant(variant: str, model: Path, data: Path, args) -> dict:
    """Train ``args.steps`` steps with one variant; return the measured figures."""
    from parrot.core.config import build_config
    from parrot.core.tokens import load_tokenizer
    from parrot.train.config import SFTTrainConfig
    from parrot.train.sft import build_dataset, chat_view, sft_trainer

    tok = load_tokenizer(model)
    cfg = build_config(
        SFTTrainConfig,
        {
            "data": [str(data)],
            "output": str(args.tmp / variant),
            "model": str(model),
            "max_length": args.max_length,
            "packing": variant == "packed",
        },
        extra_field="trl_args",
    )
    counts: dict = {}
    ds = build_dataset(
        cfg.data, tok, chat_view, cfg.max_length, str(args.tmp / f"cache-{variant}"), counts, limit=args.sessions
    )
    mean_len = counts["tokens"] / counts["examples"]  # a session longer than max_length is several examples
    # about the same real tokens per step in every variant
    batch = args.batch if variant != "packed" else max(1, round(args.batch * mean_len / args.max_length))
    extra = {"train_sampling_strategy": "group_by_length"} if variant == "grouped" else {}
    cfg.trl_args.update(
        per_device_train_batch_size=batch,
        max_steps=args.steps,
        logging_steps=args.steps,
        disable_tqdm=True,
        seed=0,
        learning_rate=1e-4,
        **extra,
    )
    trainer = sft_trainer(cfg, tok, model, ds)  # exactly what train-chat builds
    meter = Meter(trainer)
    trainer.train()
    return {
        "variant": variant,
        "batch": batch,
        **meter.result(),
        "mean_example_tokens": mean_len,
        "sessions_shortened": counts.get("sessions_shortened", 0),
    }


class Meter:
    """Counts what a trainer computes, batch by batch, and times its steps.

    The trainer's collator is wrapped: per batch, real (non-padding) tokens, positions computed
    (padding included) and trainable tokens (labels, or DPO's completion mask). A callback stamps
    each step's end. The first step (warm-up: allocation, kernel selection) is not timed.
    Works for TRL's SFT (padded or padding-free packed) and DPO collators.
    """

    def __init__(self, trainer):
        from transformers import TrainerCallback

        self.batches: list[dict] = []
        self.step_ends: list[float] = []
        collate = trainer.data_collator

        def counting_collator(examples):
            out = collate(examples)
            ids = out["input_ids"]
            mask = out.get("attention_mask")
            trained = out.get("completion_mask") if "completion_mask" in out else (out["labels"] != -100)
            self.batches.append(
                {
                    "real": int(mask.sum()) if mask is not None else ids.numel(),
                    "positions": ids.numel(),
                    "trainable": int(trained.sum()),
                }
            )
            return out

        meter = self

        class StepTimes(TrainerCallback):
            def on_step_end(self, *a, **kw):
                meter.step_ends.append(time.perf_counter())

        trainer.data_collator = counting_collator
        trainer.add_callback(StepTimes())
        reset_peak()

    def result(self) -> dict:
        """Tokens, tokens/s and peak memory over the timed steps (step k trains batch k)."""
        timed = self.batches[1 : len(self.step_ends)]
        seconds = self.step_ends[-1] - self.step_ends[0]
        seen = {key: sum(b[key] for b in timed) for key in ("real", "trainable", "positions")}
        return {
            "steps": len(self.step_ends),
            "timed_steps": len(timed),
            "real_tokens": seen["real"],
            "positions": seen["positions"],
            "trainable_tokens": seen["trainable"],
            "padding_share": 1 - seen["real"] / seen["positions"],
            "seconds": seconds,
            "tokens_per_s": seen["real"] / seconds,
            "trainable_tokens_per_s": seen["trainable"] / seconds,
            "peak_mb": peak_mb(),
        }


def reset_peak() -> None:
    """Start counting peak GPU memory afresh (on a CPU the process's peak RSS cannot be reset)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_mb() -> float:
    """Peak GPU memory allocated, or on a CPU the process's peak resident memory, in MiB."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def training_run_args(
    p: argparse.ArgumentParser, *, model: str, sessions: int, max_length: int, batch: int, steps: int, batch_help: str
) -> None:
    """The options of a benchmark that trains in child processes (this one and lm_head_cpu.py)."""
    p.add_argument("--model", default=model, help="small (random 4-layer Llama), smollm2, or a checkpoint path")
    p.add_argument("--data", type=Path, default=ROOT / "data" / "sharegpt.jsonl")
    p.add_argument("--sessions", type=int, default=sessions)
    p.add_argument("--max-length", type=int, default=max_length)
    p.add_argument("--batch", type=int, default=batch, help=batch_help)
    p.add_argument("--steps", type=int, default=steps, help="optimizer steps (the first is not timed)")
    p.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)  # child process
    p.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)


@contextlib.contextmanager
def workspace(args):
    """A temporary directory and the model to train (a fresh small one, or resolved); the
    ShareGPT data is prepared first if missing."""
    if not args.data.is_file():
        subprocess.run(
            [sys.executable, "-m", "parrot.cli", "prepare", "sharegpt", "-o", str(args.data), "--dev-fraction", "0.02"],
            check=True,
        )
    from parrot.core.checkpoint import resolve_model_path

    with tempfile.TemporaryDirectory(prefix="parrot-bench-") as tmp:
        tmp = Path(tmp)
        yield tmp, small_model(tmp / "model") if args.model == "small" else resolve_model_path(args.model)


def run_child(script: str, args, model: Path, tmp: Path, *child_flags: str) -> dict | None:
    """Run one measurement in its own process (clean peak memory); its JSON from the last stdout line."""
    cmd = [
        sys.executable,
        script,
        *child_flags,
        "--model-dir",
        str(model),
        "--tmp",
        str(tmp),
        "--data",
        str(args.data),
        "--sessions",
        str(args.sessions),
        "--max-length",
        str(args.max_length),
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    training_run_args(
        p,
        model="small",
        sessions=400,
        max_length=512,
        batch=4,
        steps=8,
        batch_help="sessions per step in the padded variants",
    )
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated: padded (the baseline), grouped, packed"
    )
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # child process
    args = p.parse_args()

    if args.variant:  # child: one variant, JSON on the last stdout line
        print(json.dumps(run_variant(args.variant, args.model_dir, args.data, args)))
        return 0

    results = []
    with workspace(args) as (tmp, model):
        for variant in args.variants.split(","):
            result = run_child(__file__, args, model, tmp, "--variant", variant)
            if result is None:
                return 1
            results.append(result)
    by_name = {r["variant"]: r for r in results}
    if "padded" not in by_name or "packed" not in by_name:
        print("--variants must include padded (the baseline) and packed")
        return 1
    base = by_name["padded"]["tokens_per_s"]
    print(
        f"model={args.model} sessions={args.sessions} max_length={args.max_length} steps={args.steps} "
        f"(mean example {results[0]['mean_example_tokens']:.0f} tokens, {results[0]['sessions_shortened']} shortened)"
    )
    print(
        f"{'variant':8} {'batch':>5} {'real tok':>9} {'positions':>9} {'padding':>8} {'tok/s':>8} "
        f"{'train tok/s':>11} {'peak MB':>8} {'vs padded':>9}"
    )
    for r in results:
        print(
            f"{r['variant']:8} {r['batch']:>5} {r['real_tokens']:>9} {r['positions']:>9} "
            f"{r['padding_share']:>8.1%} {r['tokens_per_s']:>8.1f} {r['trainable_tokens_per_s']:>11.1f} "
            f"{r['peak_mb']:>8.0f} {r['tokens_per_s'] / base:>8.2f}x"
        )
    packed = by_name["packed"]
    ok = packed["padding_share"] <= 0.10 and packed["tokens_per_s"] >= base and math.isfinite(base)
    print(
        f"packed: padding {packed['padding_share']:.1%} (target <= 10%), tokens/s {packed['tokens_per_s'] / base:.2f}x "
        f"the padded SFTTrainer baseline (target >= 1.00x): {'met' if ok else 'NOT met'}"
    )
    print(json.dumps(results))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
