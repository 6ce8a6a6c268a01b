"""What the three training commands share around TRL: the launcher, the TRL config with
pass-through keys, the LoRA config, the temporary dataset cache, saving (merged or adapter)
and the manifest."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from parrot import ParrotError
from parrot.core.config import to_dict
from parrot.core.log import format_table
from parrot.core.manifest import write_manifest
from parrot.train.config import TrainConfig, accelerate_config_path, layer_indices

log = logging.getLogger("parrot.train")


def relaunch_under_accelerate(cfg: TrainConfig, command: str) -> bool:
    """With ``cfg.accelerate`` set, run this same command under ``accelerate launch``; True if so.

    The effective config is written to ``OUT.launch.yaml`` and the child reads it back
    (with ``accelerate`` cleared), so a library call and a command line launch alike.
    """
    if not cfg.accelerate:
        return False
    config_file = accelerate_config_path(cfg.accelerate)
    child = dataclasses.replace(cfg, accelerate=None, num_processes=None)
    data = to_dict(child)
    data.update(data.pop("trl_args", {}) or {})
    inputs = [str(p) for p in data.pop("data")]  # positional on the command line
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    launch_yaml = out.with_name(out.name + ".launch.yaml")
    launch_yaml.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file)]
    if cfg.num_processes:
        cmd += ["--num_processes", str(cfg.num_processes)]
    cmd += ["-m", "parrot.cli", command, *inputs, "--config", str(launch_yaml)]
    log.info("launching: %s", " ".join(cmd))
    try:
        rc = subprocess.call(cmd)
    finally:
        launch_yaml.unlink(missing_ok=True)  # it may hold tokens passed through (hub_token=...)
    if rc != 0:
        raise ParrotError(f"accelerate launch ({config_file}) exited with status {rc}")
    return True


def trl_kwargs(cfg: TrainConfig, **parrot_defaults) -> dict:
    """Keyword arguments for SFTConfig/DPOConfig: Parrot's defaults, then the user's pass-through keys."""
    import torch

    kw = {
        "output_dir": str(cfg.output),
        "max_length": cfg.max_length,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 10,
        "seed": 42,
        **parrot_defaults,
    }
    on_cpu = not torch.cuda.is_available() and not torch.backends.mps.is_available()
    if not torch.cuda.is_available():
        # Activation checkpointing only slows a CPU down; bf16 autocast pays off only where the CPU
        # multiplies bf16 natively (AVX512-BF16 or AMX: ~1.5x per step measured), else it slows down too.
        kw["bf16"] = on_cpu and cpu_has_native_bf16()
        if not {"gradient_checkpointing", "activation_checkpointing"} & set(cfg.trl_args):
            kw[checkpointing_key()] = False
    kw.update(cfg.trl_args)
    if on_cpu and kw.get("bf16"):
        kw.setdefault("use_cpu", True)  # transformers refuses bf16 without a GPU unless told it is a CPU run
    return kw


def checkpointing_key() -> str:
    """``activation_checkpointing`` (transformers >= 5.x) or its older name ``gradient_checkpointing``."""
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AVX512-BF16 or AMX tiles)."""
    import torch

    cpu = torch.cpu
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def make_trl_config(config_cls, kwargs: dict):
    """Build the TRL config (pass-through key names were checked with the Parrot config), turning a
    bad value into a clear error."""
    try:
        return config_cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ParrotError(f"{config_cls.__name__}: {e}") from None


def callbacks(cfg: TrainConfig) -> list:
    """Trainer callbacks for Parrot's own options (``time_limit``)."""
    if not cfg.time_limit:
        return []
    import time

    from transformers import TrainerCallback

    limit_s = cfg.time_limit * 60

    class TimeLimit(TrainerCallback):
        """Stops before the step that would cross the limit, judging by the slowest step so far
        (the first step, which carries one-off costs, only until there is another)."""

        def on_train_begin(self, args, state, control, **kw):
            self.start = self.last = time.monotonic()
            self.first = self.slowest = None  # seconds of the first step; of the slowest one after it

        def on_step_end(self, args, state, control, **kw):
            now = time.monotonic()
            took, self.last = now - self.last, now
            if self.first is None:
                self.first = took
            else:
                self.slowest = max(self.slowest or 0.0, took)
            if now - self.start + (self.slowest if self.slowest is not None else self.first) > limit_s:
                log.info(
                    "time limit of %g min: stopping after %d steps (%.1f min)",
                    cfg.time_limit,
                    state.global_step,
                    (now - self.start) / 60,
                )
                control.should_training_stop = True

    return [TimeLimit()]


