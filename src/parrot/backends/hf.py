"""``hf:PATH``: a local transformers checkpoint, batched left-padded generation.

Prompts are rendered with the tokenizer's own chat template (``add_generation_prompt``), padded
on the left so every row's last prompt token sits at the same position, and generated in one
``model.generate`` call per batch. Generation stops at the end of the assistant's turn: the eos
token(s) plus the token the chat template writes after an assistant message (``<|im_end|>``,
``<|eot_id|>``, ...).

Micro-batching (:mod:`parrot.backends.batching`): concurrent :meth:`HFBackend.agenerate` calls
from many coroutines are coalesced into batches of up to ``batch_size`` with equal sampling
parameters, generated in a worker thread. Stage code can fire one coroutine per item (not run
by the test suite's doctests: it needs a loaded model):

>>> async def ask(q):                                                      # doctest: +SKIP
...     [c] = await model.agenerate([[{"role": "user", "content": q}]], params)
...     return c.text
>>> await asyncio.gather(*(ask(q) for q in questions))  # batches of batch_size  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Any

from parrot import ParrotError
from parrot.backends.base import BackendConfig, Completion, Messages, SamplingParams
from parrot.backends.batching import CheckpointBackend, batch_seed, completion, finish_text
from parrot.backends.cpu import busy_machine_threads
from parrot.core.tokens import count_tokens

log = logging.getLogger("parrot.backends.hf")

_DTYPES = ("auto", "float32", "bfloat16", "float16")


def context_length(config) -> int | None:
    """``max_position_embeddings``, or None with RoPE scaling (YaRN, linear, ...), where the usable
    context may be longer than that field says."""
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    scaled = isinstance(rope, dict) and rope.get("rope_type", rope.get("type", "default")) != "default"
    return None if scaled else getattr(config, "max_position_embeddings", None)


class HFBackend(CheckpointBackend):
    """transformers ``generate`` behind a micro-batching queue."""

    def __init__(self, config: BackendConfig):
        if config.dtype not in _DTYPES:
            raise ParrotError(f"{config.spec}: dtype must be one of {', '.join(_DTYPES)}, got {config.dtype!r}")
        if config.batch_size < 1:
            raise ParrotError(f"{config.spec}: batch_size must be at least 1, got {config.batch_size}")
        super().__init__(config, max_batch=config.batch_size, same_params=True)
        self.model = None
        self.tokenizer = None
        self.stop_token_ids: list[int] = []
        self.torch_threads: int | None = None
        self.context_positions: int | None = None  # positions the model knows (None: unknown, not checked)

    # ------------------------------------------------------------------ loading
    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cfg = self.config
        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.dtype)
        if dtype is None:  # auto: full precision on CPU, bf16 (or fp16) on GPU
            dtype = (
                torch.float32
                if device == "cpu"
                else (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
            )
        # Custom model code runs only when the user said so.
        remote = {"trust_remote_code": True} if cfg.trust_remote_code else {}
        tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True, **remote)
        if tok.chat_template is None:
            raise ParrotError(
                f"{self.path}: the tokenizer has no chat template "
                "(tokenizer_config.json 'chat_template' or chat_template.jinja)"
            )
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        if device == "cpu":  # set torch's thread count only when asked or needed
            self.torch_threads = cfg.threads or busy_machine_threads("torch")
        model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype, local_files_only=True, **remote)
        model.to(device).eval()
        self.tokenizer, self.model, self.device = tok, model, device
        self.stop_token_ids = self._end_of_turn_ids()
        self.context_positions = context_length(self.model.config)
        log.info(
            "loaded %s (%s, %s); stops at %s",
            self.path,
            device,
            str(dtype).removeprefix("torch."),
            tok.convert_ids_to_tokens(self.stop_token_ids),
        )

    def _end_of_turn_ids(self) -> list[int]:
        """eos (tokenizer and generation config) plus the special token the chat template puts
        right after an assistant message."""
        tok = self.tokenizer
        ids = []
        for source in (tok.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            ids.extend(source if isinstance(source, list) else [source] if source is not None else [])
        marker = "PARROT_END_MARKER"
        rendered = tok.apply_chat_template(
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}], tokenize=False
        )
        after = rendered.split(marker, 1)[-1]
        special = set(tok.all_special_ids) | {i for i, t in tok.added_tokens_decoder.items() if t.special}
        for token_id in tok(after, add_special_tokens=False)["input_ids"]:
            if token_id in special:
                ids.append(token_id)
                break
        return list(dict.fromkeys(ids))

    def close(self) -> None:
        super().close()
        self.model = None

    # ------------------------------------------------------------------ one batch
    def encode(self, conversations: list[Messages]) -> dict:
        """Left-padded ``input_ids``/``attention_mask`` for the chat-templated prompts."""
        prompts = [
            self.tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in conversations
        ]
        # The template already wrote any BOS it wants.
        return self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)

    def generate_batch(
        self, conversations: list[Messages], params: SamplingParams, seed: int | None = None
    ) -> list[Completion]:
        """One blocking ``model.generate`` over the whole batch (runs in a worker thread);
        ``seed`` (default: ``params.seed``) seeds the sampling of the whole batch."""
        import torch

        self.start()
        enc = self.encode(conversations).to(self.device)
        longest = int(enc["attention_mask"].sum(dim=1).max())
        if self.context_positions and longest >= self.context_positions:  # the batcher then fails it alone
            raise ValueError(
                f"a prompt of {longest} tokens does not fit the model's context ({self.context_positions} tokens)"
            )
        kwargs: dict[str, Any] = dict(
            max_new_tokens=params.max_tokens, eos_token_id=self.stop_token_ids, pad_token_id=self.tokenizer.pad_token_id
        )
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        if params.ban:
            kwargs.update(suppress_tokens=self.banned_ids(params.ban))
        if self.torch_threads:  # OpenMP's thread count belongs to the calling thread: set it here
            torch.set_num_threads(self.torch_threads)
        seed = params.seed if seed is None else seed
        if seed is not None:
            torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        width = enc["input_ids"].shape[1]
        stops = set(self.stop_token_ids)
        results = []
        for row, mask in zip(out[:, width:].tolist(), enc["attention_mask"]):
            end = next((i for i, t in enumerate(row) if t in stops), None)
            tokens = row if end is None else row[:end]
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            text, finish = finish_text(text, "length" if end is None else "stop", params.stop)
            results.append(completion(text, finish, int(mask.sum()), len(tokens) + (end is not None)))
        return results

    def _run_batch(self, conversations: list[Messages], params: list[SamplingParams]) -> list[Completion]:
        # The batcher groups equal parameters but keeps each request's seed: the batch is seeded from
        # all of them, so equal prompts with different seeds (two sessions on one topic, in one batch
        # or in two) sample differently, and the same requests in the same batch sample the same.
        return self.generate_batch(conversations, params[0], seed=batch_seed(params))

    def loaded(self) -> bool:
        return self.model is not None

    def first_token(self, text: str) -> int:
        self.start()
        return self.tokenizer.encode(text, add_special_tokens=False)[0]

    def context(self) -> int | None:
        return self.config.context_length or self.context_positions

    def count_tokens(self, messages: Messages) -> int:
        return count_tokens(self.tokenizer, messages, generation_prompt=True)

    def describe(self) -> dict:
        out = super().describe()
        if self.model is not None:
            out["stop_tokens"] = self.tokenizer.convert_ids_to_tokens(self.stop_token_ids)
        return out
