"""Benches whose instructions a program checks, and the responses to them, read as they are.

Three bench formats, told apart by their fields (a ``.csv`` file is Multi-IF's):

- **IFEval** (one turn): ``{"key", "prompt", "instruction_id_list", "kwargs"}``. Keys whose value is
  null are dropped from ``kwargs`` (the Hugging Face copy fills every key with null).
- **Multi-IF** (JSONL or CSV): ``key``, and ``turn_k_prompt`` (a JSON message ``{"role": "user",
  "content"}``), ``turn_k_instruction_id_list`` and ``turn_k_kwargs`` (a list of JSON strings) for
  k = 1..3, each a JSON string as the dataset stores them (parsed values are read too). Its lists are
  cumulative: turn k lists every instruction active at turn k. An empty ``turn_k_prompt`` ends the
  conversation. An instruction's ``since`` is the first turn from which it was active with the same
  kwargs without a break.
- **Parrot's own** (``verified-mt``, :mod:`parrot.evaluate.verified_set`): FastChat's question schema
  (``question_id``, ``category``, ``turns``) plus ``instructions``, one list per turn of the
  instructions active at that turn, each ``{"id", "kwargs", "since"}``. ``parrot eval answer`` reads
  it as any FastChat question file.

Every bench becomes a list of :class:`Item`: its key, and per turn the user message and the active
instructions. ``parrot eval answer`` answers any of them (:func:`as_questions`).

Responses, told apart the same way:

- Parrot's answer files (FastChat's ``question_id`` and ``choices[0].turns``), matched by id; the
  model is the record's ``model_id``;
- IFEval's ``{"prompt", "response"}`` lines, matched by prompt (one-turn benches); the model is the
  file's name.

Bad input is an error naming the file, the line and the id: an unknown instruction id, a missing or
extra kwarg (:func:`parrot.evaluate.instructions.check_kwargs`), a response that matches no item.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from parrot import ParrotError
from parrot.core.jsonl import read_jsonl
from parrot.evaluate.instructions import check_kwargs

log = logging.getLogger("parrot.evaluate")

#: The packaged multi-turn set (``--bench verified-mt``).
VERIFIED_MT = "verified-mt"
MULTI_IF_TURNS = 3


def verified_mt_path() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "verified_mt.jsonl"


@dataclass(frozen=True)
class Active:
    """One instruction in force at a turn: its IFEval id, its kwargs, the turn that gave it."""

    id: str
    kwargs: dict
    since: int


@dataclass(frozen=True)
class Turn:
    prompt: str
    instructions: tuple[Active, ...]


@dataclass(frozen=True)
class Item:
    key: str
    turns: tuple[Turn, ...]
    where: str  # FILE:LINE, for errors


def bench_path(bench: str) -> Path:
    return verified_mt_path() if bench.lower() in (VERIFIED_MT, "verified_mt") else Path(bench)


def is_verified_bench(bench: str) -> bool:
    """Whether ``bench`` names a bench with checkable instructions (and not a plain question file)."""
    path = bench_path(bench)
    if path.suffix.lower() == ".csv":
        return True
    if not path.is_file():
        return False
    for _, rec in read_jsonl(path):
        return _format(rec) is not None
    return False


def _format(rec: dict) -> str | None:
    if "turn_1_prompt" in rec:
        return "multi-if"
    if "instruction_id_list" in rec:
        return "ifeval"
    if "instructions" in rec and "turns" in rec:
        return "parrot"
    return None


def read_bench(bench: str) -> list[Item]:
    """The items of ``bench`` (``verified-mt`` or a FILE in one of the three formats)."""
    path = bench_path(bench)
    if not path.is_file():
        raise ParrotError(f"--bench {bench!r}: expected verified-mt or a bench file (IFEval, Multi-IF), found no file")
    rows = _csv_rows(path) if path.suffix.lower() == ".csv" else read_jsonl(path)
    items, seen = [], {}
    for lineno, rec in rows:
        where = f"{path}:{lineno}"
        kind = _format(rec)
        if kind is None:
            raise ParrotError(
                f"{where}: expected IFEval (key, prompt, instruction_id_list, kwargs), Multi-IF (turn_1_prompt, ...) "
                f"or Parrot's (question_id, turns, instructions) fields, found keys {sorted(rec)}"
            )
        item = {"ifeval": _ifeval_item, "multi-if": _multi_if_item, "parrot": _parrot_item}[kind](rec, where)
        if item.key in seen:
            raise ParrotError(f"{where}: id {item.key!r} appears twice (first at line {seen[item.key]})")
        seen[item.key] = lineno
        items.append(item)
    if not items:
        raise ParrotError(f"{path}: no items")
    return items


def _csv_rows(path: Path):
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            for lineno, row in enumerate(csv.DictReader(fh), 2):
                yield lineno, {k: v for k, v in row.items() if k is not None}
    except UnicodeDecodeError:
        raise ParrotError(f"{path}: not UTF-8; CSV files must be UTF-8") from None


def _json_field(value, what: str, where: str):
    """A field the datasets store as a JSON string, or already parsed."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise ParrotError(f"{where}: {what}: invalid JSON ({e.msg}); found {value[:80]!r}") from None
    return value


