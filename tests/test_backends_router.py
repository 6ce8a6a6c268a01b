"""Several endpoints behind one openai role: real fault-injecting HTTP servers on 127.0.0.1."""

import asyncio
import json
import time

import pytest
from fixtures.servers import FaultServer, openai_backend

from parrot import ParrotError
from parrot.backends import SamplingParams, load_backend
from parrot.backends.base import BackendConfig
from parrot.core.config import build_config
from parrot.core.manifest import record_manifest

PARAMS = SamplingParams(temperature=0.0, max_tokens=16, seed=3)


def user(text):
    return [{"role": "user", "content": text}]


@pytest.fixture
def servers():
    """Three fault servers (each answers after a short delay, so requests overlap)."""
    started = [FaultServer().start() for _ in range(3)]
    try:
        yield started
    finally:
        for s in started:
            s.stop()


def router(servers, **options):
    """An openai backend over ``servers`` that records its backoff delays instead of waiting."""
    extra = {"endpoint_cooldown": 60.0, **options.pop("extra", {})}
    return openai_backend([s.base_url for s in servers], extra=extra, **options)


def slow(request):
    time.sleep(0.01)
    return "ok " + request["messages"][-1]["content"]


def per_endpoint(backend, key):
    return [e[key] for e in backend.usage.to_dict()["endpoints"]]


def run_many(backend, n):
    async def many_callers():  # stage code fires one coroutine per item
        try:
            return await asyncio.gather(*(backend.agenerate([user(f"q{i}")], PARAMS) for i in range(n)))
        finally:
            await backend._close_client()

    return [c for [c] in asyncio.run(many_callers())]


def test_one_at_a_time_the_endpoints_take_turns(servers):
    backend = router(servers, concurrency=1)
    out = backend.generate([user(f"q{i}") for i in range(9)], PARAMS)
    assert all(c.ok for c in out)
    assert [len(s.requests) for s in servers] == [3, 3, 3]
    assert per_endpoint(backend, "requests") == [3, 3, 3] and per_endpoint(backend, "ok") == [3, 3, 3]


def test_requests_go_to_the_endpoint_with_fewest_in_flight(servers):
    for s in servers:
        s.responder = slow
        s.hold_until(2)
    servers[0].responder = lambda r: (time.sleep(0.2), "slow")[1]  # one slow node: it holds its requests
    backend = router(servers, concurrency=6)
    out = run_many(backend, 36)
    assert all(c.ok for c in out)
    counts = [len(s.requests) for s in servers]
    assert sum(counts) == 36 and all(c >= 2 for c in counts)
    # the slow endpoint keeps its 2 in flight while the fast ones take the rest
    assert counts[0] < counts[1] and counts[0] < counts[2]
    assert all(s.max_in_flight <= 3 for s in servers)
    assert per_endpoint(backend, "requests") == counts


def test_a_failing_endpoint_is_set_aside_and_the_run_finishes_on_the_others(servers, tmp_path):
    for s in servers:
        s.responder = slow
    servers[1].add_faults(*["500"] * 100)
    backend = router(servers, concurrency=6, extra={"backoff_base": 0.01})
    with backend:
        out = run_many(backend, 30)
    assert all(c.ok for c in out) and backend.usage.failures == 0
    usage = backend.usage.to_dict()
    [a, bad, c] = usage["endpoints"]
    assert bad["set_aside"] == 1 and bad["ok"] == 0 and bad["failures"] == len(servers[1].requests) >= 3
    assert a["set_aside"] == c["set_aside"] == 0 and a["ok"] + c["ok"] == 30
    assert backend.usage.retries == bad["failures"]
    assert backend.delays == []  # every retry went to another endpoint at once
    manifest = record_manifest(
        tmp_path / "out.jsonl",
        stage="test",
        config={"judge": backend.describe()},
        backend=backend.describe(),
        usage=usage,
    )
    written = json.loads(manifest.read_text())
    assert written["usage"]["endpoints"][1] == {**bad, "url": servers[1].base_url}
    assert written["backend"]["base_url"] == [s.base_url for s in servers]


