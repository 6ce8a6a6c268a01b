"""``openai:MODEL``: any OpenAI-compatible chat endpoint through the official ``openai`` SDK.

ChatGPT, vLLM ``serve``, llama.cpp's server, ``transformers serve``: anything that speaks
``POST /v1/chat/completions``. Requests go out concurrently, at most ``concurrency`` at once
(one semaphore per backend, shared by every coroutine that calls :meth:`agenerate`).

Retries are ours, not the SDK's (its ``max_retries`` is 0) so that every attempt is counted and
every failure has one reason: 429, 5xx, connection errors, timeouts and empty or malformed
replies are retried up to ``max_retries`` times with exponential backoff and jitter,
waiting exactly ``Retry-After`` when the server sends one. Other 4xx (a prompt too long) fail
the item at once. 401/403/404 (wrong key, wrong model, wrong URL) stop the run with a
:class:`~parrot.ParrotError`, since every other item would fail the same way.

The API key is read from the environment variable named by ``api_key_env`` when the backend
starts and lives only inside the SDK client: it is never logged, described or put in errors. It
is registered with :mod:`parrot.core.redact`, and every error detail is redacted, so a server whose
error body echoes the request's ``Authorization`` header cannot carry it into a failures file,
a log or an error message.

Several endpoints behind one role (``base_url: [URL, URL, ...]``) are a :mod:`~parrot.backends.pool`:
each attempt goes to the least busy endpoint, ``concurrency`` stays the total across them, a retry
goes to another healthy one at once (no backoff), and an endpoint failing ``endpoint_failures``
attempts in a row (connection errors, timeouts, 5xx; default 3) rests ``endpoint_cooldown`` seconds
(default 30), after which one more failure sets it aside again and one success clears it. The
usage gains ``endpoints``; one string is one endpoint, exactly as before (no ``endpoints``).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from parrot import ParrotError
from parrot.backends.base import Backend, BackendConfig, Completion, Messages, SamplingParams
from parrot.backends.pool import Member, Pool
from parrot.core.redact import redact_text, redact_url, register_secret
from parrot.core.tokens import count_tokens

log = logging.getLogger("parrot.backends.openai")

# Options in ``config.extra`` this backend reads itself; every other key goes into the
# request body (``extra_body``), e.g. ``extra: {top_k: 20}`` for vLLM or llama.cpp.
_OWN_EXTRA = ("backoff_base", "backoff_max", "max_tokens_field", "endpoint_failures", "endpoint_cooldown")

# Failures that say an endpoint is unwell (not the request, not the load): they count towards
# setting it aside.
_UNHEALTHY = ("connection", "timeout", "server_error")

# Cap on a server's Retry-After, so one bad header cannot park a worker for hours.
MAX_RETRY_AFTER = 600.0


class _Failed(Exception):
    """An attempt failed: ``reason`` is the short key counted in usage, ``detail`` is redacted."""

    def __init__(self, reason: str, detail: str, retry_after: float | None = None):
        detail = redact_text(detail)
        super().__init__(detail)
        self.reason, self.detail, self.retry_after = reason, detail, retry_after


class _Retry(_Failed):
    """An attempt failed in a way worth retrying."""


class _Fail(_Failed):
    """An attempt failed in a way retrying cannot fix (a 400 for this prompt)."""


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - time.time()
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def is_loopback(url: str | None) -> bool:
    """Whether ``url`` points at this machine (127.x, ::1, localhost)."""
    host = (urlsplit(url).hostname or "") if url else ""
    return host == "localhost" or host == "::1" or host.startswith("127.")


def safe_url(url: str | None) -> str | None:
    """``url`` without any ``user:password@`` part or secret query value, for logs and manifests."""
    return redact_url(url) if url else url


@dataclass(eq=False)
class Endpoint(Member):
    """One URL behind a role: its client, and its unhealthy failures in a row."""

    url: str | None = None
    streak: int = 0
    client: Any = None

    def label(self) -> dict:
        return {"url": safe_url(self.url)}


class OpenAIBackend(Backend):
    """Concurrent chat completions against an OpenAI-compatible endpoint."""

    def __init__(self, config: BackendConfig, *, api_key: str | None = None):
        super().__init__(config)
        self._explicit_key = api_key  # for servers we start ourselves (gguf); never described
        self.concurrency = config.concurrency  # requests in flight (gguf: its server's slots)
        self.backoff_base = float(config.extra.get("backoff_base", 0.5))
        self.backoff_max = float(config.extra.get("backoff_max", 30.0))
        self.max_tokens_field = str(config.extra.get("max_tokens_field", "max_tokens"))
        self.extra_body = {k: v for k, v in config.extra.items() if k not in _OWN_EXTRA}
        self._sleep = asyncio.sleep  # tests replace it to see the delays without waiting
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the endpoints' clients belong to
        self._semaphore: asyncio.Semaphore | None = None
        self._api_key: str | None = None
        self._tokenizer = None  # loaded on first count (context_length + tokenizer)
        self.endpoint_failures = max(1, int(config.extra.get("endpoint_failures", 3)))
        self.endpoint_cooldown = float(config.extra.get("endpoint_cooldown", 30.0))
        self._clock = time.monotonic  # tests may replace it
        urls = config.base_url if isinstance(config.base_url, list) else [self.base_url]
        self.pool = Pool([Endpoint(url=u) for u in urls], clock=lambda: self._clock())
        self.endpoints = self.pool.members
        self._several = isinstance(config.base_url, list)

    # ------------------------------------------------------------------ set-up
    @property
    def base_url(self) -> str | None:
        return self.config.base_url or os.environ.get("OPENAI_BASE_URL") or None

    def _resolve_key(self) -> str:
        if self._explicit_key is not None:
            return self._explicit_key
        key = os.environ.get(self.config.api_key_env)
        if key:
            register_secret(key)  # scrubbed from everything Parrot writes, wherever it shows up
            return key
        if self.base_url is None:
            raise ParrotError(
                f"{self.config.spec}: no API key: set the environment variable "
                f"{self.config.api_key_env} (or api_key_env=NAME to read another one), "
                "or point base_url at a server that needs none"
            )
        return "EMPTY"  # local servers (vLLM, llama.cpp) accept any key

    def start(self) -> "OpenAIBackend":
        if self._api_key is None:
            self._api_key = self._resolve_key()
        if self.concurrency < 1:
            raise ParrotError(f"{self.config.spec}: concurrency must be at least 1, got {self.concurrency}")
        return self

    def _clients_for_loop(self) -> asyncio.Semaphore:
        """The running event loop's semaphore, each endpoint's SDK client made for that loop.

        httpx connection pools belong to the loop that opened them, and :meth:`generate`
        runs a fresh loop per call, so a new loop gets new clients, one per endpoint.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self.start()
            if not self._several:  # read now: the config or $OPENAI_BASE_URL may have changed since
                self.endpoints[0].url = self.base_url
            for ep in self.endpoints:
                ep.client = self._new_client(ep.url)
            self._semaphore = asyncio.Semaphore(self.concurrency)
            self._loop = loop
        return self._semaphore

    def _new_client(self, url: str | None):
        from openai import AsyncOpenAI, DefaultAsyncHttpxClient

        # A server on this machine is reached directly, whatever HTTP(S)_PROXY says (cluster
        # nodes often set a proxy and no NO_PROXY; the proxy cannot reach our 127.0.0.1).
        http_client = DefaultAsyncHttpxClient(trust_env=False) if is_loopback(url) else None
        return AsyncOpenAI(
            api_key=self._api_key,
            base_url=url,
            max_retries=0,
            timeout=self.config.timeout,
            http_client=http_client,
        )

    # ------------------------------------------------------------------ routing
    def _failed(self, ep: Endpoint, reason: str) -> None:
        ep.count(failed=1)
        if reason not in _UNHEALTHY or len(self.endpoints) == 1:
            return
        ep.streak += 1
        if ep.streak >= self.endpoint_failures and not self.pool.resting(ep):
            self.pool.set_aside(ep, self.endpoint_cooldown)
            ep.streak = self.endpoint_failures - 1  # back from its rest, one more failure sets it aside
            log.warning(
                "%s: endpoint %s set aside for %gs after %d failures in a row (%s)",
                self.config.spec,
                safe_url(ep.url),
                self.endpoint_cooldown,
                self.endpoint_failures,
                reason,
            )

    def _count_endpoints(self) -> None:
        if self._several:
            self.usage.endpoints = self.pool.usage()

    def generate(
        self, conversations: list[Messages], params: SamplingParams | list[SamplingParams]
    ) -> list[Completion]:
        async def run() -> list[Completion]:
            try:
                return await self.agenerate(conversations, params)
            finally:  # the client's connections belong to this loop, which ends here
                await self._close_client()

        return asyncio.run(run())

    async def _close_client(self) -> None:
        self._loop = None
        for ep in self.endpoints:
            client, ep.client = ep.client, None
            if client is not None:
                await client.close()

    def close(self) -> None:
        super().close()
        loop = self._loop
        self._loop = None
        for ep in self.endpoints:
            client, ep.client = ep.client, None
            if client is not None and loop is not None and not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(client.close())

    def describe(self) -> dict:
        several = [safe_url(ep.url) for ep in self.endpoints] if self._several else None
        return {**super().describe(), "base_url": several or safe_url(self.base_url)}

    # ------------------------------------------------------------------ requests
    def request_body(self, messages: Messages, params: SamplingParams) -> dict:
        """The keyword arguments of one ``chat.completions.create`` call: every sampling
        parameter explicit."""
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": messages,
            "temperature": params.temperature,
            "top_p": params.top_p,
            self.max_tokens_field: params.max_tokens,
            "n": 1,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        if self.extra_body:
            body["extra_body"] = dict(self.extra_body)
        return body

    async def _agenerate(self, conversations: list[Messages], params: list[SamplingParams]) -> list[Completion]:
        try:
            return list(await asyncio.gather(*(self._complete(m, p) for m, p in zip(conversations, params))))
        finally:
            self._count_endpoints()  # per endpoint, for the manifest: once a call, not once an attempt

    def count_tokens(self, messages: Messages) -> int:
        """With ``context_length`` set: the prompt tokens as the role's local ``tokenizer`` renders them."""
        if self.config.tokenizer is None:
            return super().count_tokens(messages)
        if self._tokenizer is None:
            from parrot.core.tokens import load_tokenizer

            self._tokenizer = load_tokenizer(self.config.tokenizer)
        return count_tokens(self._tokenizer, messages, generation_prompt=True)

    async def _complete(self, messages: Messages, params: SamplingParams) -> Completion:
        semaphore = self._clients_for_loop()
        self.usage.requests += 1  # one conversation, however many attempts it takes
        body = self.request_body(messages, params)
        attempts = self.config.max_retries + 1
        last: _Retry | None = None
        last_ep: Endpoint | None = None
        for attempt in range(attempts):
            if attempt:
                self.usage.retries += 1
                # Another endpoint takes the retry at once; the same one after the backoff.
                elsewhere = last and last.reason in _UNHEALTHY and any(ep is not last_ep for ep in self.pool.ready())
                delay = last.retry_after if last and last.retry_after is not None else self._backoff(attempt)
                log.debug(
                    "%s: retry %d/%d in %.2fs after %s",
                    self.config.spec,
                    attempt,
                    self.config.max_retries,
                    0.0 if elsewhere else delay,
                    last.reason if last else "?",
                )
                if not elsewhere:
                    await self._sleep(delay)
                if last and last.reason == "empty_reply" and body.get("seed") is not None:
                    # The same seed would draw the same empty reply again on servers that honour it
                    body = {**body, "seed": (params.seed + attempt) & 0x7FFFFFFF}
            try:
                async with semaphore:
                    # with every endpoint set aside, the one back first: a run never waits on the router
                    ep = last_ep = self.pool.pick(avoid=last_ep) or self.pool.back_first()
                    with self.pool.sending(ep):
                        done = self._accept(await self._attempt(ep, body))
                    ep.count(ok=1)
                    ep.streak = 0
                    return done
            except _Retry as e:
                self.usage.count_error(e.reason)
                self._failed(ep, e.reason)
                last = e
            except _Fail as e:
                self.usage.count_error(e.reason)
                self.usage.failures += 1
                self._failed(ep, e.reason)
                return Completion(text=None, error=f"{e.reason}: {e.detail}")
        self.usage.failures += 1
        assert last is not None
        return Completion(text=None, error=f"{last.reason} after {attempts} attempts: {last.detail}")

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: uniform in [c/2, c], c = base * 2^(attempt-1) capped."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    async def _attempt(self, ep: Endpoint, body: dict):
        import openai

        client = ep.client
        try:
            # The SDK's timeout bounds each read; wait_for bounds the whole request.
            return await asyncio.wait_for(client.chat.completions.create(**body), timeout=self.config.timeout)
        except (asyncio.TimeoutError, openai.APITimeoutError):
            raise _Retry("timeout", f"no reply within {self.config.timeout:g}s") from None
        except openai.APIConnectionError as e:
            raise _Retry("connection", f"{type(e).__name__}: {e}") from None
        except openai.APIResponseValidationError as e:
            raise _Retry("malformed", f"reply does not match the chat schema: {e}") from None
        except openai.APIStatusError as e:
            status = e.status_code
            detail = f"HTTP {status}: {_short(e.message)}"
            if status == 429:
                raise _Retry("rate_limited", detail, parse_retry_after(e.response.headers)) from None
            if status >= 500 or status == 408:
                raise _Retry("server_error", detail, parse_retry_after(e.response.headers)) from None
            if status in (401, 403, 404):
                raise ParrotError(
                    f"{self.config.spec} at {safe_url(ep.url) or 'api.openai.com'}: "
                    f"{detail} (check the model name, base_url and "
                    f"${self.config.api_key_env})"
                ) from None
            raise _Fail("bad_request", detail) from None
        except ValueError as e:  # a body that is not JSON
            raise _Retry("malformed", f"reply is not JSON: {_short(str(e))}") from None

    def _accept(self, resp) -> Completion:
        """A Completion from a parsed reply, or :class:`_Retry` for an empty or malformed one."""
        choices = getattr(resp, "choices", None)
        if not isinstance(choices, list):
            raise _Retry("malformed", f"reply has no choices list: {_short(repr(resp))}")
        if not choices:
            raise _Retry("empty_reply", "reply has no choices")
        choice = choices[0]
        message = getattr(choice, "message", None)
        text = getattr(message, "content", None)
        if not isinstance(text, str) or not text.strip():
            raise _Retry(
                "empty_reply", f"reply content is {text!r} (finish_reason={getattr(choice, 'finish_reason', None)!r})"
            )
        usage = getattr(resp, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        # OpenAI, llama.cpp's server and vLLM's (with prefix caching) say how much of the prompt
        # they reused from their cache
        cached = int(getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", 0) or 0)
        self.usage.completions += 1
        self.usage.prompt_tokens += prompt_tokens
        self.usage.completion_tokens += completion_tokens
        self.usage.cached_tokens += cached
        return Completion(
            text=text,
            finish_reason=getattr(choice, "finish_reason", None),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_tokens=cached,
        )


def _short(text: str, limit: int = 300) -> str:
    """``text`` redacted (before it is cut: no piece of a key survives), on one line, cut."""
    text = " ".join(redact_text(str(text)).split())
    return text if len(text) <= limit else text[:limit] + "..."
