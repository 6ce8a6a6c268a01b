"""Turning the embedded GGUF into ordinary Hugging Face checkpoints, once, cached on disk.

transformers loads a GGUF into float tensors but keeps a quantizer flag that blocks full
fine-tuning and ``save_pretrained``; :func:`smollm2_checkpoint` clears it and saves a plain
checkpoint (safetensors + tokenizer with its chat template) that training, the ``hf:`` backend
and vLLM all load.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from parrot import ParrotError
from parrot.backends.spec import checkpoint_path
from parrot.core.assets import cache_dir, smollm2_gguf_path

log = logging.getLogger("parrot.checkpoint")

SMOLLM2_NAME = "smollm2-135m-instruct"


def _gguf_source() -> tuple[str, str]:
    path = smollm2_gguf_path()
    return str(path.parent), path.name


def smollm2_tokenizer(out_dir: str | Path | None = None) -> Path:
    """Save the SmolLM2 tokenizer (with its chat template) from the GGUF; return the directory.

    Takes a few seconds; cached under ``$PARROT_CACHE`` unless ``out_dir`` is given.
    """
    out = Path(out_dir) if out_dir else cache_dir() / f"{SMOLLM2_NAME}-tokenizer"
    if (out / "tokenizer_config.json").is_file():
        return out
    from transformers import AutoTokenizer

    folder, name = _gguf_source()
    log.info("extracting the SmolLM2 tokenizer from %s", name)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    _save_atomically(out, tok.save_pretrained)
    return out


def smollm2_checkpoint(out_dir: str | Path | None = None) -> Path:
    """Convert SmolLM2-135M-Instruct (GGUF) to a plain float32 checkpoint; return its directory."""
    out = Path(out_dir) if out_dir else cache_dir() / SMOLLM2_NAME
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = _gguf_source()
    log.info("converting %s to an ordinary checkpoint at %s (once)", name, out)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # The GGUF loader marks the model quantized; the tensors are already plain floats.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)

    _save_atomically(out, save)
    return out


def resolve_model_path(spec: str) -> Path:
    """A trainable local checkpoint for ``spec``: ``smollm2``, ``hf:PATH`` or a plain path.

    The Hugging Face hub is never contacted: a path that does not exist is an error.
    """
    path = checkpoint_path(spec, embedded=smollm2_checkpoint)
    if not path.exists():
        raise ParrotError(
            f"{path}: model not found (give a local checkpoint directory, or 'smollm2' for the embedded default)"
        )
    return path


def _save_atomically(out: Path, save) -> None:
    """Fill the directory ``out`` atomically: ``save(tmp)`` writes into ``out.tmp-PID``, renamed
    to ``out`` when it returns (removed on any error, or when another process finished first).

    Not :func:`parrot.core.jsonl.write_text_atomic`: this is a directory of files another library
    writes (``save_pretrained``), a cache that processes started together may all fill at once
    (so each has its own temporary name, and the first to finish wins), and model weights are
    never scrubbed of secrets as Parrot's own text outputs are.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save(tmp)
        if out.exists():  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
            return
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_weights(checkpoint: str | Path) -> None:
    """Raise a ParrotError naming the first safetensors file of ``checkpoint`` (a directory, or one
    file) that cannot be read: overwritten, cut short, not safetensors at all.

    Only the header is read (and checked against the file's size), which costs nothing next to
    loading; the loaders' own error (``SafetensorError: header too large``) names no file.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(checkpoint)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path] if path.suffix == ".safetensors" else []
    for file in files:
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except SafetensorError as e:
            raise ParrotError(
                f"{file}: cannot be read as safetensors ({e}): the file is damaged; train it again"
            ) from None
