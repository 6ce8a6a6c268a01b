"""GPU check: every CUDA path of Parrot runs once, and is measured.

With random-weight Llama models built from a config (about 0.5B and 1.5B parameters) and the
SmolLM2 tokenizer — nothing from the hub — it runs, each in its own process (clean peak memory):

- train-ask, train-chat (full and LoRA) and train-dpo: bf16 on CUDA, sessions packed padding-free,
  through Parrot's own trainers and its save (and LoRA merge);
- train-chat on the 1.5B model packed and padded, for the packed-vs-padded speed ratio;
- the ``hf`` backend generating for 64 multi-turn prompts in one batch;
- a short ``synthesize`` run (hf asker, hf assistant);
- with two GPUs or more, train-chat in one process and in two (``--accelerate multi-gpu``, NCCL)
  with the same global batch: both loss curves and their largest difference
  (``benchmarks/train_processes.py``, which runs the same on a CPU with gloo).

For each it prints tokens/s, model FLOP utilisation (achieved FLOP/s from the parameter count and
the tokens processed, against the GPU's bf16 dense peak) and peak GPU memory. Model FLOPs per
token: 6N for full training, 4N for LoRA (no weight gradients for the frozen weights), 8N for
DPO with its frozen reference (6N policy + 2N reference), 2N for generation; attention's own
FLOPs are left out, so the figures are slightly conservative. Targets (the GPU issue): training
>= 35% MFU at 1.5B packed bf16; packed >= 1.3x padded tokens/s; nothing falls back to the CPU.

    python benchmarks/gpu_check.py                          # one GPU: about 5 minutes on an H100
    python benchmarks/gpu_check.py --device cpu             # a ~10M-parameter model, about a minute
    python benchmarks/gpu_check.py --tokenizer DIR --out r.json   # a node without the embedded GGUF

The packages it needs are checked first and the missing ones named (a GPU node without a
package index needs them brought as wheels). Synthetic sessions stand in for ShareGPT (the
figures are about compute, not text): 1-8 turns, questions of 5-120 words, answers of 20-400.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from train_throughput import Meter, peak_mb, reset_peak

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "yaml", "jinja2", "tqdm")

# Llama shapes (the SmolLM2 family's proportions); parameter counts are printed as measured.
MODELS = {
    "cuda": {
        "0.5B": dict(
            hidden_size=1152,
            intermediate_size=4608,
            num_hidden_layers=24,
            num_attention_heads=18,
            num_key_value_heads=6,
        ),
        "1.5B": dict(
            hidden_size=2048,
            intermediate_size=7168,
            num_hidden_layers=24,
            num_attention_heads=32,
            num_key_value_heads=32,
        ),
    },
    "cpu": {
        "10M": dict(
            hidden_size=160, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2
        )
    },
}
# bf16 dense tensor-core peaks (no sparsity), FLOP/s, by device name.
PEAKS = {
    "H200": 989.4e12,
    "H100": 989.4e12,
    "H800": 989.4e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362.1e12,
    "L4": 121e12,
    "A10G": 70e12,
    "A10": 125e12,
}
# Per device: training sequence length, rows per step, steps, sessions; generation prompts and tokens.
SETTINGS = {
    "cuda": dict(max_length=2048, batch=8, steps=12, sessions=400, prompts=64, gen_tokens=128, synth_sessions=32),
    "cpu": dict(max_length=256, batch=2, steps=3, sessions=40, prompts=8, gen_tokens=16, synth_sessions=4),
}
WORDS = (
    "the of and to in a is that for it as with was on be by this are at from or have an they "
    "which one you were all we when there can more if out so what time up some into them "
    "model data river mill town record train answer question turn session context token "
    "python function value error list table report market price plan team story"
).split()


# ---------------------------------------------------------------- set-up


def missing_packages() -> list[str]:
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def peak_flops(device: str, override_tflops: float | None) -> tuple[float | None, str]:
    import torch

    if override_tflops:
        return override_tflops * 1e12, "given"
    if device != "cuda":
        return None, "cpu"
    name = torch.cuda.get_device_name(0)
    return next(((v, name) for k, v in PEAKS.items() if k in name), (None, name))


def build_model(out: Path, tokenizer_dir: Path, shape: dict) -> tuple[Path, int]:
    """A random-weight Llama of ``shape`` with the tokenizer, saved in bf16; its parameter count."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        **shape,
    )
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # initialised where it is fast
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the runs, in their own processes, get the whole GPU
    return out, params


