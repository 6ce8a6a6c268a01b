"""``vllm:PATH``: vLLM's offline engine (``LLM.chat``), for GPU nodes.

vLLM is an optional extra (``pip install 'parrot-chat[vllm]'``) imported only when this backend
starts. Concurrent :meth:`VLLMBackend.agenerate` calls are coalesced by the shared micro-batcher
into one ``LLM.chat`` call over everything waiting (vLLM schedules and batches internally, so
there is no cap), each conversation with its own ``SamplingParams``.

Engine options: ``tensor_parallel_size``, ``dtype``, ``trust_remote_code`` and ``seed`` come
from the role's config; anything in ``extra`` is passed to ``vllm.LLM(...)`` as an engine
argument (``extra: {gpu_memory_utilization: 0.85, max_model_len: 8192}``). By default the
engine ignores the checkpoint's ``generation_config.json`` sampling defaults
(``generation_config="vllm"``), so only the parameters we send apply.
"""

from __future__ import annotations

import logging

from parrot import ParrotError
from parrot.backends.base import BANNED_BIAS, BackendConfig, Completion, Messages, SamplingParams
from parrot.backends.batching import CheckpointBackend, completion, finish_text
from parrot.core.tokens import count_tokens

log = logging.getLogger("parrot.backends.vllm")


def engine_kwargs(config: BackendConfig, model_path: str) -> dict:
    """Arguments of ``vllm.LLM(...)`` for a role's config."""
    kwargs = {
        "model": model_path,
        "tensor_parallel_size": config.tensor_parallel_size,
        "dtype": config.dtype,
        "trust_remote_code": config.trust_remote_code,
        "generation_config": "vllm",
    }
    if config.seed is not None:
        kwargs["seed"] = config.seed
    kwargs.update(config.extra)
    return kwargs


def sampling_kwargs(params: SamplingParams, banned: list[int] = ()) -> dict:
    """Arguments of ``vllm.SamplingParams(...)``: every parameter explicit; ``banned`` token ids
    (:attr:`SamplingParams.ban`'s) get a logit bias that no sampling overcomes."""
    kwargs = {
        "n": 1,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        "stop": list(params.stop),
    }
    if params.seed is not None:
        kwargs["seed"] = params.seed
    if banned:
        kwargs["logit_bias"] = {int(t): BANNED_BIAS for t in banned}
    return kwargs


class VLLMBackend(CheckpointBackend):
    """vLLM's offline engine behind the micro-batcher."""

    def __init__(self, config: BackendConfig):
        super().__init__(config, max_batch=None, same_params=False)
        self.llm = None

    def _load(self) -> None:
        try:
            import vllm
        except ImportError:
            raise ParrotError(f"{self.config.spec} needs vLLM (a GPU node): pip install 'parrot-chat[vllm]'") from None
        kwargs = engine_kwargs(self.config, str(self.path))
        log.info("starting vLLM for %s (tensor_parallel_size=%d)", self.path, self.config.tensor_parallel_size)
        try:
            self.llm = vllm.LLM(**kwargs)
        except TypeError as e:  # an engine argument this vLLM version does not know
            raise ParrotError(
                f"{self.config.spec}: vLLM rejected an engine argument ({e}); "
                f"check the role's extra options: {sorted(self.config.extra)}"
            ) from None

    def close(self) -> None:
        super().close()
        self.llm = None

    def _run_batch(self, conversations: list[Messages], params: list[SamplingParams]) -> list[Completion]:
        import vllm

        self.start()
        outputs = self.llm.chat(
            conversations,
            [vllm.SamplingParams(**sampling_kwargs(p, self.banned_ids(p.ban))) for p in params],
            use_tqdm=False,
        )
        results = []
        for out, p in zip(outputs, params):
            best = out.outputs[0]
            text, finish = finish_text(best.text, best.finish_reason, p.stop)
            cached = getattr(out, "num_cached_tokens", None) or 0  # prefix caching's reuse (vLLM V1)
            results.append(completion(text, finish, len(out.prompt_token_ids or []), len(best.token_ids), cached))
        return results

    def loaded(self) -> bool:
        return self.llm is not None

    def first_token(self, text: str) -> int:
        self.start()
        return self.llm.get_tokenizer().encode(text, add_special_tokens=False)[0]

    def context(self) -> int | None:
        return self.config.context_length or self.llm.llm_engine.model_config.max_model_len

    def count_tokens(self, messages: Messages) -> int:
        return count_tokens(self.llm.get_tokenizer(), messages, generation_prompt=True)

    def describe(self) -> dict:
        out = super().describe()
        out["engine"] = {k: v for k, v in engine_kwargs(self.config, str(self.path)).items() if k != "model"}
        return out
