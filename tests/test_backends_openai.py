"""The openai backend against a real fault-injecting HTTP server on 127.0.0.1."""

import asyncio
import json
import logging

import pytest
from fixtures.servers import openai_backend

from parrot import ParrotError
from parrot.backends import SamplingParams, load_backend
from parrot.core.manifest import record_manifest

PARAMS = SamplingParams(temperature=0.0, top_p=0.9, max_tokens=16, seed=3, stop=["\n\n"])


def user(text):
    return [{"role": "user", "content": text}]


def make_backend(server, **options):
    """An openai backend at the fault server that records its backoff delays instead of waiting."""
    return openai_backend(server.base_url, **options)


def test_happy_path_returns_text_usage_and_sends_every_sampling_param(fault_server):
    backend = make_backend(fault_server)
    with backend:
        [a, b] = backend.generate([user("one two"), user("three")], PARAMS)
    assert (a.text, b.text) == ("echo: one two", "echo: three")
    assert a.finish_reason == "stop" and a.completion_tokens == 3 and a.prompt_tokens == 2
    [sent] = [r for r in fault_server.requests if r["messages"] == user("one two")]
    assert sent["model"] == "test-model"
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["seed"], sent["stop"]) == (
        0.0,
        0.9,
        16,
        3,
        ["\n\n"],
    )
    assert backend.usage.requests == 2 and backend.usage.completions == 2
    assert backend.usage.completion_tokens == 5 and backend.usage.failures == 0


def test_per_item_params_and_order_are_kept(fault_server):
    backend = make_backend(fault_server, concurrency=3)
    convs = [user(f"q{i}") for i in range(7)]
    params = [PARAMS.replace(max_tokens=10 + i) for i in range(7)]
    out = backend.generate(convs, params)
    assert [c.text for c in out] == [f"echo: q{i}" for i in range(7)]
    by_prompt = {r["messages"][0]["content"]: r["max_tokens"] for r in fault_server.requests}
    assert by_prompt == {f"q{i}": 10 + i for i in range(7)}


def test_cached_prompt_tokens_the_endpoint_reports_are_counted(fault_server):
    backend = make_backend(fault_server)
    history = [*user("one two three"), {"role": "assistant", "content": "four five"}, *user("six")]
    with backend:
        [first, second] = backend.generate([user("one two"), history], PARAMS)
    # the server reports every message but the last as cached: 0 words, then 3 + 2
    assert (first.cached_tokens, second.cached_tokens) == (0, 5)
    assert backend.usage.cached_tokens == 5 and backend.usage.prompt_tokens == 2 + 6
    assert backend.usage.to_dict()["cached_tokens"] == 5


def test_usage_leaves_out_cached_tokens_when_none_were_reported():
    from parrot.backends.base import Completion, Usage

    usage = Usage()
    usage.count(Completion(text="a", prompt_tokens=4, completion_tokens=1))
    assert "cached_tokens" not in usage.to_dict() and usage.to_dict()["prompt_tokens"] == 4


@pytest.mark.parametrize("fault", ["500", "malformed", "empty_choices", "empty_content", "null_content", "drop"])
def test_each_fault_is_retried_then_the_reply_is_used(fault_server, fault):
    fault_server.add_faults(fault, fault)
    backend = make_backend(fault_server)
    [c] = backend.generate([user("hello")], PARAMS)
    assert c.text == "echo: hello"
    assert len(fault_server.requests) == 3
    assert backend.usage.retries == 2 and backend.usage.failures == 0
    assert sum(backend.usage.errors.values()) == 2
    assert len(backend.delays) == 2 and all(0 < d <= 1.0 for d in backend.delays)


def test_an_empty_reply_is_asked_again_with_another_seed_a_server_error_with_the_same(fault_server):
    fault_server.add_faults("empty_content", "500")
    backend = make_backend(fault_server)
    [c] = backend.generate([user("hello")], PARAMS.replace(seed=41))
    assert c.text == "echo: hello"
    # the same seed would draw the same empty reply; a server error is retried as it was sent
    assert [r["seed"] for r in fault_server.requests] == [41, 42, 42]


def test_429_waits_exactly_retry_after(fault_server):
    fault_server.retry_after = "7"
    fault_server.add_faults("429")
    backend = make_backend(fault_server)
    [c] = backend.generate([user("hi")], PARAMS)
    assert c.text == "echo: hi"
    assert backend.delays == [7.0]
    assert backend.usage.errors == {"rate_limited": 1}


def test_hang_past_timeout_is_retried(fault_server):
    fault_server.add_faults("hang")
    backend = make_backend(fault_server, timeout=2.0)  # room for the retry on a loaded CI machine
    [c] = backend.generate([user("hi")], PARAMS)
    assert c.text == "echo: hi"
    assert backend.usage.errors == {"timeout": 1}