def words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def write_data(tmp: Path, sessions: int) -> tuple[Path, Path]:
    """Synthetic Dialogue JSONL and preference pairs built from it."""
    rng = random.Random(0)
    dialogues, pairs = tmp / "sessions.jsonl", tmp / "pairs.jsonl"
    with dialogues.open("w") as d, pairs.open("w") as p:
        for i in range(sessions):
            msgs = [
                m
                for _ in range(rng.randint(1, 8))
                for m in (
                    {"role": "user", "content": words(rng, 5, 120)},
                    {"role": "assistant", "content": words(rng, 20, 400)},
                )
            ]
            d.write(json.dumps({"id": f"s{i}", "messages": msgs}) + "\n")
            k = rng.randrange(len(msgs) // 2) * 2 + 1  # an assistant message
            p.write(
                json.dumps(
                    {
                        "id": f"p{i}",
                        "prompt": msgs[:k],
                        "chosen": [msgs[k]],
                        "rejected": [{"role": "assistant", "content": words(rng, 20, 200)}],
                    }
                )
                + "\n"
            )
    return dialogues, pairs


# ---------------------------------------------------------------- one measured run (child process)

TRAINING = {  # run name -> (stage, packing, lora, model FLOPs per token in units of N)
    "train-ask": ("ask", True, False, 6),
    "train-chat": ("chat", True, False, 6),
    "train-chat-lora": ("chat", True, True, 4),
    "train-chat-padded": ("chat", False, False, 6),
    "train-dpo": ("dpo", True, False, 8),
}


def train_run(name: str, model: Path, args) -> dict:
    """Train with Parrot's own trainer for ``name``, measured batch by batch, then save."""
    from parrot.core.config import build_config
    from parrot.core.tokens import load_tokenizer
    from parrot.train.config import AskTrainConfig, DPOTrainConfig, SFTTrainConfig
    from parrot.train.dpo import build_pair_dataset, dpo_trainer
    from parrot.train.sft import ask_view, build_dataset, chat_view, sft_trainer
    from parrot.train.trainer import train_and_save

    stage, packing, lora, _ = TRAINING[name]
    cls = {"ask": AskTrainConfig, "chat": SFTTrainConfig, "dpo": DPOTrainConfig}[stage]
    data = args.tmp / ("pairs.jsonl" if stage == "dpo" else "sessions.jsonl")
    settings = {
        "data": [str(data)],
        "output": str(args.tmp / f"out-{name}"),
        "model": str(model),
        "max_length": args.max_length,
        "lora": lora,
        "lora_r": 64,
        "lora_alpha": 128,
    }
    if stage != "dpo":
        settings["packing"] = packing
    batch = args.batch if packing or stage == "dpo" else args.batch * 2  # ~the same real tokens per step
    trl = [
        f"max_steps={args.steps}",
        f"per_device_train_batch_size={batch}",
        "logging_steps=1000",
        "disable_tqdm=true",
        "learning_rate=1e-5",
    ]
    cfg = build_config(cls, settings, trl, extra_field="trl_args")
    tok = load_tokenizer(model, chat_template=True)
    counts: dict = {}
    cache = str(args.tmp / f"cache-{name}")
    if stage == "dpo":
        ds = build_pair_dataset(cfg.data, tok, cfg.max_length, cache, counts)
        trainer = dpo_trainer(cfg, tok, model, ds, counts=counts)
    else:
        view = ask_view(None, True) if stage == "ask" else chat_view
        ds = build_dataset(cfg.data, tok, view, cfg.max_length, cache, counts)
        trainer = sft_trainer(cfg, tok, model, ds)
    meter = Meter(trainer)
    train_and_save(
        trainer,
        cfg,
        tok,
        model_path=model,
        counts=counts,
        eval_counts={},
        timings={},
        trl_config=trainer.args,
        has_eval=False,
    )
    device = next(trainer.model.parameters()).device.type
    return {
        "run": name,
        **meter.result(),
        "device": device,
        "bf16": bool(trainer.args.bf16),
        "saved": (args.tmp / f"out-{name}" / "config.json").is_file(),
        "cuda_used": _cuda_used(),
    }


def prompts(n: int) -> list[list[dict]]:
    rng = random.Random(1)
    out = []
    for _ in range(n):
        msgs = [
            m
            for _ in range(rng.randint(1, 4))
            for m in (
                {"role": "user", "content": words(rng, 5, 60)},
                {"role": "assistant", "content": words(rng, 20, 120)},
            )
        ]
        out.append(msgs + [{"role": "user", "content": words(rng, 5, 40)}])
    return out


def generate_run(model: Path, args) -> dict:
    """The hf backend: all prompts in one batch, sampled, ``gen_tokens`` new tokens at most."""
    from parrot.backends import SamplingParams, load_backend

    convs = prompts(args.prompts)
    with load_backend(f"hf:{model}", batch_size=len(convs), dtype="bfloat16") as backend:
        backend.generate(convs[:2], SamplingParams(max_tokens=4, temperature=0.0))  # warm-up, not timed
        reset_peak()
        t0 = time.perf_counter()
        out = backend.generate(convs, SamplingParams(max_tokens=args.gen_tokens, temperature=0.7, seed=0))
        seconds = time.perf_counter() - t0
        device = backend.device
    generated = sum(c.completion_tokens for c in out)
    prefill = sum(c.prompt_tokens for c in out)
    return {
        "run": "generate",
        "prompts": len(convs),
        "ok": sum(c.ok for c in out),
        "seconds": seconds,
        "generated_tokens": generated,
        "prompt_tokens": prefill,
        "tokens_per_s": generated / seconds,
        "processed_tokens_per_s": (generated + prefill) / seconds,
        "peak_mb": peak_mb(),
        "device": device,
        "cuda_used": _cuda_used(),
    }


def synth_run(model: Path, args) -> dict:
    """``parrot synthesize`` with the model as prompted asker and as assistant (one copy loaded)."""
    from parrot.core.config import build_config
    from parrot.synthesize.stage import SynthesizeConfig, synthesize

    seeds = args.tmp / "sessions.jsonl"
    spec = {"spec": f"hf:{model}", "dtype": "bfloat16", "batch_size": args.synth_sessions}
    cfg = build_config(
        SynthesizeConfig,
        {
            "output": str(args.tmp / "synth.jsonl"),
            "seeds": str(seeds),
            "num_sessions": args.synth_sessions,
            "max_turns": 3,
            "asker_mode": "prompted",
            "overwrite": True,
            "asker": {**spec, "max_tokens": 48},
            "assistant": {**spec, "max_tokens": args.gen_tokens},
        },
    )
    reset_peak()
    t0 = time.perf_counter()
    counts = synthesize(cfg)
    seconds = time.perf_counter() - t0
    manifest = json.loads((args.tmp / "synth.jsonl.manifest.json").read_text())
    return {
        "run": "synthesize",
        "sessions": counts["sessions"],
        "turns": counts["turns"],
        "seconds": seconds,
        "turns_per_s": counts["turns"] / seconds,
        "tokens_per_s": manifest["timings"]["tokens_per_s"],
        "generated_tokens": manifest["timings"]["completion_tokens"],
        "prompt_tokens": sum(manifest["usage"][r]["prompt_tokens"] for r in ("asker", "assistant")),
        "peak_mb": peak_mb(),
        "device": "cuda" if _cuda_used() else "cpu",
        "cuda_used": _cuda_used(),
    }


def _cuda_used() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0


def child(args) -> dict:
    model = Path(args.model_dir)
    if args.run in TRAINING:
        return train_run(args.run, model, args)
    return generate_run(model, args) if args.run == "generate" else synth_run(model, args)


# ---------------------------------------------------------------- the plan and the report


def plan(device: str) -> list[tuple[str, str]]:
    """(run, model size) in order: every path on the smaller model, the MFU and packing targets on the larger."""
    small, large = list(MODELS[device])[0], list(MODELS[device])[-1]
    runs = [(r, small) for r in ("train-ask", "train-chat", "train-chat-lora", "train-dpo", "generate", "synthesize")]
    return runs + [(r, large) for r in ("train-chat", "train-chat-padded") if (r, large) not in runs]


def run_child(run: str, model: Path, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--run",
        run,
        "--model-dir",
        str(model),
        "--tmp",
        str(args.tmp),
        "--device",
        args.device,
        *[f"--{k.replace('_', '-')}={v}" for k, v in settings(args).items()],
    ]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(args))
    if proc.returncode != 0:
        return {"run": run, "error": (proc.stderr or proc.stdout)[-3000:], "wall_s": time.monotonic() - t0}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall_s": round(time.monotonic() - t0, 1)}