def _instructions(ids, kwargs, where: str, key: str) -> list[tuple[str, dict]]:
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ParrotError(f"{where}: id {key!r}: expected instruction_id_list as a list of ids, found {ids!r:.80}")
    if kwargs is None:
        kwargs = [{}] * len(ids)
    if not isinstance(kwargs, list) or len(kwargs) != len(ids):
        raise ParrotError(
            f"{where}: id {key!r}: expected kwargs as a list of {len(ids)} objects (one per instruction), "
            f"found {kwargs!r:.80}"
        )
    out = []
    for iid, kw in zip(ids, kwargs):
        kw = _json_field(kw, f"kwargs of {iid}", where) if isinstance(kw, str) else kw
        try:
            out.append((iid, check_kwargs(iid, kw)))
        except ValueError as e:
            raise ParrotError(f"{where}: id {key!r}: {e}") from None
    return out


def _ifeval_item(rec: dict, where: str) -> Item:
    key = str(rec.get("key", ""))
    prompt = rec.get("prompt")
    if not key or not isinstance(prompt, str) or not prompt.strip():
        raise ParrotError(f"{where}: expected a 'key' and a non-empty 'prompt', found {rec!r:.100}")
    active = _instructions(rec.get("instruction_id_list"), rec.get("kwargs"), where, key)
    return Item(key, (Turn(prompt, tuple(Active(i, kw, 1) for i, kw in active)),), where)


def _multi_if_item(rec: dict, where: str) -> Item:
    key = str(rec.get("key", ""))
    if not key:
        raise ParrotError(f"{where}: expected a 'key', found keys {sorted(rec)}")
    turns: list[Turn] = []
    for k in range(1, MULTI_IF_TURNS + 1):
        raw = rec.get(f"turn_{k}_prompt")
        if raw in (None, ""):
            break
        message = _json_field(raw, f"turn_{k}_prompt", where)
        content = message.get("content") if isinstance(message, dict) else message
        if not isinstance(content, str) or not content.strip():
            raise ParrotError(f"{where}: id {key!r}: turn_{k}_prompt: expected a user message, found {raw!r:.80}")
        ids = _json_field(rec.get(f"turn_{k}_instruction_id_list", "[]"), f"turn_{k}_instruction_id_list", where)
        kwargs = _json_field(rec.get(f"turn_{k}_kwargs", "[]"), f"turn_{k}_kwargs", where)
        before = {(a.id, _frozen(a.kwargs)): a.since for a in turns[-1].instructions} if turns else {}
        active = _instructions(ids, kwargs, f"{where} (turn {k})", key)
        turns.append(Turn(content, tuple(Active(i, kw, before.get((i, _frozen(kw)), k)) for i, kw in active)))
    if not turns:
        raise ParrotError(f"{where}: id {key!r}: turn_1_prompt is empty")
    return Item(key, tuple(turns), where)


