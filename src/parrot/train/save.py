"""What a training run leaves, and what it never leaves: the saved model (full weights, a LoRA
adapter, or the adapter merged in), the ``checkpoint-N`` folders TRL saves on the way and the
one ``--resume`` continues from, and the leftovers of a run that was killed.

- **The saved model** is written whole into ``OUT/.saving.tmp`` first; only then do its files
  replace the previous model's, one ``os.replace`` each, and the previous model's files the new
  save did not write go (:func:`save_output`). Until then the previous model stays as it was: a
  save that fails (a full disk) or a run killed before it leaves it loadable.
- **Checkpoints**: transformers saves ``checkpoint-N`` in place, writing ``trainer_state.json``
  last (after the weights, optimizer, scheduler and RNG states); a run stopped while it saves
  leaves a folder without it, or with it cut short. Such a checkpoint is incomplete
  (:func:`is_complete`): ``--resume`` continues from the latest complete one
  (:func:`resume_checkpoint`; transformers' own choice, the highest N, fails on it).
- **Leftovers** of a killed run (incomplete checkpoints, the save folder, safetensors' and the GGUF
  export's temporary files) are removed when the next run on the output starts
  (:func:`remove_leftovers`); the rendered datasets' caches, by :mod:`parrot.train.dataset`.
- **Write errors** (a full disk, a read-only directory) are one line naming the output
  (:func:`write_errors`), safetensors' own error type included.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from parrot import ParrotError
from parrot.core.checkpoint import check_weights
from parrot.core.jsonl import naming
from parrot.train.config import TrainConfig, saved_model_files

log = logging.getLogger("parrot.train")

#: The folder inside the output where a new model is saved before it replaces the previous one.
SAVING = ".saving.tmp"
#: Temporary files a write leaves when the process is killed: safetensors writes ``.tmpXXXXXX``
#: beside its target and renames it when done; the GGUF export, ``model.gguf.tmp-PID``.
TEMPORARY = (".tmp??????", "model.gguf.tmp-*")
#: The trainer state TRL writes last into a checkpoint.
STATE = "trainer_state.json"
#: What holds the weights of a saved model (a save that wrote none of these replaces nothing).
WEIGHTS = ("model*.safetensors", "adapter_model.*", "pytorch_model*.bin")
_STEP = re.compile(r"checkpoint-(\d+)")
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


# ---------------------------------------------------------------- the saved model


def save_output(trainer, cfg: TrainConfig, tokenizer) -> str:
    """Save the trained model as an ordinary checkpoint directory; return what was saved.

    Full fine-tune: the model. LoRA + merge: the adapter merged into the weights (loads like
    any checkpoint: ``hf:OUT``, vLLM). LoRA without merge: the adapter only
    (``adapter_config.json``), to load with PEFT or vLLM's LoRA support. With ``gguf``, the
    saved checkpoint is also written as ``OUT/model.gguf`` (matrices as ``gguf_dtype``) for the ``gguf:`` backend.

    Everything is written into ``OUT/.saving.tmp`` and then replaces the previous model's files
    (see the module docstring). Every process takes part in ``save_model`` (collective under
    FSDP / ZeRO-3); only the main one (rank 0) makes, moves or removes files. Returns ``""`` in
    the others.
    """
    out = Path(cfg.output)
    new = out / SAVING
    main = trainer.is_world_process_zero()
    try:
        if main:
            new.mkdir(parents=True, exist_ok=True)
        trainer.save_model(str(new))
        if not main:
            return ""
        kind = complete_save(new, cfg, tokenizer)
        replace_saved_model(new, out)
    finally:
        if main:
            shutil.rmtree(new, ignore_errors=True)
    return kind


def complete_save(new: Path, cfg: TrainConfig, tokenizer) -> str:
    """Add to the model the trainer saved in ``new`` what the output holds besides (the adapter
    merged in, the tokenizer, model.gguf); return what was saved: full, adapter or merged."""
    if not any(p for pattern in WEIGHTS for p in new.glob(pattern)):
        raise ParrotError(
            f"{cfg.output}: the trainer saved no weights (a sharded state dict? gather it in full: "
            "FULL_STATE_DICT, zero3_save_16bit_model); the previous model, if any, is kept"
        )
    kind = "full"
    if cfg.lora:
        kind = "adapter"
        if cfg.merge:
            merge_adapter(new)
            kind = "merged"
    if not (new / "tokenizer_config.json").is_file():  # the trainer saves its processing class too
        tokenizer.save_pretrained(str(new))
    (new / "training_args.bin").unlink(missing_ok=True)  # pickled TRL config: the manifest records it as JSON
    if cfg.gguf:
        from parrot.backends.gguf_export import export_gguf

        export_gguf(new, new / gguf_file(cfg).name, cfg.gguf_dtype, name=Path(cfg.output).name)
    return kind


def replace_saved_model(new: Path, out: Path) -> None:
    """Move each file of the model saved in ``new`` into ``out`` (``os.replace``: the path holds
    the old file or the new one, never part of either), then remove the files of the previous
    model that the new save did not write (a stale adapter beside new full weights)."""
    written = set()
    for path in sorted(new.iterdir()):
        target = out / path.name
        if path.is_dir() and target.is_dir():
            shutil.rmtree(target)
        os.replace(path, target)
        written.add(target)
    for path in saved_model_files(out):
        if path not in written:
            path.unlink()


def gguf_file(cfg: TrainConfig) -> Path:
    """Where ``gguf=true`` writes the llama.cpp copy of the trained model."""
    return Path(cfg.output) / "model.gguf"


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


@contextmanager
def write_errors(out: str | Path) -> Iterator[None]:
    """An error writing the model or a checkpoint as an OSError naming the output, which the
    command line prints on one line as it does every stage's (``models/chat: No space left on
    device``). safetensors raises its own error type, the OS error in its text (``I/O error: No
    space left on device (os error 28)``); a full disk at a plain write names no file."""
    from safetensors import SafetensorError

    try:
        with naming(out):
            yield
    except SafetensorError as e:
        found = _OS_ERROR.search(str(e))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(out)) from e


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
    did not finish saving, the folder a new model was being saved in and temporary files (a
    safetensors file killed mid-write stays at full size as ``.tmpXXXXXX``).

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
    for path in sorted({p for pattern in (SAVING, *TEMPORARY) for p in out.glob(pattern)}):
        log.info("%s: left by a run that was stopped: removed", path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
