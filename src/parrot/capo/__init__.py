"""CaPO, context-aware preference optimisation data: pick the turns whose question depends on
the history (:mod:`~parrot.capo.select`), write wrong answers that imitate how models fail on
them (:mod:`~parrot.capo.negatives`), keep them as DPO pairs (:mod:`~parrot.capo.build`)."""

from parrot.capo.build import CapoConfig, capo
from parrot.capo.negatives import STRATEGIES, similarity
from parrot.capo.select import SelectConfig, candidate_turns, capo_select

__all__ = ["STRATEGIES", "CapoConfig", "SelectConfig", "candidate_turns", "capo", "capo_select", "similarity"]
