"""A model spec (``openai:MODEL``, ``hf:PATH``, ``gguf:PATH``, ``vllm:PATH``, ``smollm2``), read here
and nowhere else: loading a backend, choosing an executor, naming a model in records, finding a
checkpoint or a tokenizer and digesting a role's inputs all ask :class:`ModelSpec`, so a new kind
changes this module only. In place of a path, ``smollm2`` is the embedded SmolLM2-135M-Instruct
(``smollm2`` alone: its GGUF, served by llama.cpp)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from parrot import ParrotError

EMBEDDED = "smollm2"
KINDS = ("openai", "hf", "gguf", "vllm")


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # one of KINDS (smollm2 alone: gguf)
    name: str  # what follows ``kind:``: a served model's name (openai), else a local path or EMBEDDED

    @property
    def in_process(self) -> bool:
        """Loaded by the process that calls it (so a Ray replica can hold it), not behind an endpoint."""
        return self.kind != "openai"

    @property
    def micro_batched(self) -> bool:
        """Run through this process's micro-batcher (callers send batches); llama.cpp batches in its server."""
        return self.kind in ("hf", "vllm")

    @property
    def embedded(self) -> bool:
        return self.in_process and self.name == EMBEDDED

    @property
    def path(self) -> Path | None:
        """The local file or directory it names (None: a served model, or the embedded one)."""
        return Path(self.name).expanduser() if self.in_process and not self.embedded else None

    @property
    def model_id(self) -> str:
        """The name it goes by in records: ``openai:gpt-4`` → ``gpt-4``, ``hf:/ckpt/chat/`` → ``chat``,
        ``gguf:/m/tiny.Q4.gguf`` → ``tiny.Q4``; a trained model's ``gguf:OUT/model.gguf`` (``--gguf``)
        goes by ``OUT``'s name, as ``hf:OUT`` does."""
        if not self.path:
            return self.name
        path = Path(self.name.rstrip("/"))
        if path.name == "model.gguf" and path.parent.name:
            return path.parent.name
        return path.stem if path.suffix == ".gguf" else path.name


@functools.lru_cache(maxsize=256)
def read_spec(text: str) -> ModelSpec | None:
    """The spec ``text`` is, or None when it is none (a plain path, ``sharegpt``)."""
    kind, sep, name = text.partition(":")
    if text == EMBEDDED:
        return ModelSpec("gguf", EMBEDDED)
    return ModelSpec(kind, name) if sep and name and kind in KINDS else None


def parse_spec(text: str) -> ModelSpec:
    if isinstance(text, str) and (spec := read_spec(text)):
        return spec
    raise ParrotError(f"unknown model spec {text!r}: expected openai:MODEL, hf:PATH, gguf:PATH, vllm:PATH or smollm2")


def checkpoint_path(text: str, embedded: Callable[[], Path]) -> Path:
    """The directory a training or tokenizer setting names (``hf:PATH`` or a plain path); for the
    embedded SmolLM2, ``embedded()`` (it is converted on first use, so only when asked for)."""
    spec = read_spec(text)
    if spec and spec.embedded:
        return embedded()
    return spec.path if spec and spec.kind == "hf" else Path(text)