def _child_env(args) -> dict:
    env = {**os.environ, "PARROT_NO_PROGRESS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def settings(args) -> dict:
    return {k: getattr(args, k) for k in SETTINGS["cpu"]}


def mfu(result: dict, params: int, peak: float | None) -> float | None:
    if peak is None or "error" in result:
        return None
    if result["run"] in TRAINING:
        return TRAINING[result["run"]][3] * params * result["tokens_per_s"] / peak
    return 2 * params * result.get("processed_tokens_per_s", result["tokens_per_s"]) / peak


def report(results: list[dict], params: dict, peak: float | None, device_name: str, device: str) -> dict:
    print(
        f"\nParrot GPU check on {device_name} ({device}); peak {'%.0f TFLOP/s bf16' % (peak / 1e12) if peak else 'unknown'}"
    )
    print(
        f"{'run':18} {'model':>6} {'params':>7} {'tokens/s':>10} {'MFU':>6} {'peak GB':>8} {'padding':>8} {'device':>7} {'wall s':>7}"
    )
    for r in results:
        if "error" in r:
            print(f"{r['run']:18} {r['size']:>6}  FAILED:\n{r['error']}")
            continue
        m = r.get("mfu")
        print(
            f"{r['run']:18} {r['size']:>6} {params[r['size']] / 1e9:>6.2f}B {r['tokens_per_s']:>10.1f} "
            f"{'-' if m is None else f'{m:.1%}':>6} {r['peak_mb'] / 1024:>8.2f} "
            f"{r.get('padding_share', 0):>8.1%} {r['device']:>7} {r.get('wall_s', 0):>7}"
        )
    by = {(r["run"], r["size"]): r for r in results if "error" not in r}
    large = list(params)[-1]
    packed, padded = by.get(("train-chat", large)), by.get(("train-chat-padded", large))
    ratio = packed["tokens_per_s"] / padded["tokens_per_s"] if packed and padded else None
    on_device = all(r["device"] == device and (device == "cpu" or r["cuda_used"]) for r in by.values())
    failed = [r["run"] for r in results if "error" in r]
    summary = {
        "device": device,
        "device_name": device_name,
        "peak_flops": peak,
        "params": params,
        "mfu_large_packed": packed.get("mfu") if packed else None,
        "packed_vs_padded": ratio,
        "all_on_device": on_device,
        "failed": failed,
    }
    large_mfu = summary["mfu_large_packed"]
    print(f"\ntraining MFU at {large} packed: {'-' if large_mfu is None else f'{large_mfu:.1%}'} (target >= 35%)")
    print(f"packed vs padded tokens/s at {large}: {'-' if ratio is None else f'{ratio:.2f}x'} (target >= 1.30x)")
    print(f"every run on {device}: {'yes' if on_device else 'NO'}; failed runs: {', '.join(failed) or 'none'}")
    return summary


def two_processes(args) -> dict | None:
    """With two GPUs or more: train-chat in one process and in two (multi-gpu, NCCL) with the same
    global batch, as ``benchmarks/train_processes.py`` does on a CPU; None on one GPU."""
    import argparse as _argparse

    import torch

    if args.device != "cuda" or torch.cuda.device_count() < 2:
        print("two processes: skipped (fewer than 2 GPUs)", flush=True)
        return None
    import train_processes

    settings = _argparse.Namespace(processes=2, batch=4, steps=10, sessions=args.sessions, max_length=1024, lora=False)
    result = train_processes.compare(args.tmp / "processes", settings, "cuda")
    train_processes.show(result, 2)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--device",
        choices=["auto", "cuda", "cpu"],
        default="auto",
        help="auto: cuda where there is one, else the cpu check",
    )
    p.add_argument(
        "--tokenizer",
        default="smollm2",
        help="the SmolLM2 tokenizer: smollm2 (from the embedded GGUF) or a local directory",
    )
    p.add_argument("--peak-tflops", type=float, help="the device's bf16 dense peak, where it is not known")
    p.add_argument("--out", type=Path, help="write every figure as JSON here")
    for key, value in SETTINGS["cpu"].items():
        p.add_argument(
            f"--{key.replace('_', '-')}",
            type=int,
            default=None,
            help=f"(default: {SETTINGS['cuda'][key]} on cuda, {value} on cpu)",
        )
    p.add_argument("--run", help=argparse.SUPPRESS)  # child process
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    p.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
        print(f"device: {args.device}", file=sys.stderr)
    for key, value in SETTINGS[args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.run:
        print(json.dumps(child(args)))
        return 0

    missing = missing_packages()
    if missing:
        print(
            f"missing packages: {', '.join(missing)}. On a node without a package index, bring them as "
            "wheels (pip download --no-deps ... -d .whl NAME==VERSION here; pip install --no-index "
            "--target /tmp/site .whl/*.whl there; PYTHONPATH=/tmp/site)",
            file=sys.stderr,
        )
        return 2
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU, or pass --device cpu", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT / "src"))
    from parrot.core.tokens import tokenizer_path

    peak, device_name = peak_flops(args.device, args.peak_tflops)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="parrot-gpu-check-") as tmp:
        args.tmp = Path(tmp)
        write_data(args.tmp, args.sessions)
        models, params = {}, {}
        for size, shape in MODELS[args.device].items():
            models[size], params[size] = build_model(args.tmp / f"model-{size}", tokenizer_path(args.tokenizer), shape)
        results = []
        for run, size in plan(args.device):
            r = {**run_child(run, models[size], args), "size": size}
            r["mfu"] = mfu(r, params[size], peak)
            results.append(r)
            print(f"{run} ({size}): {'FAILED' if 'error' in r else 'done'} in {r.get('wall_s', 0)} s", flush=True)
        processes = two_processes(args)
    summary = report(results, params, peak, device_name, args.device)
    summary["two_processes"] = processes
    summary["seconds"] = round(time.monotonic() - t0, 1)
    print(f"total {summary['seconds']} s")
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "runs": results}, indent=1))
    return 1 if summary["failed"] or not summary["all_on_device"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
