"""The gguf/smollm2 backend: a real llama.cpp server (xllamacpp) serving the embedded SmolLM2."""

import asyncio
import json
import urllib.request

import pytest

from parrot import ParrotError
from parrot.backends import SamplingParams, load_backend

GREEDY = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=12, seed=0)


def user(text):
    return [{"role": "user", "content": text}]


def test_smollm2_answers_a_batch_with_text_and_usage(llamacpp_server):
    out = llamacpp_server.generate([user("What is the capital of France?"), user("Say hello.")], GREEDY)
    assert all(c.ok and c.text.strip() for c in out)
    assert all(c.finish_reason in ("stop", "length") for c in out)
    assert all(0 < c.completion_tokens <= 12 and c.prompt_tokens > 5 for c in out)
    assert llamacpp_server.usage.completion_tokens >= sum(c.completion_tokens for c in out)


def test_greedy_is_deterministic_across_concurrent_slots(llamacpp_server):
    prompt = user("Name three colours.")
    [alone] = llamacpp_server.generate([prompt], GREEDY)
    crowd = llamacpp_server.generate([prompt] * 4 + [user("Count to five.")] * 2, GREEDY)
    assert [c.text for c in crowd[:4]] == [alone.text] * 4


def test_openai_backend_drives_the_server_directly(llamacpp_server):
    """The fixture's base_url is an ordinary OpenAI-compatible endpoint for other tests."""
    with load_backend("openai:smollm2", base_url=llamacpp_server.base_url, concurrency=4) as client:
        [c] = client.generate([user("Hi!")], GREEDY.replace(max_tokens=5))
    assert c.ok and c.completion_tokens <= 5


def test_max_tokens_and_stop_are_applied_by_the_server(llamacpp_server):
    [short] = llamacpp_server.generate([user("Write a long story about a dog.")], GREEDY.replace(max_tokens=3))
    assert short.finish_reason == "length" and short.completion_tokens == 3


def test_many_coroutines_share_the_slots(llamacpp_server):
    async def fire():
        return await asyncio.gather(
            *(llamacpp_server.agenerate([user(f"Number {i}?")], GREEDY.replace(max_tokens=4)) for i in range(8))
        )

    results = asyncio.run(fire())
    assert all(c.ok for [c] in results)


def test_server_stops_on_close_and_on_error_inside_the_block():
    backend = load_backend("smollm2", slots=1, ctx_size=1024)
    with pytest.raises(RuntimeError, match="boom"):
        with backend:
            health = backend.base_url.removesuffix("/v1") + "/health"
            assert json.loads(urllib.request.urlopen(health, timeout=5).read())["status"] == "ok"
            raise RuntimeError("boom")
    with pytest.raises(OSError):
        urllib.request.urlopen(health, timeout=2)


def test_missing_gguf_file_is_a_clear_error(tmp_path):
    with pytest.raises(ParrotError, match="not found"):
        load_backend(f"gguf:{tmp_path / 'nope.gguf'}")
    with pytest.raises(ParrotError, match="without model.gguf.*train it with gguf: true"):
        load_backend(f"gguf:{tmp_path}")  # a checkpoint directory names its model.gguf


def test_a_checkpoint_directory_serves_its_model_gguf(tmp_path):
    from parrot.backends.gguf import gguf_path
    from parrot.core.assets import smollm2_gguf_path

    (tmp_path / "model.gguf").symlink_to(smollm2_gguf_path())
    assert gguf_path(f"gguf:{tmp_path}") == tmp_path / "model.gguf"


def test_describe_names_the_file_and_slots(llamacpp_server):
    d = llamacpp_server.describe()
    assert d["spec"] == "smollm2" and d["gguf"].endswith(".gguf") and d["server"]["slots"] == 4


def test_a_conversation_longer_than_a_slot_loses_its_oldest_turns():
    """llama.cpp gives each slot ctx_size / slots tokens (here 512): the same conversation that the
    server refuses as it is gets answered once its oldest turns are left out."""
    turns = [
        {"role": r, "content": f"{r} turn {k}: " + "the mill by the river " * 25}
        for k in range(6)
        for r in ("user", "assistant")
    ][:-1]
    with load_backend("smollm2", slots=2, ctx_size=1024) as backend:
        assert backend.count_tokens(turns) > 512
        with load_backend("openai:smollm2", base_url=backend.base_url, max_retries=0) as raw:
            [refused] = raw.generate([turns], GREEDY)
        [c] = backend.generate([turns], GREEDY)
        kept = backend.count_tokens(turns[2 * c.shortened["turns_dropped"] :])
    assert refused.text is None and "context" in refused.error
    assert c.ok and c.shortened == {"turns_dropped": c.shortened["turns_dropped"], "chars_cut": 0}
    assert kept + GREEDY.max_tokens <= 512 and c.prompt_tokens == kept
    assert backend.usage.shortened == 1


def test_a_banned_text_never_begins_to_be_sampled(llamacpp_server):
    """``SamplingParams.ban`` becomes llama.cpp's logit bias on the text's first token: greedy
    SmolLM2 opens its answer with an HTML tag, and with "<" banned it cannot."""
    prompt = user("Write only the HTML code for a paragraph that says hello. No explanation.")
    [free] = llamacpp_server.generate([prompt], GREEDY.replace(max_tokens=8))
    [banned] = llamacpp_server.generate([prompt], GREEDY.replace(max_tokens=8, ban=["<p>"]))
    assert free.text.startswith("<") and banned.ok and not banned.text.startswith("<")
    assert llamacpp_server.request_body(prompt, GREEDY.replace(ban=["<|x"]))["logit_bias"] == {
        str(llamacpp_server.banned_ids(["<"])[0]): -100.0
    }
