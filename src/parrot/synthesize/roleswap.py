"""The user simulator's view of a conversation: the role swap.

TRL trains on assistant turns only, and every server completes assistant turns, so Parrot-Ask
sees a conversation with the roles swapped: the simulator's system prompt, a neutral opening
user turn, then each real *user* message as an ``assistant`` turn and each real *assistant*
message as a ``user`` turn. Predicting the next real question is then an ordinary assistant
completion, for training (assistant-only loss) and for inference (any backend).

>>> dialogue = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
>>> [m["role"] for m in to_simulator(dialogue, add_stop=True)]
['system', 'user', 'assistant', 'user', 'assistant']
>>> [m["content"] for m in to_simulator(dialogue, add_stop=True)][2:]
['Hi', 'Hello!', '<|end_of_session|>']
>>> [m["role"] for m in simulator_prompt(dialogue)]     # next completion = the next question
['system', 'user', 'assistant', 'user']

Decisions (documented in docs/training.md):

- An original ``system`` message is **dropped**: it is the assistant's instruction, which a real
  user never sees, so the simulator must not condition on it.
- The opening user turn is the text of ``prompts/ask_opening.txt``; a topic, when given, is
  appended to it as ``Topic: ...`` — in both views, so a dataset whose records carry a topic
  trains the simulator to follow one.
- With ``add_stop`` the simulator learns to end a session: after the real last answer (a
  ``user`` turn in this view) comes an ``assistant`` turn holding exactly :data:`STOP_MARKER`.
  A dialogue that ends with an unanswered question gets no stop turn (it was cut, not ended).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from parrot import ParrotError
from parrot.core.dialogue import check_dialogue, split_system

#: What the simulator says to end a session. Plain text (not a special token), so it survives
#: any tokenizer and any server that strips special tokens from completions.
STOP_MARKER = "<|end_of_session|>"

_SWAP = {"user": "assistant", "assistant": "user"}


def is_stop(text: str | None) -> bool:
    """True when a simulator completion ends the session (the marker appears anywhere in it:
    a partly trained simulator may say goodbye before the marker)."""
    return bool(text) and STOP_MARKER in text


@lru_cache(maxsize=None)
def _prompt_file(name: str) -> str:
    return resources.files("parrot.prompts").joinpath(name).read_text(encoding="utf-8").strip()


def load_ask_system_prompt() -> str:
    """The simulator's system prompt (``prompts/ask_system.txt``), with the stop marker filled in."""
    return _prompt_file("ask_system.txt").replace("{stop_marker}", STOP_MARKER)


def opening_turn(topic: str | None = None) -> str:
    """The neutral user turn that precedes the first real question; carries the topic if any."""
    text = _prompt_file("ask_opening.txt")
    if topic and topic.strip():
        text = f"{text}\nTopic: {topic.strip()}"
    return text


def _swapped(messages: list[dict], system_prompt: str | None, topic: str | None, where: str) -> list[dict]:
    _, turns = split_system(list(messages))
    if turns:
        check_dialogue({"messages": turns}, where)  # roles alternate, starting with user
    out = [
        {"role": "system", "content": load_ask_system_prompt() if system_prompt is None else system_prompt},
        {"role": "user", "content": opening_turn(topic)},
    ]
    out += [{"role": _SWAP[m["role"]], "content": m["content"]} for m in turns]
    return out


def to_simulator(
    messages: list[dict],
    *,
    system_prompt: str | None = None,
    add_stop: bool = False,
    topic: str | None = None,
    where: str = "dialogue",
) -> list[dict]:
    """The training view of a real dialogue: roles swapped, assistant turns = real user turns.

    ``messages`` is a Dialogue's message list (optional system first, then user/assistant
    alternating). Returns new dicts; the input is not modified.
    """
    out = _swapped(messages, system_prompt, topic, where)
    if add_stop and out[-1]["role"] == "user" and len(out) > 2:
        out.append({"role": "assistant", "content": STOP_MARKER})
    return out


def simulator_prompt(
    history: list[dict], *, system_prompt: str | None = None, topic: str | None = None, where: str = "history"
) -> list[dict]:
    """The inference view: a chat whose next assistant completion is the next user question.

    ``history`` is empty (ask the first question, optionally about ``topic``) or ends with an
    assistant answer. It is exactly a prefix of :func:`to_simulator` of the longer dialogue.
    """
    _, turns = split_system(list(history))
    if turns and turns[-1]["role"] != "assistant":
        raise ParrotError(
            f"{where}: the simulator asks after an assistant answer; the history "
            f"must be empty or end with an assistant message, found {turns[-1]['role']!r}"
        )
    return _swapped(history, system_prompt, topic, where)
