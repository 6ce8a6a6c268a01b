"""Scaling out, two comparisons on the same machine and backends, each in one run:

1. ``--part ray``: synthesis with ``--executor ray`` (the model as 2 Ray replicas of one CPU
   thread each, on a local Ray instance) against the in-process loop (one copy of the model with
   every thread), the same sessions and window: sessions/s, target >= 0.8x (what Ray may cost on
   one machine). The model is SmolLM2-135M through transformers (``hf:smollm2``, the in-process
   backend a GPU node would run as vllm); models are loaded before the clock starts.
2. ``--part router``: the multi-endpoint router against one endpoint with the same total slots.
   The same requests go out once through an ``openai:`` role with ``base_url: [A, B]`` (two
   servers of ``slots`` slots each) and once through a role with one ``base_url`` (one server of
   ``2 x slots`` slots), both with ``concurrency = 2 x slots`` (target >= 0.95x).

   - ``--server fault`` (default, seconds): the test suite's OpenAI-compatible FaultServer, each
     request taking ``--latency`` seconds in one of the server's slots (a semaphore), like a
     decoding server at full batch. The servers cost nothing, so this measures what the router
     itself costs: picking an endpoint, one client per endpoint.
   - ``--server llamacpp``: the embedded SmolLM2 behind llama.cpp (xllamacpp), two servers of
     ``slots`` slots and half the CPU threads each against one server of ``2 x slots`` slots and
     every thread. On one machine this also measures how llama.cpp shares the cores.

Rounds alternate the two sides so machine load hits both alike; each ratio is the median of the
per-round ratios.

    python benchmarks/scale_out.py                     # both parts, about 3 minutes on 2 cores
    python benchmarks/scale_out.py --part router --server llamacpp   # SmolLM2, about a minute
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import _common

from parrot.backends import BackendConfig, SamplingParams, load_backend
from parrot.core.config import build_config
from parrot.synthesize.stage import SynthesizeConfig, synthesize


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


def router_part(args) -> None:
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


def synthesis_pass(workdir: Path, name: str, model, sessions: int, turns: int, window: int, max_tokens: int) -> float:
    """One synthesis run through a started backend (both roles): its seconds, from its manifest."""
    seeds = workdir / "seeds.jsonl"
    if not seeds.exists():
        seeds.write_text(
            "".join(
                json.dumps({"id": f"q{i}", "messages": c}) + "\n" for i, c in enumerate(_common.conversations(sessions))
            )
        )
    role = {"spec": model.config.spec, "max_tokens": max_tokens}
    cfg = build_config(
        SynthesizeConfig,
        {
            "output": str(workdir / f"{name}.jsonl"),
            "seeds": str(seeds),
            "num_sessions": sessions,
            "max_turns": turns,
            "asker_mode": "prompted",
            "in_flight": window,
            "asker": role,
            "assistant": role,
            "overwrite": True,
        },
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the run's own summary table
        synthesize(cfg, asker=model, assistant=model)
    manifest = json.loads((workdir / f"{name}.jsonl.manifest.json").read_text())
    return manifest["timings"]["seconds"]


def ray_part(args) -> None:
    import ray

    os.environ.setdefault("PARROT_NO_PROGRESS", "1")

    from parrot.backends.ray_pool import RayBackend

    cores = os.cpu_count() or 2
    replicas = 2
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    spec = "hf:smollm2"
    batch = max(1, args.window // replicas)  # each replica runs its share of the window as one batch
    # in-process: the whole window as one batch, every thread (the local executor's best)
    local = load_backend(BackendConfig(spec=spec, batch_size=args.window, threads=cores)).start()
    on_ray = RayBackend(
        BackendConfig(spec=spec, batch_size=batch, threads=max(1, cores // replicas)), replicas=replicas
    )
    on_ray.start()
    rates = {"local": [], "ray": []}
    ratios = []
    release = [local.close, on_ray.close]
    for model in (local, on_ray):  # kept loaded across passes: a pass times its sessions, not a model load
        model.close = lambda: None
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        for close in release:
            stack.callback(close)
        for r in range(args.rounds):
            order = ["local", "ray"] if r % 2 == 0 else ["ray", "local"]
            for name in order:
                model = local if name == "local" else on_ray
                sec = synthesis_pass(Path(tmp), name, model, args.sessions, args.turns, args.window, args.max_tokens)
                rates[name].append(args.sessions / sec)
                print(
                    f"  round {r + 1} {name:5s}: {args.sessions} sessions in {sec:.2f}s = {args.sessions / sec:.3f} sessions/s"
                )
            ratios.append(rates["ray"][-1] / rates["local"][-1])
        per_replica = on_ray.usage.to_dict()["replicas"]
    ray.shutdown()
    print(
        f"synthesis, {spec}: {args.sessions} sessions x {args.turns} turns, {args.window} in flight, "
        f"{args.max_tokens} tokens per call, {args.rounds} rounds, {cores} cores"
    )
    print(
        f"  in-process loop (1 copy, {cores} threads, batches of {args.window}) : "
        f"{statistics.median(rates['local']):.3f} sessions/s (median)"
    )
    print(
        f"  --executor ray ({replicas} replicas x {max(1, cores // replicas)} thread(s), batches of {batch}) : "
        f"{statistics.median(rates['ray']):.3f} sessions/s (median)"
    )
    print("  calls per replica (all rounds) : " + ", ".join(str(x["requests"]) for x in per_replica))
    print(
        f"  ratio ray/in-process  : {statistics.median(ratios):8.3f}x  median of per-round ratios "
        f"{', '.join(f'{x:.3f}' for x in ratios)}  (target >= 0.8x)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["ray", "router", "both"], default="both")
    ap.add_argument("--server", choices=["fault", "llamacpp"], default="fault", help="router: the servers")
    ap.add_argument(
        "--slots", type=int, default=None, help="router: slots per server of the pair (fault 8, llamacpp 2)"
    )
    ap.add_argument("--requests", type=int, default=None, help="router: requests per pass (fault 400, llamacpp 16)")
    ap.add_argument("--latency", type=float, default=0.02, help="router, fault: seconds per request")
    ap.add_argument("--max-tokens", type=int, default=32, help="tokens per call")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (router 5, ray 3)")
    ap.add_argument("--sessions", type=int, default=16, help="ray: sessions per pass")
    ap.add_argument("--turns", type=int, default=2, help="ray: turns per session")
    ap.add_argument("--window", type=int, default=16, help="ray: sessions in flight")
    args = ap.parse_args()
    if args.part in ("ray", "both"):
        ray_part(argparse.Namespace(**{**vars(args), "rounds": args.rounds or 3}))
    if args.part in ("router", "both"):
        router_part(argparse.Namespace(**{**vars(args), "rounds": args.rounds or 5}))


if __name__ == "__main__":
    main()
