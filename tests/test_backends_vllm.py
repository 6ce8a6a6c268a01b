"""The vllm backend. The real engine needs vLLM and a CUDA GPU: skipped without them."""

import asyncio
import importlib.util

import pytest

from parrot import ParrotError
from parrot.backends import SamplingParams, load_backend
from parrot.backends.vllm_engine import engine_kwargs, sampling_kwargs

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_engine_args_come_from_the_role_and_extra_passes_through(tiny_model_dir):
    backend = load_backend(
        f"vllm:{tiny_model_dir}",
        tensor_parallel_size=2,
        dtype="bfloat16",
        seed=7,
        extra={"gpu_memory_utilization": 0.8},
    )
    kwargs = engine_kwargs(backend.config, str(backend.path))
    assert kwargs == {
        "model": str(tiny_model_dir),
        "tensor_parallel_size": 2,
        "dtype": "bfloat16",
        "trust_remote_code": False,
        "generation_config": "vllm",
        "seed": 7,
        "gpu_memory_utilization": 0.8,
    }


def test_sampling_params_are_all_explicit():
    assert sampling_kwargs(SamplingParams(temperature=0.2, top_p=0.9, max_tokens=5, seed=1, stop=["\n"])) == {
        "n": 1,
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 5,
        "stop": ["\n"],
        "seed": 1,
    }
    # a banned text's first token: a logit bias no sampling overcomes (vLLM's SamplingParams.logit_bias)
    assert sampling_kwargs(SamplingParams(ban=["<|end_of_session|>"]), [44])["logit_bias"] == {44: -100.0}


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ParrotError, match="config.json"):
        load_backend(f"vllm:{tmp_path}")


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed")
def test_without_vllm_starting_says_how_to_install(tiny_model_dir):
    with pytest.raises(ParrotError, match="parrot-chat\\[vllm\\]"):
        load_backend(f"vllm:{tiny_model_dir}").start()


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_VLLM and _cuda()), reason="needs vLLM and a CUDA GPU")
def test_vllm_chat_greedy_matches_across_batching(tiny_model_dir):
    params = SamplingParams(temperature=0.0, max_tokens=8, seed=0)
    prompts = [[{"role": "user", "content": f"Question {i}"}] for i in range(6)]
    with load_backend(f"vllm:{tiny_model_dir}", extra={"gpu_memory_utilization": 0.3, "max_model_len": 1024}) as model:
        batched = model.generate(prompts, params)

        async def one_each():
            return await asyncio.gather(*(model.agenerate([p], params) for p in prompts))

        singles = [c for [c] in asyncio.run(one_each())]
        assert model.batcher.batches_run == 2  # one generate() call, one coalesced gather
    assert [c.text for c in batched] == [c.text for c in singles]
    assert all(c.completion_tokens <= 8 and c.prompt_tokens > 0 for c in batched)
