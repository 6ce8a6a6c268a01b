"""Micro-batching for in-process backends (hf, vllm): many coroutines, few forward passes.

Every ``submit`` call, from any number of coroutines, puts its conversations on one queue; a
single worker task takes what is waiting (letting the event loop run until no more requests
arrive), optionally groups it by sampling parameters, sorts by length to save padding, and
runs batches of up to ``max_batch`` through a blocking function in a worker thread. Stage code
can therefore fire one coroutine per item and still get batched generation.

:class:`CheckpointBackend` is what the two in-process backends share: a local checkpoint
directory, a model loaded once on first use, and this batcher in front of it.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from parrot import ParrotError
from parrot.backends.base import Backend, BackendConfig, Completion, Messages, SamplingParams, Usage
from parrot.backends.spec import parse_spec

log = logging.getLogger("parrot.backends")

# How many event-loop ticks the worker waits for more requests before it cuts a batch:
# resumed callers need a few ticks to come back with their next item.
COALESCE_TICKS = 20

RunBatch = Callable[[list[Messages], list[SamplingParams]], list[Completion]]


@dataclass
class _Pending:
    messages: Messages
    params: SamplingParams
    future: asyncio.Future


def params_key(p: SamplingParams) -> tuple:
    """What must be equal for two requests to share one ``generate`` call. The seed is not: each
    request keeps its own, and the backend draws the batch's randomness from all of them."""
    return (p.temperature, p.top_p, p.max_tokens, tuple(p.stop), tuple(p.ban))


def batch_seed(params: list[SamplingParams]) -> int | None:
    """One seed for a batch, from its requests' seeds (None when none has one)."""
    seeds = [p.seed for p in params if p.seed is not None]
    if not seeds:
        return None
    if len(set(seeds)) == 1:
        return seeds[0]
    digest = hashlib.sha256(",".join(map(str, seeds)).encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def plan_batches(
    conversations: list[Messages], params: list[SamplingParams], max_batch: int | None, same_params: bool
) -> list[list[int]]:
    """How requests are cut into forward passes, as lists of their positions: grouped by sampling
    parameters when ``same_params``, longest prompts first (less padding), at most ``max_batch``
    each (None: one batch per group). The Ray executor cuts a batch with it too, so each replica
    runs the batches this process would have run."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        groups.setdefault(params_key(p) if same_params else (), []).append(i)
    batches = []
    for items in groups.values():
        items.sort(key=lambda i: -sum(len(str(m.get("content", ""))) for m in conversations[i]))
        size = max_batch or len(items)
        batches.extend(items[k : k + size] for k in range(0, len(items), size))
    return batches


class MicroBatcher:
    """Coalesces concurrent requests into calls of ``run_batch(messages, params)``.

    ``same_params``: only items with equal sampling parameters (seeds aside) share a batch
    (transformers ``generate`` takes one set); ``max_batch=None``: no cap (vLLM schedules on its own).
    The queue and worker belong to the running event loop; a new loop gets new ones.
    """

    def __init__(self, run_batch: RunBatch, usage: Usage, *, max_batch: int | None, same_params: bool):
        self.run_batch = run_batch
        self.usage = usage
        self.max_batch = max_batch
        self.same_params = same_params
        self.batches_run = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, conversations: list[Messages], params: list[SamplingParams]) -> list[Completion]:
        queue = self._queue_for_loop()
        loop = asyncio.get_running_loop()
        futures = []
        for messages, p in zip(conversations, params):
            fut = loop.create_future()
            queue.put_nowait(_Pending(messages, p, fut))
            futures.append(fut)
        return list(await asyncio.gather(*futures))

    def stop(self) -> None:
        """Cancel the worker task. Call it from the worker's own loop, while that loop runs on (a Ray
        replica's); a loop that ends (``asyncio.run``) cancels it by itself."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        self._worker = None

    def _queue_for_loop(self) -> asyncio.Queue:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._loop, self._queue = loop, asyncio.Queue()
            self._worker = loop.create_task(self._work(self._queue), name="parrot-batcher")
        return self._queue

    async def _work(self, queue: asyncio.Queue) -> None:
        while True:
            pending = [await queue.get()]
            stable = 0
            for _ in range(COALESCE_TICKS):  # let ready callers enqueue before we cut a batch
                before = queue.qsize()
                await asyncio.sleep(0)
                stable = stable + 1 if queue.qsize() == before else 0
                if stable >= 2:
                    break
            while not queue.empty():
                pending.append(queue.get_nowait())
            for batch in self.plan(pending):
                await self._run(batch)

    def plan(self, pending: list[_Pending]) -> list[list[_Pending]]:
        pending = [it for it in pending if not it.future.done()]  # a cancelled caller's are left out
        plan = plan_batches(
            [it.messages for it in pending], [it.params for it in pending], self.max_batch, self.same_params
        )
        return [[pending[i] for i in batch] for batch in plan]

    async def _run(self, batch: list[_Pending]) -> None:
        try:
            results = await asyncio.to_thread(
                self.run_batch, [it.messages for it in batch], [it.params for it in batch]
            )
            self.batches_run += 1
        except Exception as e:
            results = await self._one_by_one(batch, e)
            if results is None:  # every item fails alone too (a bug, out of memory): callers see it
                for it in batch:
                    if not it.future.done():
                        it.future.set_exception(e)
                return
        for it, c in zip(batch, results):
            self.usage.count(c)
            if not it.future.done():
                it.future.set_result(c)

    async def _one_by_one(self, batch: list[_Pending], error: Exception) -> list[Completion] | None:
        """After a failed batch, each item alone: one bad request (a prompt longer than the model's
        context, a template that rejects it) fails by itself, as a failed Completion, and the
        others are answered. None when every item fails alone too."""
        if len(batch) == 1:
            return None
        log.warning(
            "a batch of %d failed (%s: %s); running its requests one by one", len(batch), type(error).__name__, error
        )
        results, failures = [], 0
        for it in batch:
            try:
                [c] = await asyncio.to_thread(self.run_batch, [it.messages], [it.params])
                self.batches_run += 1
            except Exception as e:
                failures += 1
                c = Completion(text=None, error=f"request_failed: {type(e).__name__}: {e}"[:500])
            results.append(c)
        return None if failures == len(batch) else results


def finish_text(text: str, finish: str | None, stop: list[str]) -> tuple[str, str | None]:
    """Cut ``text`` at the earliest stop string (engines may leave it in)."""
    cut = min((text.find(s) for s in stop if s and s in text), default=-1)
    return (text[:cut], "stop") if cut >= 0 else (text, finish)


def completion(
    text: str, finish: str | None, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
) -> Completion:
    """A Completion, or a failed one when the model produced no text at all."""
    counts = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "cached_tokens": cached_tokens}
    if not text.strip():
        return Completion(
            text=None, finish_reason=finish, error="empty_reply: the model ended its turn without text", **counts
        )
    return Completion(text=text, finish_reason=finish, **counts)


