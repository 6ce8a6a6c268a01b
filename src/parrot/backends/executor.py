"""Where a stage's models run: ``--executor local`` (this process) or ``--executor ray``.

The stages whose loop is "items (or sessions) -> model calls -> records" (synthesize, capo,
evaluate answer, evaluate judge) take the two options of :class:`Executor` and load each role
with :meth:`Executor.load_backend`. With ``ray``, a role whose model runs in-process (``hf:``,
``vllm:``, ``gguf:``, ``smollm2``) becomes replicas on a Ray cluster
(:class:`~parrot.backends.ray_pool.RayBackend`); an endpoint role (``openai:``) is shared as it
is: every call goes from this process to its servers, through the router when it has several.
The loop itself, and with it every id, seed, journal entry, output and failure record, stays in
this process either way (docs/scale-out.md says why).
"""

from __future__ import annotations

from dataclasses import dataclass

from parrot.backends import Backend, BackendConfig, load_backend
from parrot.core.config import opt


@dataclass(kw_only=True)
class Executor:
    """The executor options of a stage that calls models item by item."""

    executor: str = opt(
        "local",
        "local: models run in this process; ray: in-process models (hf, vllm, gguf) run as replicas on a "
        "Ray cluster ($RAY_ADDRESS, or a local one), endpoints are shared (pip install 'parrot-chat[ray]')",
        choices=["local", "ray"],
        hashed=False,
    )
    replicas: int | None = opt(
        None,
        "ray: replicas of each in-process model (default: one per GPU of the cluster, or one per "
        "`threads` CPUs on a cluster without GPUs, shared out between the run's models)",
        hashed=False,
        min=1,
    )

    def load_backend(self, role: BackendConfig, *, models: int = 1) -> Backend:
        """The role's backend on this executor; ``models``: how many in-process models the run
        loads (they share the cluster's GPUs or CPUs when ``replicas`` is not given)."""
        if self.executor == "ray" and role.model_spec.in_process:
            from parrot.backends.ray_pool import RayBackend

            return RayBackend(role, replicas=self.replicas, models=models)
        return load_backend(role)
