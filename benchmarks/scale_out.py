"""Scaling out: the multi-endpoint router against one endpoint with the same total slots, same run.

Only the router half of issue 17's benchmark is built: the Ray executor (``--executor ray``
against the in-process loop, target >= 0.8x) is not built yet, so it is not measured here.

The same requests go out once through an ``openai:`` role with ``base_url: [A, B]`` (two
servers of ``slots`` slots each) and once through a role with one ``base_url`` (one server of
``2 x slots`` slots), both with ``concurrency = 2 x slots``. Rounds alternate between the two so
machine load hits both alike; the ratio is the median of the per-round ratios (target >= 0.95x).

- ``--server fault`` (default, seconds): the test suite's OpenAI-compatible FaultServer, each
  request taking ``--latency`` seconds in one of the server's slots (a semaphore), like a
  decoding server at full batch. The servers cost nothing, so this measures what the router
  itself costs: picking an endpoint, one client per endpoint.
- ``--server llamacpp``: the embedded SmolLM2 behind llama.cpp (xllamacpp), two servers of
  ``slots`` slots and half the CPU threads each against one server of ``2 x slots`` slots and
  every thread. On one machine this also measures how llama.cpp shares the cores, not only the
  router.

    python benchmarks/scale_out.py                     # FaultServers, a few seconds
    python benchmarks/scale_out.py --server llamacpp   # SmolLM2, about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import _common

from parrot.backends import SamplingParams, load_backend


def fault_servers(stack: ExitStack, slots: list[int], latency: float) -> list[str]:
    """FaultServers of ``slots`` slots each, every request ``latency`` seconds: their URLs."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fixtures.servers import FaultServer, echo_responder

    urls = []
    for n in slots:
        gate = threading.Semaphore(n)

        def decode(request: dict, gate=gate) -> str:
            with gate:
                time.sleep(latency)
                return echo_responder(request)

        server = FaultServer(decode).start()
        stack.callback(server.stop)
        urls.append(server.base_url)
    return urls


def llamacpp_servers(stack: ExitStack, slots: list[int]) -> list[str]:
    """SmolLM2 llama.cpp servers, the machine's threads shared out between them: their URLs."""
    threads = max(1, (os.cpu_count() or 2) // len(slots))
    urls = []
    for n in slots:
        server = stack.enter_context(load_backend("smollm2", slots=n, ctx_size=n * 2048, threads=threads))
        urls.append(server.base_url)
    return urls


def run(base_url, convs, params, concurrency: int) -> tuple[float, int, dict]:
    """One pass: (seconds, completion tokens, usage)."""
    backend = load_backend("openai:smollm2", base_url=base_url, concurrency=concurrency)
    with backend:
        backend.generate(convs[:concurrency], params.replace(max_tokens=4))  # warm-up: connections
        seconds, tokens = _common.timed_generate(backend, convs, params)
    return seconds, tokens, backend.usage.to_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", choices=["fault", "llamacpp"], default="fault")
    ap.add_argument("--slots", type=int, default=None, help="slots per server of the pair (fault 8, llamacpp 2)")
    ap.add_argument("--requests", type=int, default=None, help="requests per pass (fault 400, llamacpp 16)")
    ap.add_argument("--latency", type=float, default=0.02, help="fault: seconds per request")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    slots = args.slots or (8 if args.server == "fault" else 2)
    requests = args.requests or (400 if args.server == "fault" else 16)
    rounds = args.rounds if args.server == "fault" else min(args.rounds, 3)
    params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=args.max_tokens, seed=0)
    convs = _common.conversations(requests, numbered=True)
    total = 2 * slots

    rates = {"one": [], "router": []}
    ratios = []
    usage = {}
    with ExitStack() as stack:
        if args.server == "fault":
            *pair, single = fault_servers(stack, [slots, slots, total], args.latency)
        else:
            single = None  # one llama.cpp at a time: they share the cores
        for r in range(rounds):
            order = ["one", "router"] if r % 2 == 0 else ["router", "one"]
            for name in order:
                with ExitStack() as per_pass:
                    if args.server == "llamacpp":
                        urls = llamacpp_servers(per_pass, [slots, slots] if name == "router" else [total])
                        target = urls if name == "router" else urls[0]
                    else:
                        target = pair if name == "router" else single
                    sec, unit, usage[name] = run(target, convs, params, total)
                if args.server == "fault":
                    unit = requests  # the fault server's "tokens" are echoed words: count requests
                rates[name].append(unit / sec)
                what = "requests" if args.server == "fault" else "tokens"
                print(f"  round {r + 1} {name:6s}: {unit} {what} in {sec:.2f}s = {unit / sec:.1f} {what}/s")
            ratios.append(rates["router"][-1] / rates["one"][-1])
    what = "requests/s" if args.server == "fault" else "completion tok/s"
    detail = f"{args.latency * 1000:g} ms per request" if args.server == "fault" else "SmolLM2 llama.cpp"
    print(
        f"{args.server} servers ({detail}): 2 x {slots} slots behind the router vs 1 x {total} slots, "
        f"concurrency {total}, {requests} requests, {rounds} rounds"
    )
    print(f"  one endpoint        : {statistics.median(rates['one']):8.1f} {what} (median)")
    print(f"  router, 2 endpoints : {statistics.median(rates['router']):8.1f} {what} (median)")
    print(
        "  per endpoint (last) : "
        + ", ".join(f"{e['requests']} requests / {e['ok']} ok" for e in usage["router"]["endpoints"])
    )
    print(
        f"  ratio router/one    : {statistics.median(ratios):8.3f}x  median of per-round ratios "
        f"{', '.join(f'{x:.3f}' for x in ratios)}  (target >= 0.95x)"
    )
    print("  Ray executor vs in-process loop: not built yet")


if __name__ == "__main__":
    main()