def test_an_unreachable_endpoint_is_set_aside(servers):
    servers[2].stop()  # a node that is down: connection refused
    backend = router(servers, concurrency=4, extra={"backoff_base": 0.01})
    out = run_many(backend, 20)
    assert all(c.ok for c in out)
    [a, b, dead] = backend.usage.to_dict()["endpoints"]
    assert dead["set_aside"] == 1 and dead["ok"] == 0 and a["ok"] + b["ok"] == 20
    assert backend.usage.errors == {"connection": dead["failures"]}


def test_with_every_endpoint_set_aside_the_one_back_first_is_used(servers):
    for s in servers:
        s.add_faults("500")
    backend = router(servers, concurrency=1, extra={"endpoint_failures": 1})
    [c] = backend.generate([user("x")], PARAMS)
    assert c.text == "echo: x"
    assert per_endpoint(backend, "set_aside") == [1, 1, 1]
    assert per_endpoint(backend, "ok") == [1, 0, 0]  # the first set aside is the first back
    assert len(backend.delays) == 1  # no other endpoint left: the last retry waited its backoff


def test_an_endpoint_back_from_its_rest_is_set_aside_again_after_one_failure(servers):
    now = [0.0]
    backend = router(servers[:2], concurrency=1)
    backend._clock = lambda: now[0]
    servers[0].add_faults("500", "500", "500")
    backend.generate([user("a")], PARAMS)  # a fails on 0, retried on 1
    backend.generate([user("b")], PARAMS)  # the turn is 0's: fails again, retried on 1
    servers[0].add_faults("drop")
    backend.generate([user("c")], PARAMS)
    assert per_endpoint(backend, "set_aside") == [1, 0]
    now[0] = 61.0  # the cool-down is over: one more failure sets it aside again
    backend.generate([user("d")], PARAMS)
    assert per_endpoint(backend, "set_aside") == [2, 0]
    now[0] = 122.0
    backend.generate([user("e"), user("f")], PARAMS)  # back, and well: a success clears it
    assert per_endpoint(backend, "ok")[0] >= 1
    assert per_endpoint(backend, "set_aside") == [2, 0]
    servers[0].add_faults("500")  # cleared: one failure alone does not set it aside again
    backend.generate([user("g"), user("h")], PARAMS)
    assert per_endpoint(backend, "set_aside") == [2, 0]


def test_a_single_url_behaves_as_before(fault_server):
    backend = load_backend("openai:test-model", base_url=fault_server.base_url)
    fault_server.add_faults("500")
    backend._sleep = lambda s: asyncio.sleep(0)
    [c] = backend.generate([user("x")], PARAMS)
    assert c.text == "echo: x" and len(fault_server.requests) == 2
    assert "endpoints" not in backend.usage.to_dict()
    assert backend.describe()["base_url"] == fault_server.base_url


def test_base_url_lists_from_yaml_and_the_command_line():
    cfg = build_config(BackendConfig, {"spec": "openai:m"}, ["base_url=[http://n1:8000/v1,http://n2:8000/v1]"])
    assert cfg.base_url == ["http://n1:8000/v1", "http://n2:8000/v1"]
    cfg = build_config(BackendConfig, {"spec": "openai:m", "base_url": ["http://n1:8000/v1"]})
    assert cfg.base_url == ["http://n1:8000/v1"]
    assert build_config(BackendConfig, {"spec": "openai:m", "base_url": "http://n1/v1"}).base_url == "http://n1/v1"
    for bad in ([], [1], "[http://a, [b]]"):
        with pytest.raises(ParrotError, match="base_url"):
            build_config(BackendConfig, {"spec": "openai:m", "base_url": bad})


def test_several_urls_are_described_without_credentials():
    backend = load_backend("openai:m", base_url=["https://user:pw@a.example/v1", "https://b.example/v1?api_key=s3cr3t"])
    described = json.dumps(backend.describe())
    assert "pw@" not in described and "s3cr3t" not in described
    assert backend.describe()["base_url"][0] == "https://a.example/v1"
    backend._count_endpoints()
    assert "s3cr3t" not in json.dumps(backend.usage.to_dict())