def lora_config(cfg: TrainConfig, model_path: str | Path):
    if not cfg.lora:
        return None
    from peft import LoraConfig

    layers = layer_indices(cfg.lora_layers) if cfg.lora_layers is not None else None
    if cfg.lora_targets != "all-linear":
        targets = [t.strip() for t in cfg.lora_targets.split(",") if t.strip()]
    elif layers is not None:  # PEFT takes a layer list only with explicit module names
        targets = linear_module_names(model_path, cfg)
    else:
        targets = "all-linear"
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        layers_to_transform=layers,
        task_type="CAUSAL_LM",
    )


def trusts_remote_code(cfg: TrainConfig) -> bool:
    """Whether the user allowed the checkpoint's own code: TRL's ``trust_remote_code=true`` or
    ``model_init_kwargs.trust_remote_code`` (off unless given)."""
    init = cfg.trl_args.get("model_init_kwargs") or {}
    return bool(cfg.trl_args.get("trust_remote_code") or (isinstance(init, dict) and init.get("trust_remote_code")))


def linear_module_names(model_path: str | Path, cfg: TrainConfig) -> list[str]:
    """The names of every linear layer but the output head (what PEFT's ``all-linear`` means),
    read from a weightless copy of the model on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    remote = trusts_remote_code(cfg)
    config = AutoConfig.from_pretrained(str(model_path), trust_remote_code=remote)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=remote)
    head = model.get_output_embeddings()
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not head
        }
    )


@contextlib.contextmanager
def dataset_cache(cfg: TrainConfig):
    """A private, throw-away directory for the Arrow files of the rendered datasets (never stale)."""
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    path = tempfile.mkdtemp(prefix=f".{out.name}.data-", dir=out.parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def stream_dataset(records, features, cache_dir: str, empty_message: str, counts: dict):
    """``datasets.Dataset`` from ``records()`` (a generator function), written to Arrow in ``cache_dir``.

    Memory stays flat however large the input. A ParrotError raised by the generator (a bad
    record) comes out as itself; an empty result is a ParrotError with ``counts``.
    """
    import uuid

    from datasets import Dataset
    from datasets.exceptions import DatasetGenerationError

    def gen():
        yield from records()

    try:
        # A fresh fingerprint: the cache dir is private and thrown away, and hashing the
        # tokenizer inside the generator would only cost time.
        ds = Dataset.from_generator(gen, features=features, cache_dir=cache_dir, fingerprint=uuid.uuid4().hex)
    except DatasetGenerationError as e:
        if isinstance(e.__cause__, ParrotError):
            raise e.__cause__ from None
        raise
    except ValueError:  # datasets cannot build an empty split
        ds = None
    if ds is None or len(ds) == 0:
        raise ParrotError(f"{empty_message} (counts: {counts})")
    return ds


def save_output(trainer, cfg: TrainConfig, tokenizer) -> str:
    """Save the trained model as an ordinary checkpoint directory; return what was saved.

    Full fine-tune: the model. LoRA + merge: the adapter merged into the weights (loads like
    any checkpoint: ``hf:OUT``, vLLM). LoRA without merge: the adapter only
    (``adapter_config.json``), to load with PEFT or vLLM's LoRA support.
    """
    out = Path(cfg.output)
    if trainer.is_world_process_zero():
        remove_saved_weights(out)
    trainer.save_model(str(out))  # collective under FSDP / ZeRO-3: every rank takes part
    if not trainer.is_world_process_zero():
        return ""
    kind = "full"
    if cfg.lora:
        kind = "adapter"
        if cfg.merge:
            merge_adapter(out)
            kind = "merged"
    tokenizer.save_pretrained(str(out))
    if (out / "training_args.bin").exists():
        (out / "training_args.bin").unlink()  # pickled TRL config: the manifest records it as JSON
    return kind


# What a save leaves behind. A later run into the same directory removes them first: a stale
# adapter_config.json beside new full weights would make every loader apply the old adapter.
SAVED_WEIGHTS = (
    "adapter_config.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
)


def remove_saved_weights(out: Path) -> None:
    """Remove a previous run's weights and adapter from ``out`` (nothing else in it)."""
    for pattern in SAVED_WEIGHTS:
        for path in out.glob(pattern):
            path.unlink()


def resume_checkpoint(args) -> str | bool | None:
    """TRL's ``resume_from_checkpoint`` for ``trainer.train``: a checkpoint path, or true for the
    latest ``checkpoint-N`` in the output directory (none yet: start from the beginning)."""
    from transformers.trainer_utils import get_last_checkpoint

    value = args.resume_from_checkpoint
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if not value:
        return None
    if value is True:
        out = Path(args.output_dir)
        if out.is_dir() and get_last_checkpoint(str(out)):
            return True
        log.info("resume_from_checkpoint: no checkpoint-N in %s yet, starting from the beginning", out)
        return None
    if not Path(value).is_dir():
        raise ParrotError(f"resume_from_checkpoint: {value}: no such checkpoint directory")
    return value


