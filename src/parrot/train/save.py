"""What a training run leaves: an ordinary checkpoint directory (full weights, a LoRA adapter, or
the adapter merged in), and resuming from the ``checkpoint-N`` directories TRL saves on the way."""

from __future__ import annotations

import logging
from pathlib import Path

from parrot import ParrotError
from parrot.train.config import SAVED_WEIGHTS, TrainConfig

log = logging.getLogger("parrot.train")


def save_output(trainer, cfg: TrainConfig, tokenizer) -> str:
    """Save the trained model as an ordinary checkpoint directory; return what was saved.

    Full fine-tune: the model. LoRA + merge: the adapter merged into the weights (loads like
    any checkpoint: ``hf:OUT``, vLLM). LoRA without merge: the adapter only
    (``adapter_config.json``), to load with PEFT or vLLM's LoRA support. With ``gguf``, the
    saved checkpoint is also written as ``OUT/model.gguf`` (float16) for the ``gguf:`` backend.
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
    if cfg.gguf:
        from parrot.backends.gguf_export import export_gguf

        export_gguf(out, gguf_file(cfg), "f16")
    return kind


def gguf_file(cfg: TrainConfig) -> Path:
    """Where ``gguf=true`` writes the llama.cpp copy of the trained model."""
    return Path(cfg.output) / "model.gguf"


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
