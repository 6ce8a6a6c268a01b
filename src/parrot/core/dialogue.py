"""The Dialogue record, the contract between stages.

    {"id": str,
     "messages": [{"role": "system"|"user"|"assistant", "content": str}, ...],
     "meta": {...}}

After ``prepare`` the messages start with ``user`` (after an optional ``system``), alternate
user/assistant, and hold no empty message. TRL, LLaMA-Factory, axolotl and
``datasets.load_dataset("json")`` read the file as is.

A *turn* is a user message and the assistant's reply to it; a system message is no turn. A
conversation may end with a question not answered (yet): it is a turn asked, not a turn
answered. So there are two counts, and every stage uses one of these two functions:
:func:`asked_turns` (the user messages: what ``prepare``'s ``min_turns``/``max_turns``, ``stats``'
turns per session and CaPO's follow-ups count) and :func:`answered_turns` (the assistant replies:
what ``synthesize``'s ``max_turns`` and ``meta.turns`` and ``filter``'s ``min_turns`` count).
They differ only by a trailing unanswered question.

>>> d = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
>>> check_dialogue(d, "example")["id"] == dialogue_id(d["messages"])
True
>>> asked_turns(d["messages"]), answered_turns(d["messages"])
(1, 1)
>>> asking = d["messages"] + [{"role": "user", "content": "How are you?"}]   # not answered yet
>>> asked_turns(asking), answered_turns(asking)
(2, 1)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from parrot import ParrotError
from parrot.core.jsonl import read_jsonl

ROLES = ("system", "user", "assistant")


def dialogue_id(messages: list[dict]) -> str:
    """A stable id from the content: the first 16 hex digits of sha256 over the messages."""
    blob = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def check_dialogue(record: dict, where: str, *, require_reply: bool = False) -> dict:
    """Validate a Dialogue record; return it with an ``id`` (and ``meta``) filled in.

    Raises ParrotError naming ``where`` (``"file.jsonl:12"``) with what was expected and found.
    ``require_reply`` demands the last message be from the assistant.
    """
    msgs = record.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ParrotError(f"{where}: expected a non-empty 'messages' list, found {type(msgs).__name__}")
    expect = "user"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise ParrotError(f"{where}: message {i}: expected an object, found {type(m).__name__}")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise ParrotError(f"{where}: message {i}: unknown role {role!r} (expected one of {', '.join(ROLES)})")
        if not isinstance(content, str):
            raise ParrotError(f"{where}: message {i}: content must be a string, found {type(content).__name__}")
        if role == "system":
            if i != 0:
                raise ParrotError(f"{where}: message {i}: a system message may only come first")
            continue
        if role != expect:
            raise ParrotError(
                f"{where}: message {i}: expected role {expect!r} (roles must alternate, "
                f"starting with 'user'), found {role!r}"
            )
        if not content.strip():
            raise ParrotError(f"{where}: message {i}: empty {role} message")
        expect = "assistant" if role == "user" else "user"
    if require_reply and msgs[-1]["role"] != "assistant":
        raise ParrotError(f"{where}: the last message must be the assistant's, found {msgs[-1]['role']!r}")
    if not isinstance(record.get("id"), str) or not record["id"]:
        record["id"] = dialogue_id(msgs)
    if not isinstance(record.get("meta"), dict):
        record["meta"] = {}
    return record


def read_dialogues(
    path: str | Path,
    *,
    require_reply: bool = False,
    on_error: str = "raise",
    counts: dict | None = None,
    bad_bytes: str | None = None,
) -> Iterator[dict]:
    """Stream validated Dialogue records from a JSONL file.

    With ``on_error="skip"`` invalid records are counted in ``counts["invalid_record"]``;
    ``bad_bytes`` is :func:`~parrot.core.jsonl.read_jsonl`'s.
    """
    for lineno, rec in read_jsonl(path, on_error=on_error, counts=counts, bad_bytes=bad_bytes):
        try:
            yield check_dialogue(rec, f"{path}:{lineno}", require_reply=require_reply)
        except ParrotError:
            if on_error != "skip":
                raise
            if counts is not None:
                counts["invalid_record"] = counts.get("invalid_record", 0) + 1


def split_system(messages: list[dict]) -> tuple[dict | None, list[dict]]:
    """``(system message or None, the rest)``."""
    if messages and messages[0]["role"] == "system":
        return messages[0], messages[1:]
    return None, messages


def asked_turns(messages: list[dict]) -> int:
    """Turns asked: the user messages, a trailing question not answered (yet) included."""
    return sum(1 for m in messages if m["role"] == "user")


def answered_turns(messages: list[dict]) -> int:
    """Turns answered: the assistant replies (a trailing unanswered question is not counted)."""
    return sum(1 for m in messages if m["role"] == "assistant")


def user_questions(dialogue: dict) -> list[str]:
    return [m["content"] for m in dialogue["messages"] if m["role"] == "user"]