def _parrot_item(rec: dict, where: str) -> Item:
    key = str(rec.get("question_id", ""))
    turns, lists = rec.get("turns"), rec.get("instructions")
    if not key or not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t for t in turns):
        raise ParrotError(f"{where}: expected 'question_id' and 'turns' as non-empty strings, found {rec!r:.100}")
    if not isinstance(lists, list) or len(lists) != len(turns):
        raise ParrotError(f"{where}: id {key!r}: expected 'instructions' as one list per turn ({len(turns)})")
    out = []
    for k, (text, active) in enumerate(zip(turns, lists), 1):
        if not isinstance(active, list) or not all(isinstance(a, dict) and "id" in a for a in active):
            raise ParrotError(f"{where}: id {key!r}: turn {k}: expected a list of {{id, kwargs, since}}")
        checked = _instructions([a["id"] for a in active], [a.get("kwargs") or {} for a in active], where, key)
        since = [a.get("since", k) for a in active]
        if not all(isinstance(s, int) and 1 <= s <= k for s in since):
            raise ParrotError(f"{where}: id {key!r}: turn {k}: 'since' must be a turn from 1 to {k}, found {since}")
        out.append(Turn(text, tuple(Active(i, kw, s) for (i, kw), s in zip(checked, since))))
    return Item(key, tuple(out), where)


def _frozen(kwargs: dict) -> str:
    return json.dumps(kwargs, sort_keys=True)


def as_questions(items: list[Item], category: str = "verified") -> list[dict]:
    """The items as FastChat questions, for ``parrot eval answer``."""
    return [{"question_id": it.key, "category": category, "turns": [t.prompt for t in it.turns]} for it in items]


# ---------------------------------------------------------------- responses


@dataclass(frozen=True)
class Responses:
    """One model's responses to a bench: ``turns[key]`` lists its answers, turn by turn."""

    model: str
    turns: dict[str, list[str]]
    source: Path


def read_responses(path: str | Path, items: list[Item]) -> list[Responses]:
    """The responses in ``path``, by model. A line that matches no item of the bench is an error."""
    path = Path(path)
    by_key = {it.key: it for it in items}
    by_prompt = {it.turns[0].prompt: it.key for it in items if len(it.turns) == 1}
    models: dict[str, dict[str, list[str]]] = {}
    seen: dict[tuple[str, str], int] = {}
    for lineno, rec in read_jsonl(path):
        where = f"{path}:{lineno}"
        if "choices" in rec and "question_id" in rec:
            key = str(rec["question_id"])
            model = str(rec.get("model_id") or path.stem)
            try:
                answers = rec["choices"][0]["turns"]
            except (KeyError, IndexError, TypeError):
                raise ParrotError(f"{where}: id {key!r}: expected choices[0].turns, found {rec['choices']!r:.80}")
            if key not in by_key:
                raise ParrotError(f"{where}: id {key!r} matches no item of the bench")
        elif "prompt" in rec and "response" in rec:
            key = by_prompt.get(rec["prompt"])
            model = path.stem
            if key is None:
                raise ParrotError(f"{where}: prompt {rec['prompt'][:60]!r} matches no one-turn item of the bench")
            answers = [rec["response"]]
        else:
            raise ParrotError(
                f"{where}: expected Parrot's answers (question_id, choices[0].turns) or IFEval's "
                f"(prompt, response), found keys {sorted(rec)}"
            )
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise ParrotError(f"{where}: id {key!r}: expected the responses as strings, found {answers!r:.80}")
        if len(answers) > len(by_key[key].turns):
            raise ParrotError(f"{where}: id {key!r}: {len(answers)} responses to {len(by_key[key].turns)} turns")
        if (model, key) in seen:
            raise ParrotError(f"{where}: id {key!r} answered twice by {model} (first at line {seen[model, key]})")
        seen[model, key] = lineno
        models.setdefault(model, {})[key] = answers
    if not models:  # every generation of that model failed: nothing to check, which is not an error here
        log.warning("%s: holds no responses (its model answered nothing): nothing of it to verify", path)
    return [Responses(m, t, path) for m, t in models.items()]