@pytest.mark.parametrize(
    "fault,reason",
    [
        ("429", "rate_limited"),
        ("500", "server_error"),
        ("hang", "timeout"),
        ("malformed", "malformed"),
        ("empty_choices", "empty_reply"),
        ("empty_content", "empty_reply"),
        ("null_content", "empty_reply"),
        ("drop", "connection"),
    ],
)
def test_persistent_fault_becomes_a_failed_item_never_an_empty_string(fault_server, fault, reason):
    fault_server.add_faults(fault, fault, fault)
    # Only a hang should time out; the other faults get time to come back on a loaded machine.
    backend = make_backend(fault_server, max_retries=2, timeout=0.3 if fault == "hang" else 5.0)
    [c] = backend.generate([user("x")], PARAMS)
    assert c.text is None and not c.ok
    assert c.error.startswith(f"{reason} after 3 attempts")
    assert backend.usage.failures == 1 and backend.usage.completions == 0
    assert backend.usage.errors == {reason: 3}
    assert len(fault_server.requests) == 3


def test_a_failed_item_does_not_fail_its_neighbours(fault_server):
    fault_server.add_faults("500")
    backend = make_backend(fault_server, max_retries=0, concurrency=1)
    out = backend.generate([user("a"), user("b"), user("c")], PARAMS)
    assert [c.ok for c in out] == [False, True, True]
    assert out[0].error.startswith("server_error") and out[1].text == "echo: b"


def test_backoff_grows_exponentially(fault_server):
    fault_server.add_faults("500", "500", "500", "500")
    backend = make_backend(fault_server, max_retries=4, extra={"backoff_base": 1.0, "backoff_max": 100.0})
    [c] = backend.generate([user("x")], PARAMS)
    assert c.ok
    for attempt, delay in enumerate(backend.delays, start=1):
        ceiling = 2 ** (attempt - 1)
        assert ceiling / 2 <= delay <= ceiling


def test_bad_request_fails_the_item_at_once(fault_server):
    fault_server.add_faults("400")
    backend = make_backend(fault_server)
    [c] = backend.generate([user("x")], PARAMS)
    assert c.text is None and c.error.startswith("bad_request: HTTP 400")
    assert len(fault_server.requests) == 1 and backend.usage.retries == 0


def test_wrong_url_stops_the_run_with_a_clear_error(fault_server):
    backend = make_backend(fault_server)
    # The server answers 404 for an unknown path: a wrong base_url is a user error.
    backend.config.base_url = fault_server.base_url.replace("/v1", "/nope")
    with pytest.raises(ParrotError, match="404"):
        backend.generate([user("x")], PARAMS)


def test_concurrency_bound_is_reached_and_never_exceeded(fault_server):
    fault_server.hold_until(3)
    fault_server.add_faults("500", "drop")  # retries must not slip past the bound either
    backend = make_backend(fault_server, concurrency=3)

    async def many_callers():  # stage code fires one coroutine per item
        return await asyncio.gather(*(backend.agenerate([user(f"q{i}")], PARAMS) for i in range(20)))

    results = asyncio.run(many_callers())
    assert all(c.ok for [c] in results)
    assert fault_server.max_in_flight == 3


def test_missing_key_without_base_url_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("PARROT_TEST_KEY", raising=False)
    backend = load_backend("openai:gpt-4", api_key_env="PARROT_TEST_KEY")
    with pytest.raises(ParrotError, match="PARROT_TEST_KEY"):
        backend.start()


def test_openai_base_url_env_is_honoured(fault_server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fault_server.base_url)
    backend = load_backend("openai:m")
    [c] = backend.generate([user("via env")], PARAMS)
    assert c.text == "echo: via env"


def test_api_key_is_sent_but_never_logged_described_or_in_manifest(fault_server, monkeypatch, caplog, tmp_path):
    secret = "sk-parrot-test-9f8e7d6c5b4a"
    monkeypatch.setenv("MY_JUDGE_KEY", secret)
    caplog.set_level(logging.DEBUG)
    fault_server.add_faults("429", "500", "empty_choices")
    fault_server.retry_after = "0"
    backend = make_backend(fault_server, api_key_env="MY_JUDGE_KEY", max_retries=1)
    with backend:
        out = backend.generate([user("a"), user("b"), user("c")], PARAMS)
    assert fault_server.headers[0]["authorization"] == f"Bearer {secret}"  # the key is used
    manifest = record_manifest(
        tmp_path / "out.jsonl",
        stage="test",
        config={"judge": backend.describe()},
        backend=backend.describe(),
        usage=backend.usage.to_dict(),
    )
    text = manifest.read_text()
    assert "MY_JUDGE_KEY" in text and secret not in text
    assert secret not in caplog.text and "openai:test-model" in caplog.text
    assert all(secret not in (c.error or "") for c in out)
    assert secret not in json.dumps(backend.describe())


def test_describe_hides_credentials_in_base_url():
    backend = load_backend("openai:m", base_url="https://user:pw@example.com/v1")
    described = json.dumps(backend.describe())
    assert "pw@" not in described and "https://example.com/v1" in described


def test_describe_hides_credentials_in_extra_headers():
    backend = load_backend("openai:m", extra={"extra_headers": {"Authorization": "Bearer sk-xyz", "X-Team": "a"}})
    described = backend.describe()
    assert "sk-xyz" not in json.dumps(described)
    assert described["options"]["extra"]["extra_headers"] == {"Authorization": "<redacted>", "X-Team": "a"}


def test_a_server_on_this_machine_is_reached_without_the_environments_proxy(fault_server, monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there: a proxied request fails
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    backend = make_backend(fault_server)
    [c] = backend.generate([user("hi")], PARAMS)
    assert c.text == "echo: hi" and backend.usage.errors == {}