def merge_adapter(out: Path) -> None:
    """Replace the adapter saved in ``out`` by the base model with the adapter merged in.

    Done from the saved files rather than the in-memory model, so it works the same after
    sharded (FSDP, ZeRO-3) training.
    """
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(str(out), dtype="auto")
    merged = model.merge_and_unload()
    for name in ("adapter_model.safetensors", "adapter_model.bin", "adapter_config.json"):
        (out / name).unlink(missing_ok=True)
    merged.save_pretrained(str(out), safe_serialization=True)


def train_and_save(
    trainer,
    cfg: TrainConfig,
    tokenizer,
    *,
    stage: str,
    model_path: Path,
    counts: dict,
    eval_counts: dict,
    timings: dict,
    trl_config,
    has_eval: bool,
    extra_log_keys: tuple[str, ...] = (),
) -> dict:
    """Train, evaluate, save, then (main process) write the manifest and print the summary.

    ``timings`` holds what the caller measured before training; train, save and total times are
    added here. ``extra_log_keys`` are logged metrics whose last value joins the losses
    (``rewards/margins`` for DPO).
    """
    t_train0 = time.monotonic()
    with compact_lm_head(enabled=not trainer.args.torch_compile):
        result = trainer.train(resume_from_checkpoint=resume_checkpoint(trainer.args))
        t_train = time.monotonic()
        if has_eval:
            eval_loss = trainer.evaluate()["eval_loss"]
    losses = final_losses(trainer, result)
    for key in extra_log_keys:
        logged = [h[key] for h in trainer.state.log_history if key in h]
        if logged:
            losses[key] = logged[-1]
    if has_eval:
        losses["eval_loss"] = eval_loss
    saved = save_output(trainer, cfg, tokenizer)
    t_end = time.monotonic()
    if eval_counts:
        counts["eval"] = eval_counts
    timings = {
        **timings,
        "train_s": round(t_train - t_train0, 2),
        "save_s": round(t_end - t_train, 2),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
    }
    if saved:  # the main process
        write_train_manifest(
            cfg,
            stage=stage,
            model_path=model_path,
            counts=counts,
            timings=timings,
            losses=losses,
            saved=saved,
            trl_config=trl_config,
        )
        print(format_table([(k, v) for k, v in {**counts, **losses}.items() if not isinstance(v, dict)], ("", stage)))
    return {"counts": counts, "losses": losses, "timings": timings, "saved": saved}


@contextlib.contextmanager
def compact_lm_head(enabled: bool = True):
    """On a CPU, TRL's fused LM head projects only the positions that carry a label.

    TRL scores only those positions on Triton devices; elsewhere it scores every position and
    masks the result (fixed shapes for compilers such as Neuron's). A CPU in eager mode has no
    such need, and the LM head is the largest single cost of a small model's step: scoring only
    the labelled positions trained SmolLM2-135M 1.7x faster on user turns (train-ask: a small
    share of a session's tokens) and 1.3x on assistant turns (benchmarks/lm_head_cpu.py); the
    per-token log-probabilities are the same. It swaps TRL's private ``_use_triton`` test in
    ``trl.trainer.utils`` for the duration; off under ``torch_compile`` (changing shapes would
    recompile), and a no-op on a TRL whose fused head does not make that choice the known way.
    """
    try:
        import inspect

        import trl.trainer.utils as trl_utils

        known = "compact = _use_triton(" in inspect.getsource(trl_utils.add_fused_lm_head)
    except (ImportError, AttributeError, OSError, TypeError):
        known = False
    if not (enabled and known and hasattr(trl_utils, "_use_triton")):
        yield False
        return
    original = trl_utils._use_triton
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield True
    finally:
        trl_utils._use_triton = original


def final_losses(trainer, train_output) -> dict:
    """``train_loss`` (mean over the run) and the last logged ``loss``."""
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "train_loss": train_output.training_loss,
        "last_logged_loss": logged[-1] if logged else None,
        "steps": trainer.state.global_step,
    }


def write_train_manifest(
    cfg: TrainConfig, *, stage: str, model_path: Path, counts: dict, timings: dict, losses: dict, saved: str, trl_config
) -> Path:
    return write_manifest(
        cfg.output,
        stage=stage,
        config=cfg,
        inputs=[*cfg.data, model_path],
        counts=counts,
        timings=timings,
        losses=losses,
        saved_as=saved,
        trl_config=_plain(trl_config.to_dict()),
    )


def _plain(d: dict) -> dict:
    return {k: (v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)) for k, v in d.items()}
