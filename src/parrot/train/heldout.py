"""The simulator on held-out real sessions, session by session: its loss and when it stops.

train-ask with held-out data (``eval_data``) measures, on the same held-out sessions (the first
``eval_limit``), the untrained starting model as training begins (with ``eval_base``) and the
trained model once training ends (:func:`heldout_callback`), and records both in the manifest's
``heldout`` (read back by :func:`parrot.train.trainer.train_run`), so the report can give each an
interval over held-out sessions:

``loss``
    ``{session id: mean loss per trained token}``: the session rendered as the trainer's
    evaluation renders it (role-swapped, split the same way when longer than ``max_length``).
``mean_loss``
    the mean loss per trained token over all of them: train-ask's ``eval_loss`` (and, for the
    starting model, ``eval_loss_base``), so the trainer's own evaluation does not run the same
    forward passes a second time.
``stops``
    ``{session id: [[stops, real], ...]}``, one pair per answered turn ``t``: does the simulator
    stop after the assistant's answer of turn ``t`` (teacher-forced: the real conversation up to
    and including that answer, in the simulator's role-swapped view), and did the real user
    (``real``: after the session's last answer; they went on after every earlier one).

Decision rule (:data:`STOP_RULE`): the simulator stops when the probability of the completion
:data:`~parrot.synthesize.roleswap.STOP_MARKER` followed by the end-of-turn token is above 0.5
(log-probability above log 0.5): stopping is then more likely than every way of going on
together. A prefix that does not fit ``max_length`` tokens with its stop completion is shortened
as training shortens a session (:func:`parrot.core.shorten.shorten`: oldest turns first; counted
in ``turns_shortened``), or, when even the last answer does not fit, not scored (``turns_too_long``). One forward pass per session example and per turn: cheap for the
few held-out sessions of a demo.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from parrot.core.dialogue import read_dialogues
from parrot.core.shorten import shorten
from parrot.core.tokens import count_tokens
from parrot.train.render import IGNORE, render_chat, render_examples

log = logging.getLogger("parrot.train")

#: The key under which the starting model's held-out pass is kept in the trainer's log history.
BASE_KEY = "heldout_base"
STOP_RULE = "stops when log P(stop marker + end of turn | conversation through the answer) > log(0.5)"


@dataclass
class HeldOutSession:
    """One held-out session, rendered for the two measures."""

    id: str
    examples: list[tuple[list[int], list[int]]]  # (input_ids, labels) as the trainer evaluates them
    turns: list[tuple[list[int], list[int], bool]] = field(default_factory=list)  # stop completion, real stop


def heldout_sessions(
    path: str, tokenizer, view, stop_view, max_length: int | None, limit: int | None = None
) -> tuple[list[HeldOutSession], dict]:
    """The held-out sessions of ``path`` (the first ``limit``): ``view`` renders a session for its
    loss; ``stop_view`` (the role swap with the stop turn) renders each answered prefix with the
    stop marker as the completion. Returns them and counts (``turns_too_long``)."""
    out, counts = [], {"turns_shortened": 0, "turns_too_long": 0}
    for i, record in enumerate(read_dialogues(path)):
        if limit is not None and i >= limit:
            break
        where = f"{path} id={record['id']}"
        examples = [
            (r.input_ids, r.labels) for r in render_examples(tokenizer, view(record, where), max_length=max_length)
        ]
        s = HeldOutSession(str(record["id"]), examples)
        msgs = record["messages"]
        for k, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            chat = stop_view({**record, "messages": msgs[: k + 1]}, where)
            if max_length is not None:
                got = shorten(chat, lambda c: count_tokens(tokenizer, c) <= max_length)
                if got is None:
                    counts["turns_too_long"] += 1
                    continue
                chat, how = got
                counts["turns_shortened"] += bool(how)
            r = render_chat(tokenizer, chat, context=len(chat) - 1)  # only the stop turn carries labels
            s.turns.append((r.input_ids, r.labels, k == len(msgs) - 1))
        out.append(s)
    return out, counts


def labelled_logprobs(model, input_ids: list[int], labels: list[int]):
    """The model's log-probability of each labelled token given the tokens before it (a tensor)."""
    import torch

    device = next(model.parameters()).device
    logits = model(input_ids=torch.tensor([input_ids], device=device)).logits[0, :-1].float()
    target = torch.tensor(labels[1:], device=device)
    keep = target != IGNORE
    return torch.log_softmax(logits[keep], dim=-1).gather(1, target[keep][:, None])[:, 0]


