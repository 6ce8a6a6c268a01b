"""Model backends: one interface (:class:`Backend`) for every model a stage talks to, whatever its
spec (:mod:`parrot.backends.spec`); :data:`_BACKENDS` says which module serves each kind.

Not run by the test suite's doctests (it starts llama.cpp with the embedded model):

>>> with load_backend("smollm2") as model:                       # doctest: +SKIP
...     [c] = model.generate([[{"role": "user", "content": "Hi"}]], SamplingParams(max_tokens=20))
"""

from __future__ import annotations

import importlib

from parrot.backends.base import Backend, BackendConfig, Completion, SamplingParams, Usage
from parrot.core.config import build_config

__all__ = ["Backend", "BackendConfig", "Completion", "SamplingParams", "Usage", "load_backend"]

# A spec's kind -> the module and class of its backend, imported only when a role uses it (vLLM is
# an optional extra; smollm2 alone is the embedded GGUF, served by llama.cpp).
_BACKENDS = {
    "openai": ("openai_api", "OpenAIBackend"),
    "hf": ("hf", "HFBackend"),
    "gguf": ("gguf", "GGUFBackend"),
    "vllm": ("vllm_engine", "VLLMBackend"),
}


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
    module, name = _BACKENDS[config.model_spec.kind]
    return getattr(importlib.import_module(f"parrot.backends.{module}"), name)(config)
