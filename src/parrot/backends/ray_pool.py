"""``--executor ray``: an in-process model (hf, vllm, gguf) served by replicas on a Ray cluster.

The stage's loop stays in the driver (the process that runs the command): sessions, ids, seeds,
the journal, the output and the failures file are kept by one process, exactly as with the local
executor. What moves is the model. :class:`RayBackend` starts ``replicas`` Ray actors that each
load the role's model (:class:`Replica`), a :mod:`~parrot.backends.pool` whose least busy member
takes each call. A batch from the batched loop is cut the way a replica's own batcher cuts
it (:func:`~parrot.backends.batching.plan_batches`), so the replicas run the batches the local
executor would have run: with greedy decoding the records are the same, whichever executor made
them.

Resources. On a cluster with GPUs an hf or vllm replica takes one GPU (vllm:
``tensor_parallel_size`` of them) and the default is one replica per GPU; elsewhere a replica
takes ``threads`` CPUs (default 1, and the model then uses that many threads) and the default is
one per CPU. Several in-process models in one run (a synthesis with two) share the cluster.

A lost replica. When a replica's process dies (killed, out of memory, its node gone), the calls
it was running go to other replicas at once and it is set aside; Ray starts it again
(:data:`MAX_RESTARTS` times), and once it answers a ``ready`` call it is set back. A replica whose
restarts are used up is given up; while every replica is down, calls wait for one to come back.
Only the driver writes records, so nothing is duplicated; a call no replica could answer comes
back failed (``replica_lost``), as any failed call. A killed driver takes its actors with it.

Needs ``pip install 'parrot-chat[ray]'``; Ray is imported only here, when a stage asks for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass

from parrot import ParrotError
from parrot.backends import Backend, BackendConfig, Completion, load_backend
from parrot.backends.base import Messages, SamplingParams
from parrot.backends.batching import plan_batches
from parrot.backends.pool import Member, Pool

log = logging.getLogger("parrot.backends")

MAX_RESTARTS = 3  # a replica whose process died is started again this many times, then given up
WAIT_LOG_SECONDS = 30.0  # while replicas wait for resources or load, say so this often
PROBE_SECONDS = 0.5  # while every replica is down, look for one back this often
STOP_SECONDS = 30.0  # the most a clean stop of idle replicas may take before they are killed


def import_ray():
    try:
        import ray
    except ImportError:
        raise ParrotError("--executor ray needs Ray: pip install 'parrot-chat[ray]'") from None
    return ray


def connect():
    """Ray, connected: to ``$RAY_ADDRESS`` when it is set, else to a Ray instance started here."""
    ray = import_ray()
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            log.info("connecting to the Ray cluster at %s", address)
            ray.init(address=address)
        else:
            log.info("starting a local Ray instance (set RAY_ADDRESS to use a cluster)")
            ray.init(include_dashboard=False)
    return ray


def uses_gpu(config: BackendConfig, cluster_gpus: int) -> bool:
    """Whether a replica of this model takes GPUs: vllm always, hf when its device asks for CUDA
    or is ``auto`` on a cluster with GPUs; llama.cpp (gguf) replicas run on CPUs."""
    kind = config.model_spec.kind
    return kind == "vllm" or (
        kind == "hf" and (config.device.startswith("cuda") or (config.device == "auto" and cluster_gpus > 0))
    )


def replica_plan(config: BackendConfig, cluster: dict, *, replicas: int | None, models: int) -> tuple[int, dict]:
    """(how many replicas, the Ray resources of one) for a model on a cluster whose resources are
    ``cluster`` (``ray.cluster_resources()``), ``models`` in-process models sharing it."""
    gpus, cpus = int(cluster.get("GPU", 0)), int(cluster.get("CPU", 0))
    if replicas is not None and replicas < 1:
        raise ParrotError(f"replicas: expected at least 1, found {replicas}")
    if uses_gpu(config, gpus):
        per = config.tensor_parallel_size if config.model_spec.kind == "vllm" else 1
        if gpus < per:
            raise ParrotError(
                f"{config.spec}: a replica needs {per} GPU(s) and the Ray cluster has {gpus} "
                f"(on CPUs: device=cpu for hf; vllm needs GPUs)"
            )
        return replicas or max(1, gpus // (per * models)), {"num_gpus": per, "num_cpus": 1}
    per = config.threads or 1
    return replicas or max(1, cpus // (per * models)), {"num_cpus": per}


class Replica:
    """One copy of the model, in a Ray actor (``ray.remote(Replica)``): loaded when it starts."""

    def __init__(self, config: BackendConfig):
        self.backend = load_backend(config).start()

    def ready(self) -> dict:
        import ray

        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address()}

    async def generate(self, conversations: list[Messages], params: list[SamplingParams]) -> list[Completion]:
        return await self.backend.agenerate(conversations, params)

    async def shutdown(self) -> None:
        """Release the model, and stop the batcher's task on this actor's loop (which never ends)."""
        batcher = getattr(self.backend, "batcher", None)
        if batcher is not None:
            batcher.stop()
        self.backend.close()


@dataclass(eq=False)
class _Handle(Member):
    """The driver's view of one replica, set aside while it is down (lost, until it is back)."""

    index: int = 0
    actor: object = None
    node: str = "?"
    pid: int = 0
    given_up: bool = False  # dead for good: Ray's restarts are used up
    probe: object = None  # a pending ``ready`` call while it is down
    abandoned: int = 0  # calls the driver stopped waiting for (Ctrl-C): the replica may still run them

    def label(self) -> dict:
        return {"replica": self.index, "node": self.node}