def checkpoint_dir(spec: str) -> Path:
    """The local directory of ``hf:PATH`` or ``vllm:PATH`` (``...:smollm2``: the converted embedded model)."""
    model = parse_spec(spec)
    if model.embedded:
        from parrot.core.checkpoint import smollm2_checkpoint

        return smollm2_checkpoint()
    if not (model.path / "config.json").is_file():
        raise ParrotError(
            f"{model.path}: not a local transformers checkpoint (no config.json) for {spec!r}; "
            "the Hugging Face hub is never contacted, give a directory"
        )
    return model.path


class CheckpointBackend(Backend):
    """A model of a local checkpoint directory (:func:`checkpoint_dir`) run in this process,
    loaded once on first use, behind a :class:`MicroBatcher`. Subclasses load it
    (:meth:`_load`, :meth:`loaded`) and run one batch (:meth:`_run_batch`)."""

    def __init__(self, config: BackendConfig, *, max_batch: int | None, same_params: bool):
        super().__init__(config)
        self.path = checkpoint_dir(config.spec)
        self.batcher = MicroBatcher(self._run_batch, self.usage, max_batch=max_batch, same_params=same_params)

    @property
    def batches_run(self) -> int:
        """Batches run through the model so far (for tests and the benchmark)."""
        return self.batcher.batches_run

    def start(self) -> "CheckpointBackend":
        with self._start_lock:  # concurrent first calls (from threads) load the model once
            if not self.loaded():
                self._load()
        return self

    @abc.abstractmethod
    def _load(self) -> None:
        """Load the model (once; :meth:`loaded` is True afterwards)."""

    @abc.abstractmethod
    def loaded(self) -> bool:
        """Whether the model is loaded."""

    @abc.abstractmethod
    def _run_batch(self, conversations: list[Messages], params: list[SamplingParams]) -> list[Completion]:
        """One batch through the model (blocking: the batcher runs it in a worker thread)."""

    async def _agenerate(self, conversations: list[Messages], params: list[SamplingParams]) -> list[Completion]:
        if not self.loaded():
            await asyncio.to_thread(self.start)
        return await self.batcher.submit(conversations, params)

    def describe(self) -> dict:
        return {**super().describe(), "checkpoint": str(self.path)}
