"""The one interface every stage uses to reach a model.

A backend takes a batch of conversations (message lists) plus explicit sampling parameters and
returns one :class:`Completion` each. The core is async (:meth:`Backend.agenerate`);
:meth:`Backend.generate` is the sync entry point. A failed item is a Completion with
``text=None`` and an ``error``; it is never an empty string passed on as an answer.

A role (asker, assistant, judge, generator, model under test) is a :class:`BackendConfig`:
a spec string plus options. In YAML either ``judge: openai:gpt-4`` or
``judge: {spec: openai:gpt-4, concurrency: 32, temperature: 0}``.

A conversation longer than the model's context is shortened before it is sent, by the one rule
of :mod:`parrot.core.shorten` (oldest whole turns first; the last message cut, keeping its end, only
when it alone is too long), leaving room for the answer: ``min(max_tokens, context / 2)`` tokens,
and ``max_tokens`` is lowered to what is left when it asks for more. The completion says what
was left out (:attr:`Completion.shortened`) and :attr:`Usage.shortened` counts it. The context is
the model's own for ``hf``/``vllm``, a llama.cpp slot's share of ``ctx_size`` for ``gguf``, and
for an ``openai:`` endpoint unknown (nothing shortened) unless the role sets ``context_length``
(and a local ``tokenizer`` to count with).
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from parrot import ParrotError
from parrot.backends.spec import ModelSpec, parse_spec
from parrot.core.config import check_ranges, opt
from parrot.core.shorten import shorten

Messages = list[dict]

log = logging.getLogger("parrot.backends")


#: The logit bias that bans a token (the OpenAI API's lowest; llama.cpp and vLLM take it too).
BANNED_BIAS = -100.0


@dataclass
class SamplingParams:
    """Sent explicitly with every request (never left to a server's hidden defaults)."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    #: Texts the model must not begin to write: the first token of each is kept from being sampled
    #: anywhere in the completion, where the engine can (hf, vllm, gguf: :attr:`Backend.bans`); an
    #: endpoint that cannot (openai) ignores them, and the caller checks the text it gets.
    ban: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The fields, ``ban`` only when it bans something (records and manifests as they always were)."""
        out = dataclasses.asdict(self)
        if not out["ban"]:
            del out["ban"]
        return out

    def replace(self, **changes: Any) -> "SamplingParams":
        return dataclasses.replace(self, **changes)


@dataclass
class Completion:
    """One result. ``text is None`` means the item failed after retries; ``error`` says why."""

    text: str | None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    shortened: dict | None = None  # what was left out to fit the context (see the module docstring)
    cached_tokens: int = 0  # prompt tokens the engine reused from its cache, where it says so

    @property
    def ok(self) -> bool:
        return self.text is not None


@dataclass
class BackendConfig:
    """A role's model: a spec string plus options. The options that say how it is served
    (``hashed=False``: the endpoint, concurrency, timeouts, retries, batch size, slots, threads)
    are not part of a stage's fingerprint; the rest is."""

    spec: str = opt("smollm2", "openai:MODEL | hf:PATH | gguf:PATH | vllm:PATH | smollm2", digest=True)
    base_url: str | list[str] | None = opt(
        None,
        "OpenAI-compatible endpoint, or a list of them sharing the role's requests (default: $OPENAI_BASE_URL)",
        hashed=False,
    )
    api_key_env: str = opt("OPENAI_API_KEY", "name of the environment variable holding the API key", hashed=False)
    concurrency: int = opt(8, "requests in flight at once (HTTP backends)", hashed=False, min=1)
    timeout: float = opt(120.0, "seconds per request before it is retried", hashed=False, above=0)
    max_retries: int = opt(5, "retries on 429/5xx/timeouts/empty replies before an item fails", hashed=False, min=0)
    batch_size: int = opt(8, "conversations per forward pass (hf, vllm)", hashed=False, min=1)
    dtype: str = opt("auto", "hf/vllm weights dtype: auto | float32 | bfloat16 | float16")
    device: str = opt("auto", "hf device: auto | cpu | cuda | cuda:N")
    slots: int = opt(
        4, "parallel decoding slots of the in-process llama.cpp server (gguf, smollm2)", hashed=False, min=1
    )
    ctx_size: int = opt(8192, "context window of the llama.cpp server, shared by its slots", min=16)
    threads: int | None = opt(
        None, "CPU threads for llama.cpp and hf on CPU (default: all cores; 1 on a busy machine)", hashed=False, min=1
    )
    tensor_parallel_size: int = opt(1, "vLLM tensor parallel size", min=1)
    context_length: int | None = opt(
        None,
        "tokens one request may hold, prompt plus answer; a longer conversation "
        "is shortened, oldest turns first (default: the model's own for hf/vllm, "
        "ctx_size/slots for gguf, none for openai: not shortened)",
        min=16,
    )
    tokenizer: str | None = opt(
        None, "openai with context_length: a local tokenizer directory (or smollm2) to count prompt tokens with"
    )
    trust_remote_code: bool = opt(False, "allow custom model code from the checkpoint (hf, vllm)")
    temperature: float | None = opt(None, "default sampling temperature for this role", min=0)
    top_p: float | None = opt(None, "default top_p for this role", above=0, max=1)
    max_tokens: int | None = opt(None, "default maximum new tokens for this role", min=1)
    seed: int | None = opt(None, "default sampling seed for this role", min=0, max=2**32 - 1)
    extra: dict = opt(dict, "backend-specific options passed through (e.g. vLLM engine args)", passthrough=True)

    def __post_init__(self):
        check_ranges(self)
        self.base_url = _base_urls(self.base_url)

    @property
    def model_spec(self) -> ModelSpec:
        return parse_spec(self.spec)

    def sampling(self, base: SamplingParams | None = None) -> SamplingParams:
        """``base`` (a stage's defaults) with this role's non-null sampling options on top."""
        params = base or SamplingParams()
        changes = {
            k: getattr(self, k) for k in ("temperature", "top_p", "max_tokens", "seed") if getattr(self, k) is not None
        }
        return params.replace(**changes)


@dataclass
class Usage:
    """Counts for the manifest, alike for every backend: ``requests`` is one per conversation the role
    was asked to answer however many attempts it took (the items a stage sent, whichever backend),
    ``completions`` and ``failures`` how they ended, ``errors`` the failures by reason; an endpoint
    role also counts ``retries`` and each failed attempt in ``errors``. A pool member's row counts
    every attempt it got."""

    requests: int = 0
    completions: int = 0
    failures: int = 0
    retries: int = 0
    shortened: int = 0  # requests whose conversation was shortened to fit the context
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # of prompt_tokens, those the engine reused from its prefix cache, where it reports them
    # (llama.cpp and OpenAI: usage.prompt_tokens_details.cached_tokens; vLLM: num_cached_tokens);
    # left out of the manifest when none were reported
    cached_tokens: int = 0
    errors: dict = field(default_factory=dict)  # reason -> count
    # the members of a pool (Pool.usage): several endpoints behind one role (openai), or an
    # in-process model's Ray replicas (--executor ray); empty, and left out, otherwise
    endpoints: list = field(default_factory=list)
    replicas: list = field(default_factory=list)

    def count_error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1

    def count(self, c: Completion) -> None:
        """One conversation's result (one attempt): ok or failed (by the reason before its ``:``), tokens."""
        self.requests += 1
        if c.ok:
            self.completions += 1
        else:
            self.failures += 1
            self.count_error((c.error or "failed").split(":", 1)[0])
        self.prompt_tokens += c.prompt_tokens
        self.completion_tokens += c.completion_tokens
        self.cached_tokens += c.cached_tokens

    def to_dict(self) -> dict:
        optional = ("endpoints", "replicas", "cached_tokens")
        return {k: v for k, v in dataclasses.asdict(self).items() if v or k not in optional}

    def summary(self) -> str:
        """One line for the end of a stage: ``"120 requests, 118 ok, 2 failed, ..."``."""
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        shortened = f", {self.shortened} shortened to fit the context" if self.shortened else ""
        cached = f" ({self.cached_tokens} cached)" if self.cached_tokens else ""
        members = "".join(
            f"; {m['url'] if 'url' in m else 'replica %s on %s' % (m['replica'], m['node'])}: {m['requests']} "
            f"requests, {m['ok']} ok, {m['failures']} failed, set aside {m['set_aside']}x"
            for m in self.endpoints + self.replicas
        )
        return (
            f"{self.requests} requests, {self.completions} ok, {self.failures} failed, "
            f"{self.retries} retries{shortened}, {self.prompt_tokens} prompt{cached} + {self.completion_tokens} "
            f"completion tokens; errors: {errors}{members}"
        )


class Backend(abc.ABC):
    """Base class. Subclasses implement :meth:`_agenerate` (and :meth:`context` with
    :meth:`count_tokens` when they know their context), and :meth:`start`/:meth:`close` when
    they hold resources (a server process, a loaded model)."""

    #: How many copies of the model answer the calls (Ray replicas): loops keep that many times
    #: more calls in flight.
    copies: int = 1

    def __init__(self, config: BackendConfig):
        self.config = config
        self.usage = Usage()
        self._start_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        """The model's name as records show it (``"gpt-4"`` for ``openai:gpt-4``)."""
        return self.config.model_spec.model_id

    @property
    def micro_batched(self) -> bool:
        """Whether callers send whole batches (hf, vllm: micro-batched here, or by each Ray replica)."""
        return self.config.model_spec.micro_batched

    @property
    def bans(self) -> bool:
        """Whether :attr:`SamplingParams.ban` is applied at sampling: an engine whose tokenizer is
        at hand (hf, vllm, gguf, here or on a Ray replica). An endpoint (openai) ignores it."""
        return self.config.model_spec.in_process

    def banned_ids(self, texts: list[str]) -> list[int]:
        """The token each of ``texts`` begins with (what :attr:`SamplingParams.ban` keeps from
        being sampled), once per text (started model)."""
        cache = self.__dict__.setdefault("_banned", {})
        for text in texts:
            if text not in cache:
                cache[text] = self.first_token(text)
        return sorted({cache[t] for t in texts})

    def first_token(self, text: str) -> int:
        """The id of the first token of ``text`` as the model's tokenizer splits it."""
        raise NotImplementedError(f"{self.config.spec}: cannot ban tokens at sampling")

    async def agenerate(
        self, conversations: list[Messages], params: SamplingParams | list[SamplingParams]
    ) -> list[Completion]:
        """One completion per conversation, in order. ``params`` may be one for all or one each.
        A conversation longer than the context is shortened first (see the module docstring)."""
        plist = per_item(params, len(conversations))
        if not conversations:
            return []
        notes: list[dict | None] = [None] * len(conversations)
        if self.shortens() and self.micro_batched and self.loaded():
            # an in-process tokenizer counts: in the loop, so concurrent callers still reach the
            # micro-batcher together
            conversations, plist, notes = self.fit_batch(conversations, plist)
        elif self.shortens():  # loads the model, or asks a server to count
            conversations, plist, notes = await asyncio.to_thread(self.fit_batch, conversations, plist)
        out = await self._agenerate(conversations, plist)
        return [dataclasses.replace(c, shortened=n) if n else c for c, n in zip(out, notes)]

    @abc.abstractmethod
    async def _agenerate(self, conversations: list[Messages], params: list[SamplingParams]) -> list[Completion]:
        """One completion per conversation (already fitted to the context), in order."""

    def generate(
        self, conversations: list[Messages], params: SamplingParams | list[SamplingParams]
    ) -> list[Completion]:
        """Sync entry point around :meth:`agenerate`."""
        return asyncio.run(self.agenerate(conversations, params))

    # ------------------------------------------------------------------ fitting the context
    def shortens(self) -> bool:
        """Whether conversations are fitted to a context (cheap: no model is loaded to answer). An
        in-process model always knows its context; an endpoint only when the role gives it."""
        return self.config.model_spec.in_process or self.config.context_length is not None

    def loaded(self) -> bool:
        """False while an in-process model is still to be loaded."""
        return True

    def context(self) -> int | None:
        """Tokens one request may hold, prompt plus answer (the backend is started); None: unknown."""
        return self.config.context_length

    def count_tokens(self, messages: Messages) -> int:
        """Prompt tokens of ``messages`` as the model's chat template renders them."""
        raise ParrotError(
            f"{self.config.spec}: cannot count tokens to fit context_length="
            f"{self.config.context_length}; give the role a tokenizer (tokenizer=DIR)"
        )

    def fit(
        self, messages: Messages, params: SamplingParams, context: int
    ) -> tuple[Messages, SamplingParams, dict | None]:
        """``messages`` shortened to leave room for the answer within ``context`` tokens, the
        params with ``max_tokens`` lowered if it asks for more than is left, and what changed."""
        room = min(params.max_tokens, context // 2)
        got = shorten(messages, lambda m: self.count_tokens(m) + room <= context)
        if got is None:  # not one word of the last message fits: sent as is, the model fails it
            return messages, params, None
        messages, how = got
        note = how.to_dict() if how else None
        if params.max_tokens > room:
            left = context - self.count_tokens(messages)
            if params.max_tokens > left:
                params = params.replace(max_tokens=left)
                note = {**(note or {}), "max_tokens": left}
        return messages, params, note

    def fit_batch(
        self, conversations: list[Messages], params: list[SamplingParams]
    ) -> tuple[list[Messages], list[SamplingParams], list[dict | None]]:
        """:meth:`fit` over a batch (blocking: run in a worker thread), counting in :attr:`usage`."""
        self.start()
        context = self.context()
        if context is None:
            return conversations, params, [None] * len(conversations)
        try:
            fitted = [self.fit(m, p, context) for m, p in zip(conversations, params)]
        except OSError as e:  # the server that counts is unreachable: the requests go as they are, and
            # fail or are retried there, as any call to a failing server does
            log.warning("%s: could not count tokens to fit the context (%s); sending unshortened", self.config.spec, e)
            return conversations, params, [None] * len(conversations)
        self.usage.shortened += sum(1 for f in fitted if f[2])
        return [f[0] for f in fitted], [f[1] for f in fitted], [f[2] for f in fitted]

    def start(self) -> "Backend":
        return self

    def close(self) -> None:
        if self.usage.requests:
            log.info("%s: %s", self.config.spec, self.usage.summary())

    def __enter__(self) -> "Backend":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def describe(self) -> dict:
        """The role for manifests and records: spec and options, redacted (the API key itself is
        never held here, only the *name* of its variable; headers or URLs in the options may hold
        credentials)."""
        from parrot.core.config import to_dict
        from parrot.core.redact import redact

        return {"spec": self.config.spec, "model": self.model_name, "options": redact(to_dict(self.config))}


def _base_urls(value: Any) -> str | list[str] | None:
    """``base_url`` as a string (one endpoint, as ever) or a list of strings (several): YAML gives a
    list, the command line ``base_url=[URL,URL]``."""
    if isinstance(value, str) and value.strip().startswith("["):
        from parrot.core.yamlfile import read_yaml

        try:
            value = read_yaml(value)
        except Exception:
            raise ParrotError(f"base_url: expected a URL or a list of URLs, found {value!r}") from None
    if value is None or (isinstance(value, str) and not isinstance(value, bool)):
        return None if value is None else str(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v.strip() for v in value):
        return [str(v).strip() for v in value]
    raise ParrotError(f"base_url: expected a URL or a non-empty list of URLs, found {value!r}")


def per_item(params: SamplingParams | list[SamplingParams], n: int) -> list[SamplingParams]:
    if isinstance(params, SamplingParams):
        return [params] * n
    if len(params) != n:
        raise ValueError(f"got {len(params)} sampling parameter sets for {n} conversations")
    return list(params)
