"""What a training run does differently where there is no CUDA GPU.

- bf16 autocast only where the CPU multiplies bf16 natively (AVX512-BF16 or AMX: ~1.5x per step
  measured), since elsewhere it slows a CPU down; activation checkpointing off (it only slows a
  CPU down): :func:`device_settings`;
- the LM head scores only the positions that carry a label: :func:`compact_lm_head`, a patch of
  TRL's fused LM head.
"""

from __future__ import annotations

import contextlib
import dataclasses


def device_settings(kwargs: dict, user: dict) -> dict:
    """``kwargs`` (TRL settings) with the defaults for this machine, then ``user``'s keys on top."""
    import torch

    kw = dict(kwargs)
    on_cpu = not torch.cuda.is_available() and not torch.backends.mps.is_available()
    if not torch.cuda.is_available():
        kw["bf16"] = on_cpu and cpu_has_native_bf16()
        if not {"gradient_checkpointing", "activation_checkpointing"} & set(user):
            kw[checkpointing_key()] = False
        kw["dataloader_pin_memory"] = False  # pinned memory is for copies to a GPU
    kw.update(user)
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
