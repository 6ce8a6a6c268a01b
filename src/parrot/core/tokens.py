"""Tokenizers and token counts: one loader, one counter, used by every stage.

- :func:`load_tokenizer` loads a transformers tokenizer from local files only: ``smollm2`` (the
  embedded SmolLM2 tokenizer), a checkpoint or tokenizer directory, or ``hf:PATH``
  (:func:`tokenizer_path`); the Hugging Face hub is never contacted.
- :class:`TokenCounter` counts the tokens of plain texts (message contents: ``prepare
  --max-tokens``, ``stats``), in batches through the fast (Rust) tokenizer.
- :func:`count_tokens` counts a conversation as the chat template renders it, the count every
  budget is measured in (training lengths, a model's context).

Both count without special tokens, the same way: :func:`token_lengths`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from parrot import ParrotError
from parrot.backends.spec import checkpoint_path


def tokenizer_path(spec: str) -> Path:
    """A local tokenizer directory for ``spec``: ``smollm2`` (the embedded one), a path, or ``hf:PATH``.

    The Hugging Face hub is never contacted: a path that is not a directory is an error.
    """
    from parrot.core.checkpoint import smollm2_tokenizer

    path = checkpoint_path(spec, embedded=smollm2_tokenizer)
    if not path.is_dir():
        raise ParrotError(
            f"{spec}: tokenizer not found (expected `smollm2` or a local directory with "
            "tokenizer.json / tokenizer_config.json; the Hugging Face hub is not used)"
        )
    return path


def load_tokenizer(spec: str | Path, *, trust_remote_code: bool = False, chat_template: bool = False):
    """The transformers tokenizer of ``spec`` (see :func:`tokenizer_path`), from local files only;
    ``chat_template=True`` makes a tokenizer without one an error (rendering chats needs it)."""
    from transformers import AutoTokenizer

    path = tokenizer_path(str(spec))
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    if chat_template and not tok.chat_template:
        raise ParrotError(f"{path}: the tokenizer has no chat template (needed to render sessions)")
    return tok


def token_lengths(tokenizer, texts: list[str]) -> list[int]:
    """The number of tokens of each text, without special tokens. A fast tokenizer is called
    directly (its Python wrapper costs more than the counting itself)."""
    fast = getattr(tokenizer, "backend_tokenizer", None)
    if fast is not None:
        return [len(e.ids) for e in fast.encode_batch(texts, add_special_tokens=False)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def count_tokens(tokenizer, messages: list[dict], *, generation_prompt: bool = False) -> int:
    """Tokens of ``messages`` as a transformers tokenizer's chat template renders them (the count
    every budget here is measured in: training lengths, a model's context)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return token_lengths(tokenizer, [text])[0]


class TokenCounter:
    """Counts the tokens of texts with one tokenizer: a loaded one, or a name for
    :func:`load_tokenizer` (``smollm2``, a local directory).

    :meth:`count` counts a list at once; :meth:`add` queues one text and hands its count to a
    callback at the next :meth:`flush` (every ``batch_size`` texts), so a stream of single
    messages is still counted in batches (the fast tokenizers parallelise a batch). Texts are cut
    to ``max_chars`` first when it is given (a guard against one pathological message).
    ``seconds`` and ``cpu_seconds`` add up the time spent counting.
    """

    def __init__(self, tokenizer, *, batch_size: int = 256, max_chars: int | None = None):
        if isinstance(tokenizer, (str, Path)):
            tokenizer = load_tokenizer(tokenizer)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_chars = max_chars
        self._pending: list[tuple[str, Callable[[int], object]]] = []
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    def count(self, texts: list[str]) -> list[int]:
        t0, c0 = time.perf_counter(), time.process_time()
        if self.max_chars is not None:
            texts = [t[: self.max_chars] for t in texts]
        lengths = token_lengths(self.tokenizer, texts)
        self.seconds += time.perf_counter() - t0
        self.cpu_seconds += time.process_time() - c0
        return lengths

    def add(self, text: str, then: Callable[[int], object]) -> None:
        """Count ``text`` with the next batch and call ``then(tokens)``."""
        self._pending.append((text, then))
        if len(self._pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Count what :meth:`add` queued."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        for n, (_, then) in zip(self.count([t for t, _ in pending]), pending):
            then(n)
