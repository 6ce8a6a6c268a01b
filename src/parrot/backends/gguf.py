"""``gguf:PATH`` and ``smollm2``: a GGUF model served in-process by llama.cpp.

The prebuilt ``xllamacpp`` wheel runs llama.cpp's own HTTP server inside this process (C++
threads, no subprocess): ``xllamacpp.Server(params)`` loads the model and listens; dropping the
object stops it. We bind it to a free port on 127.0.0.1 with ``slots`` parallel decoding slots
and continuous batching; :class:`GGUFBackend` is an :class:`~parrot.backends.openai_api.OpenAIBackend`
whose one endpoint is that server, with ``slots`` requests in flight, so retries, usage counts and
failure reporting are the same as for any OpenAI-compatible endpoint.

``threads`` unset means all cores, except on an already busy machine (3/4 of its cores at work),
where one thread is much faster (see :func:`busy_machine_threads`).

The server's own sampling defaults (top_k 40, min_p 0.05) are neutralised at start-up, so a
request's explicit ``temperature``/``top_p`` mean what they mean for OpenAI and vLLM.

Not run by the test suite's doctests (it starts llama.cpp with the embedded model):

>>> with load_backend("smollm2", slots=4) as model:            # doctest: +SKIP
...     print(model.base_url)                                   # http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import atexit
import gc
import json
import logging
import time
import urllib.request
from pathlib import Path

from parrot import ParrotError
from parrot.backends.base import BANNED_BIAS, Backend, BackendConfig, Messages, SamplingParams
from parrot.backends.cpu import busy_machine_threads
from parrot.backends.openai_api import OpenAIBackend
from parrot.backends.spec import parse_spec

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
log = logging.getLogger("parrot.backends.gguf")


def gguf_path(spec: str) -> Path:
    """The model file of ``smollm2`` or ``gguf:PATH`` (checked to exist); a PATH that is a checkpoint
    directory means its ``model.gguf``, the file training writes with ``gguf: true``."""
    model = parse_spec(spec)
    if model.embedded:
        from parrot.core.assets import smollm2_gguf_path

        return smollm2_gguf_path()
    path = model.path
    if path.is_dir():
        if not (path / "model.gguf").is_file():
            raise ParrotError(
                f"{path}: a checkpoint directory without model.gguf (spec {spec!r}): train it with gguf: true, "
                "or name a GGUF file"
            )
        path = path / "model.gguf"
    if not path.is_file():
        raise ParrotError(f"{path}: GGUF model file not found (spec {spec!r})")
    return path


class GGUFBackend(OpenAIBackend):
    """An in-process llama.cpp server, and the openai backend with it as its one endpoint (so one
    set of retries and counts), ``slots`` requests in flight."""

    def __init__(self, config: BackendConfig):
        self.path = gguf_path(config.spec)
        self._server, self._url = None, None
        super().__init__(config, api_key="local")
        self.concurrency = config.slots
        self.threads: int | None = None  # None: llama.cpp's default (all cores)

    @property
    def base_url(self) -> str | None:
        return self._url

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "GGUFBackend":
        if self._server is not None:
            return super().start()
        try:
            import xllamacpp
        except ImportError:
            raise ParrotError(f"{self.config.spec} needs the xllamacpp wheel: pip install xllamacpp") from None
        cfg = self.config
        params = xllamacpp.CommonParams()
        params.model.path = str(self.path)
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # the OS picks a free port; listening_address tells us which
        params.n_parallel = cfg.slots
        params.n_ctx = cfg.ctx_size
        params.cont_batching = True
        params.warmup = False
        # llama.cpp's stderr logs drown ours; errors still get through.
        params.verbosity = 3 if logging.getLogger("parrot").isEnabledFor(logging.DEBUG) else 1
        threads = self.threads = cfg.threads or busy_machine_threads("llama.cpp")
        if threads:
            params.cpuparams.n_threads = threads
            params.cpuparams_batch.n_threads = threads
        # Neutral server-side samplers: only what each request sends applies.
        params.sampling.top_k = 0
        params.sampling.min_p = 0.0
        params.sampling.penalty_repeat = 1.0
        t0 = time.perf_counter()
        try:
            server = xllamacpp.Server(params)
        except RuntimeError as e:
            raise ParrotError(
                f"{self.path}: llama.cpp could not load this GGUF (slots={cfg.slots}, ctx_size={cfg.ctx_size}): {e}"
            ) from None
        self._server = server
        atexit.register(self.close)
        try:
            self._url = server.listening_address.rstrip("/") + "/v1"
            self._wait_healthy()
            super().start()
        except BaseException:
            self.close()
            raise
        log.info(
            "llama.cpp serving %s at %s (%d slots, ctx %d) in %.1fs",
            self.path.name,
            self.base_url,
            cfg.slots,
            cfg.ctx_size,
            time.perf_counter() - t0,
        )
        return self

    def _wait_healthy(self, timeout: float = 60.0) -> None:
        """Poll ``/health`` until the model answers (it is usually ready at once)."""
        url = self.base_url.removesuffix("/v1") + "/health"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with _DIRECT.open(url, timeout=5) as resp:  # never through an HTTP(S)_PROXY
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ParrotError(f"{self.path}: llama.cpp server at {url} not healthy after {timeout:g}s")
            time.sleep(0.1)

    def close(self) -> None:
        super().close()  # logs the usage summary, closes the client
        server, self._server = self._server, None
        if server is not None:
            atexit.unregister(self.close)
            del server  # the C++ destructor stops the HTTP server and frees the model
            gc.collect()
            log.debug("llama.cpp server for %s stopped", self.path.name)

    # ------------------------------------------------------------------ fitting a slot's context
    def context(self) -> int:
        """A request's share of the server: llama.cpp splits ``ctx_size`` among its slots."""
        return self.config.context_length or self.config.ctx_size // max(1, self.config.slots)

    def count_tokens(self, messages: Messages) -> int:
        """The server's own count: its chat template (``/apply-template``), then ``/tokenize``."""
        prompt = self._post("/apply-template", {"messages": messages})["prompt"]
        body = {"content": prompt, "add_special": False, "parse_special": True}
        return len(self._post("/tokenize", body)["tokens"])

    def first_token(self, text: str) -> int:
        """The server's own tokenizer (``/tokenize``), the text taken literally."""
        self.start()
        return self._post("/tokenize", {"content": text, "add_special": False, "parse_special": False})["tokens"][0]

    def request_body(self, messages: Messages, params: SamplingParams) -> dict:
        """The openai backend's request, with :attr:`SamplingParams.ban` as llama.cpp's logit bias."""
        body = super().request_body(messages, params)
        if params.ban:
            body["logit_bias"] = {str(t): BANNED_BIAS for t in self.banned_ids(params.ban)}
        return body

    def _post(self, path: str, body: dict) -> dict:
        url = self.base_url.removesuffix("/v1") + path
        req = urllib.request.Request(
            url, data=json.dumps(body).encode("utf-8"), headers={"Content-Type": "application/json"}
        )
        with _DIRECT.open(req, timeout=self.config.timeout) as resp:
            return json.loads(resp.read())

    def describe(self) -> dict:
        out = Backend.describe(self)  # not OpenAIBackend's: its endpoint is its own, a port picked at each start
        out["gguf"] = str(self.path)
        out["server"] = {
            "engine": "llama.cpp (xllamacpp)",
            "slots": self.config.slots,
            "ctx_size": self.config.ctx_size,
            "threads": self.threads,
            "top_k": 0,
            "min_p": 0.0,
        }
        return out
