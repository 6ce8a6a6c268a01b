"""``hf:PATH``: a local transformers checkpoint, batched left-padded generation.

Prompts are rendered with the tokenizer's own chat template (``add_generation_prompt``), padded
on the left so every row's last prompt token sits at the same position, and generated in one
``model.generate`` call per batch. Generation stops at the end of the assistant's turn: the eos
token(s) plus the token the chat template writes after an assistant message (``<|im_end|>``,
``<|eot_id|>``, ...).

Micro-batching: every :meth:`HFBackend.agenerate` call, from any number of coroutines, puts its
conversations on one queue; a single worker takes what is waiting (letting the event loop run
until no more requests arrive), groups it by sampling parameters, sorts by length to save
padding, and runs batches of up to ``batch_size`` in a worker thread. So stage code can simply
fire one coroutine per item and still get batched forward passes:

>>> async def ask(q):                                                      # doctest: +SKIP
...     [c] = await model.agenerate([[{"role": "user", "content": q}]], params)
...     return c.text
>>> await asyncio.gather(*(ask(q) for q in questions))  # batches of batch_size  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parrot import ParrotError
from parrot.backends.base import Backend, BackendConfig, Completion, Messages, SamplingParams, per_item

log = logging.getLogger("parrot.backends.hf")

_DTYPES = ("auto", "float32", "bfloat16", "float16")

# How many event-loop ticks the batcher waits for more requests before it runs a batch:
# resumed callers need a few ticks to come back with their next item.
_COALESCE_TICKS = 20


def checkpoint_dir(spec: str) -> Path:
    """The local directory of ``hf:PATH`` (``hf:smollm2`` is the converted embedded model)."""
    rest = spec.split(":", 1)[1]
    if rest == "smollm2":
        from parrot.checkpoint import smollm2_checkpoint
        return smollm2_checkpoint()
    path = Path(rest).expanduser()
    if not (path / "config.json").is_file():
        raise ParrotError(f"{path}: not a local transformers checkpoint (no config.json); "
                          "the Hugging Face hub is never contacted, give a directory")
    return path


@dataclass
class _Pending:
    messages: Messages
    params: SamplingParams
    future: asyncio.Future


def _params_key(p: SamplingParams) -> tuple:
    return (p.temperature, p.top_p, p.max_tokens, p.seed, tuple(p.stop))


class HFBackend(Backend):
    """transformers ``generate`` behind a micro-batching queue."""

    local = True

    def __init__(self, config: BackendConfig):
        super().__init__(config)
        if config.dtype not in _DTYPES:
            raise ParrotError(f"{config.spec}: dtype must be one of {', '.join(_DTYPES)}, got {config.dtype!r}")
        if config.batch_size < 1:
            raise ParrotError(f"{config.spec}: batch_size must be at least 1, got {config.batch_size}")
        self.path = checkpoint_dir(config.spec)
        self.model = None
        self.tokenizer = None
        self.stop_token_ids: list[int] = []
        self.batches_run = 0  # forward `generate` calls, for tests and the benchmark
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    @property
    def model_name(self) -> str:
        return "smollm2" if self.config.spec == "hf:smollm2" else self.path.name

    # ------------------------------------------------------------------ loading
    def start(self) -> "HFBackend":
        if self.model is not None:
            return self
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cfg = self.config
        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.dtype)
        if dtype is None:  # auto: full precision on CPU, bf16 (or fp16) on GPU
            dtype = torch.float32 if device == "cpu" else (
                torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        # Custom model code runs only when the user said so.
        remote = {"trust_remote_code": True} if cfg.trust_remote_code else {}
        tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True, **remote)
        if tok.chat_template is None:
            raise ParrotError(f"{self.path}: the tokenizer has no chat template "
                              "(tokenizer_config.json 'chat_template' or chat_template.jinja)")
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype, local_files_only=True, **remote)
        model.to(device).eval()
        self.tokenizer, self.model, self.device = tok, model, device
        self.stop_token_ids = self._end_of_turn_ids()
        log.info("loaded %s (%s, %s); stops at %s", self.path, device, str(dtype).removeprefix("torch."),
                 tok.convert_ids_to_tokens(self.stop_token_ids))
        return self

    def _end_of_turn_ids(self) -> list[int]:
        """eos (tokenizer and generation config) plus the special token the chat template puts
        right after an assistant message."""
        tok = self.tokenizer
        ids = []
        for source in (tok.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            ids.extend(source if isinstance(source, list) else [source] if source is not None else [])
        marker = "PARROT_END_MARKER"
        rendered = tok.apply_chat_template([{"role": "user", "content": "x"},
                                            {"role": "assistant", "content": marker}], tokenize=False)
        after = rendered.split(marker, 1)[-1]
        special = set(tok.all_special_ids) | {i for i, t in tok.added_tokens_decoder.items() if t.special}
        for token_id in tok(after, add_special_tokens=False)["input_ids"]:
            if token_id in special:
                ids.append(token_id)
                break
        return list(dict.fromkeys(ids))

    def close(self) -> None:
        if self.usage.requests:
            log.info("%s: %s", self.config.spec, self.usage.summary())
        self.model = None
        self._loop = self._queue = self._worker = None

    # ------------------------------------------------------------------ one batch
    def encode(self, conversations: list[Messages]) -> dict:
        """Left-padded ``input_ids``/``attention_mask`` for the chat-templated prompts."""
        prompts = [self.tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
                   for m in conversations]
        # The template already wrote any BOS it wants.
        return self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)

    def generate_batch(self, conversations: list[Messages], params: SamplingParams) -> list[Completion]:
        """One blocking ``model.generate`` over the whole batch (runs in a worker thread)."""
        import torch

        self.start()
        enc = self.encode(conversations).to(self.device)
        kwargs: dict[str, Any] = dict(max_new_tokens=params.max_tokens, eos_token_id=self.stop_token_ids,
                                      pad_token_id=self.tokenizer.pad_token_id)
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        self.batches_run += 1
        width = enc["input_ids"].shape[1]
        stops = set(self.stop_token_ids)
        results = []
        for row, mask in zip(out[:, width:].tolist(), enc["attention_mask"]):
            end = next((i for i, t in enumerate(row) if t in stops), None)
            tokens = row if end is None else row[:end]
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            finish = "length" if end is None else "stop"
            cut = min((text.find(s) for s in params.stop if s and s in text), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
            n_completion = len(tokens) + (end is not None)
            if not text.strip():
                results.append(Completion(text=None, finish_reason=finish, prompt_tokens=int(mask.sum()),
                                          completion_tokens=n_completion,
                                          error="empty_reply: the model ended its turn without text"))
                continue
            results.append(Completion(text=text, finish_reason=finish, prompt_tokens=int(mask.sum()),
                                      completion_tokens=n_completion))
        return results

    # ------------------------------------------------------------------ micro-batching
    async def agenerate(self, conversations: list[Messages],
                        params: SamplingParams | list[SamplingParams]) -> list[Completion]:
        plist = per_item(params, len(conversations))
        if not conversations:
            return []
        if self.model is None:
            await asyncio.to_thread(self.start)
        queue = self._queue_for_loop()
        loop = asyncio.get_running_loop()
        futures = []
        for messages, p in zip(conversations, plist):
            fut = loop.create_future()
            queue.put_nowait(_Pending(messages, p, fut))
            futures.append(fut)
        return list(await asyncio.gather(*futures))

    def _queue_for_loop(self) -> asyncio.Queue:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._loop, self._queue = loop, asyncio.Queue()
            self._worker = loop.create_task(self._batcher(self._queue), name="hf-batcher")
        return self._queue

    async def _batcher(self, queue: asyncio.Queue) -> None:
        while True:
            pending = [await queue.get()]
            stable = 0
            for _ in range(_COALESCE_TICKS):  # let ready callers enqueue before we cut a batch
                before = queue.qsize()
                await asyncio.sleep(0)
                stable = stable + 1 if queue.qsize() == before else 0
                if stable >= 2:
                    break
            while not queue.empty():
                pending.append(queue.get_nowait())
            for batch in self._plan_batches(pending):
                await self._run_batch(batch)

    def _plan_batches(self, pending: list[_Pending]) -> list[list[_Pending]]:
        """Same-parameter groups, longest prompts first, cut into ``batch_size`` chunks."""
        groups: dict[tuple, list[_Pending]] = {}
        for item in pending:
            if not item.future.done():  # its caller was cancelled
                groups.setdefault(_params_key(item.params), []).append(item)
        batches = []
        size = self.config.batch_size
        for items in groups.values():
            items.sort(key=lambda it: -sum(len(str(m.get("content", ""))) for m in it.messages))
            batches.extend(items[i:i + size] for i in range(0, len(items), size))
        return batches

    async def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            results = await asyncio.to_thread(self.generate_batch, [it.messages for it in batch],
                                              batch[0].params)
        except Exception as e:  # a real bug or OOM: surface it to every caller of this batch
            for it in batch:
                if not it.future.done():
                    it.future.set_exception(e)
            return
        for it, c in zip(batch, results):
            self.usage.requests += 1
            if c.ok:
                self.usage.completions += 1
            else:
                self.usage.failures += 1
                self.usage.count_error("empty_reply")
            self.usage.prompt_tokens += c.prompt_tokens
            self.usage.completion_tokens += c.completion_tokens
            if not it.future.done():
                it.future.set_result(c)

    def describe(self) -> dict:
        out = super().describe()
        out["checkpoint"] = str(self.path)
        if self.model is not None:
            out["stop_tokens"] = self.tokenizer.convert_ids_to_tokens(self.stop_token_ids)
        return out