def measure(model, sessions: list[HeldOutSession]) -> dict:
    """``{"loss": {id: mean token loss}, "mean_loss": over every token, "stops": {id: [[stops, real],
    ...]}}`` of ``model`` (put in eval mode for the pass, then back)."""
    import torch

    training = model.training
    model.eval()
    loss, stops = {}, {}
    total, tokens = 0.0, 0
    try:
        with torch.no_grad():
            for s in sessions:
                lps = [labelled_logprobs(model, ids, labels) for ids, labels in s.examples]
                n = sum(len(x) for x in lps)
                if n:
                    summed = -float(sum(x.sum() for x in lps))
                    loss[s.id] = summed / n
                    total, tokens = total + summed, tokens + n
                stops[s.id] = [
                    [float(labelled_logprobs(model, ids, labels).sum()) > math.log(0.5), real]
                    for ids, labels, real in s.turns
                ]
    finally:
        model.train(training)
    return {"loss": loss, "mean_loss": total / tokens if tokens else None, "stops": stops}


def heldout_callback(sessions: list[HeldOutSession], counts: dict, *, base: bool):
    """A trainer callback running :func:`measure` on the starting model as training begins (with
    ``base``) and on the trained model as it ends; :meth:`results` is the manifest's ``heldout``.
    Each pass's ``mean_loss`` is logged as the trainer's ``eval_loss`` (its step in the eval
    curve): it stands in for the trainer's evaluation of the same examples (see
    :func:`parrot.train.trainer.train_and_save`).

    The starting model's pass goes into the trainer's log history, so a run resumed from a
    checkpoint reuses it; a checkpoint without it leaves it unknown (None)."""
    from transformers import TrainerCallback

    class HeldOutPass(TrainerCallback):
        heldout_pass = True

        def __init__(self):
            self.base: dict | None = None
            self.trained: dict | None = None

        def on_train_begin(self, args, state, control, model=None, **kw):
            if not base:
                return
            recorded = [h[BASE_KEY] for h in state.log_history if BASE_KEY in h]
            if recorded:
                self.base = recorded[-1]
            elif state.global_step == 0:
                self.base = measure(model, sessions)
                state.log_history.append({BASE_KEY: self.base, "eval_loss": self.base["mean_loss"], "step": 0})
                log.info("held-out loss of the untrained model: %.4f", self.base["mean_loss"])
            else:
                log.warning(
                    "eval_base: the checkpoint resumed from (step %d) holds no held-out pass of the "
                    "untrained model, and its weights are no longer the starting model's: not measured",
                    state.global_step,
                )

        def on_train_end(self, args, state, control, model=None, **kw):
            self.trained = measure(model, sessions)
            state.log_history.append({"eval_loss": self.trained["mean_loss"], "step": state.global_step})

        def results(self) -> dict:
            return {"rule": STOP_RULE, "sessions": len(sessions), **counts, "trained": self.trained, "base": self.base}

    return HeldOutPass()


def stop_scores(sessions: list[list[list[bool]]]) -> dict:
    """Precision, recall and F1 of "stops here" over every scored turn of ``sessions`` (each a
    list of ``[stops, real]``): precision = right stops / the simulator's stops (None without
    any), recall = right stops / the real users' stops (None without any), F1 = 2 tp / (2 tp + fp
    + fn) (0 when it never stops where a user did; None with no stop on either side).

    >>> stop_scores([[[False, False], [True, True]], [[True, False], [False, True]]])
    {'precision': 0.5, 'recall': 0.5, 'f1': 0.5, 'turns': 4, 'stops': 2}
    >>> stop_scores([[[False, False], [False, True]]])["f1"], stop_scores([[[False, False]]])["f1"]
    (0.0, None)
    """
    pairs = [p for s in sessions for p in s]
    tp = sum(1 for stops, real in pairs if stops and real)
    fp = sum(1 for stops, real in pairs if stops and not real)
    fn = sum(1 for stops, real in pairs if real and not stops)
    return {
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        "turns": len(pairs),
        "stops": tp + fn,
    }