class RayBackend(Backend):
    """A role's in-process model as ``replicas`` Ray actors; calls go to the least busy one."""

    def __init__(self, config: BackendConfig, *, replicas: int | None = None, models: int = 1):
        super().__init__(config)
        # the model as the local executor would load it, never started: how its calls are batched
        self.inner = load_backend(config)
        self.wanted, self.models = replicas, models
        self.pool = Pool([])
        self.handles: list[_Handle] = self.pool.members

    @property
    def copies(self) -> int:  # type: ignore[override]
        return max(1, len(self.handles))

    def shortens(self) -> bool:
        return False  # each replica fits the conversations to its model's context

    def loaded(self) -> bool:
        return bool(self.handles)

    # ------------------------------------------------------------------ starting and stopping
    def start(self) -> "RayBackend":
        with self._start_lock:
            if not self.handles:
                self._start()
        return self

    def _start(self) -> None:
        ray = connect()
        n, resources = replica_plan(self.config, ray.cluster_resources(), replicas=self.wanted, models=self.models)
        config = self.config
        if "num_gpus" not in resources and not config.threads:  # one model thread per CPU it holds
            config = dataclasses.replace(config, threads=resources["num_cpus"])
        actor_class = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=0, **resources)(Replica)
        self.handles[:] = [_Handle(index=k, actor=actor_class.remote(config)) for k in range(n)]
        log.info("%s: starting %d replica(s) on Ray, each with %s", self.config.spec, n, resources)
        refs = {h.actor.ready.remote(): h for h in self.handles}
        started, waiting = time.monotonic(), list(refs)
        try:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=WAIT_LOG_SECONDS)
                for ref in done:
                    info = ray.get(ref)
                    refs[ref].node, refs[ref].pid = info["node"], info["pid"]
                if waiting:
                    log.warning(
                        "%s: %d of %d replicas not ready after %.0f s (loading, or waiting for %s on the "
                        "cluster; it has %s)",
                        self.config.spec,
                        len(waiting),
                        n,
                        time.monotonic() - started,
                        resources,
                        ray.available_resources(),
                    )
        except ray.exceptions.RayActorError as e:
            self.close()
            raise ParrotError(f"{self.config.spec}: a replica could not load the model on the Ray cluster: {e}") from e
        nodes = sorted({h.node for h in self.handles})
        log.info("%s: %d replica(s) ready on %s", self.config.spec, n, ", ".join(nodes))

    def close(self) -> None:
        """Stop the replicas. One that is idle is stopped cleanly first (its model released, its
        batcher's task ended); one still running a call the driver gave up on (the run was
        interrupted: Ctrl-C cancels the calls in flight) is killed at once, since a clean stop would
        wait for that call (llama.cpp's server finishes its requests before it stops); one down or
        gone is simply killed. Nothing is lost either way: only the driver writes records."""
        if not self.handles:
            return
        ray = import_ray()
        try:
            idle = [h for h in self.pool.ready() if not h.abandoned]
            if idle:
                ray.get([h.actor.shutdown.remote() for h in idle], timeout=STOP_SECONDS)
        except (ray.exceptions.RayError, TimeoutError):
            pass
        finally:  # a second Ctrl-C during the clean stop still kills them all
            for h in self.handles:
                ray.kill(h.actor, no_restart=True)
            self.handles.clear()

    def replica_pids(self) -> list[int]:
        """The replicas' process ids as they started (for tests that kill one)."""
        return [h.pid for h in self.handles]

    # ------------------------------------------------------------------ calls
    async def _agenerate(self, conversations: list[Messages], plist: list[SamplingParams]) -> list[Completion]:
        self.start()
        batcher = getattr(self.inner, "batcher", None)
        size = (batcher and batcher.max_batch) or math.ceil(len(conversations) / len(self.handles))
        same = bool(batcher and batcher.same_params)
        out: list[Completion | None] = [None] * len(conversations)

        async def one(batch: list[int]) -> None:
            got = await self._call([conversations[i] for i in batch], [plist[i] for i in batch])
            for i, c in zip(batch, got):
                out[i] = c

        await asyncio.gather(*(one(b) for b in plan_batches(conversations, plist, size, same)))
        self._count(out)
        return out  # type: ignore[return-value]

    async def _call(self, conversations: list[Messages], params: list[SamplingParams]) -> list[Completion]:
        """One batch on one replica; on another when that one's process dies meanwhile."""
        ray = import_ray()
        error = "no replica left"
        for _ in range(len(self.handles) * (MAX_RESTARTS + 2)):
            h = await self._pick()
            if h is None:
                break
            try:
                with self.pool.sending(h, len(conversations)):
                    got = await h.actor.generate.remote(conversations, params)
                h.count(ok=sum(c.ok for c in got), failed=sum(not c.ok for c in got))
                return got
            except asyncio.CancelledError:  # interrupted: the replica goes on with the call
                h.abandoned += 1
                raise
            except ray.exceptions.RayActorError as e:
                h.count(failed=len(conversations))
                error = f"replica_lost: {type(e).__name__}"
                if not self.pool.resting(h):
                    self.pool.set_aside(h)
                    h.probe = None
                    log.warning(
                        "%s: replica %d (node %s) was lost (%s); its calls go to the others until it is back",
                        self.config.spec,
                        h.index,
                        h.node,
                        type(e).__name__,
                    )
        return [Completion(text=None, error=error) for _ in conversations]

    async def _pick(self) -> _Handle | None:
        """The least busy replica that is up (ties in turn); while every one is down, wait for one
        to come back. None when every replica is gone for good."""
        while True:
            for h in self.handles:
                if self.pool.resting(h) and not h.given_up:
                    self._probe(h)
            if up := self.pool.pick():
                return up
            if all(h.given_up for h in self.handles):
                return None
            await asyncio.sleep(PROBE_SECONDS)

    def _probe(self, h: _Handle) -> None:
        """Whether a lost replica is back (Ray restarts it): one ``ready`` call in flight at a time,
        checked without waiting. Back: it takes calls again; dead for good (its restarts used up):
        given up."""
        ray = import_ray()
        if h.probe is None:
            h.probe = h.actor.ready.remote()
            return
        done, _ = ray.wait([h.probe], timeout=0)
        if not done:
            return
        try:
            info = ray.get(h.probe)
        except ray.exceptions.ActorDiedError:
            h.given_up = True
            log.warning("%s: replica %d is gone for good (Ray's restarts used up)", self.config.spec, h.index)
        except ray.exceptions.RayActorError:
            h.probe = None  # still restarting: ask again next time
        else:
            h.node, h.pid, h.probe = info["node"], info["pid"], None
            self.pool.set_back(h)
            log.info("%s: replica %d is back (node %s)", self.config.spec, h.index, h.node)

    def _count(self, completions: list[Completion]) -> None:
        """The role's usage, from what came back (a restarted replica's own counts start at zero)."""
        u = self.usage
        for c in completions:
            u.count(c)
            u.shortened += bool(c.shortened)
        u.replicas = self.pool.usage()

    def describe(self) -> dict:
        return {
            **super().describe(),
            "executor": "ray",
            "replicas": len(self.handles) or len(self.usage.replicas),
            "nodes": sorted({h.node for h in self.handles} or {r["node"] for r in self.usage.replicas}),
        }
