"""What a training run leaves: an ordinary checkpoint directory (full weights, a LoRA adapter, or
the adapter merged in), the ``checkpoint-N`` folders TRL saves on the way and the one ``--resume``
continues from, and the leftovers of a run that was killed.

- **Checkpoints**: transformers saves ``checkpoint-N`` in place, writing ``trainer_state.json``
  last (after the weights, optimizer, scheduler and RNG states); a run stopped while it saves
  leaves a folder without it, or with it cut short. Such a checkpoint is incomplete
  (:func:`is_complete`): ``--resume`` continues from the latest complete one
  (:func:`resume_checkpoint`; transformers' own choice, the highest N, fails on it).
- **Leftovers** of a killed run (incomplete checkpoints, safetensors' and the GGUF export's
  temporary files) are removed when the next run on the output starts (:func:`remove_leftovers`);
  the rendered datasets' caches, by :mod:`parrot.train.dataset`.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from parrot import ParrotError
from parrot.core.checkpoint import check_weights
from parrot.train.config import SAVED_WEIGHTS, TrainConfig

log = logging.getLogger("parrot.train")

#: Temporary files a write leaves when the process is killed: safetensors writes ``.tmpXXXXXX``
#: beside its target and renames it when done; the GGUF export, ``model.gguf.tmp-PID``.
TEMPORARY = (".tmp??????", "model.gguf.tmp-*")
#: The trainer state TRL writes last into a checkpoint.
STATE = "trainer_state.json"
_STEP = re.compile(r"checkpoint-(\d+)")


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


# ---------------------------------------------------------------- checkpoints


def is_complete(checkpoint: Path) -> bool:
    """Whether TRL finished saving ``checkpoint``: its trainer state, written last, reads as JSON."""
    try:
        return isinstance(json.loads((checkpoint / STATE).read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False


def step_checkpoints(out: Path) -> list[Path]:
    """The ``checkpoint-N`` folders in ``out``, by step."""
    found = [p for p in out.glob("checkpoint-*") if _STEP.fullmatch(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(_STEP.fullmatch(p.name).group(1)))


def latest_checkpoint(out: Path) -> Path | None:
    """The complete checkpoint of the highest step in ``out``, or None; logs the incomplete ones
    it skipped on the way."""
    for checkpoint in reversed(step_checkpoints(out)):
        if is_complete(checkpoint):
            return checkpoint
        log.info("%s: incomplete checkpoint (no readable %s): skipped", checkpoint, STATE)
    return None


def resume_checkpoint(args) -> str | None:
    """TRL's ``resume_from_checkpoint`` for ``trainer.train``: a checkpoint path, or true for the
    latest complete ``checkpoint-N`` in the output directory (none yet: start from the
    beginning). The checkpoint's weights must be readable."""
    value = args.resume_from_checkpoint
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if not value:
        return None
    if value is True:
        checkpoint = latest_checkpoint(Path(args.output_dir))
        if checkpoint is None:
            log.info(
                "resume_from_checkpoint: no complete checkpoint-N in %s yet, starting from the beginning",
                args.output_dir,
            )
            return None
        log.info("resuming from %s, the latest complete checkpoint", checkpoint)
    else:
        checkpoint = Path(value)
        if not checkpoint.is_dir():
            raise ParrotError(f"resume_from_checkpoint: {value}: no such checkpoint directory")
        if not is_complete(checkpoint):
            raise ParrotError(f"resume_from_checkpoint: {checkpoint}: incomplete checkpoint (no readable {STATE})")
    check_weights(checkpoint)
    return str(checkpoint)


# ---------------------------------------------------------------- what a killed run left


def remove_leftovers(out: Path) -> None:
    """Remove what a run on ``out`` that was killed (or that failed) left in it: the checkpoints it
    did not finish saving and temporary files (a safetensors file killed mid-write stays at full
    size as ``.tmpXXXXXX``).

    Called by the main process as a run starts, holding the output's lock, and when a run fails:
    no other run is writing them."""
    if not out.is_dir():
        return
    for checkpoint in step_checkpoints(out):
        if not is_complete(checkpoint):
            log.warning(
                "%s: incomplete checkpoint (no readable %s: its run was stopped as it saved it): removed",
                checkpoint,
                STATE,
            )
            shutil.rmtree(checkpoint)
    for path in sorted({p for pattern in TEMPORARY for p in out.glob(pattern)}):
        log.info("%s: left by a run that was stopped: removed", path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
