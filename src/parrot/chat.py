"""``parrot chat --model SPEC``: talk to any backend from the terminal.

Handy for trying a model (or a trained user simulator) by hand. The whole conversation is sent
every turn, with the ``--system`` prompt first. Input:

- a line ending with ``\\`` continues on the next line (the lines are joined with newlines);
- ``/reset`` starts the conversation again (the system prompt stays), ``/exit`` or Ctrl-D quits,
  ``/help`` lists the commands.

A turn the model fails to answer (after the backend's retries) is dropped from the history,
so you can simply send it again.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from parrot.backends import BackendConfig, SamplingParams, load_backend
from parrot.backends.base import Backend
from parrot.core.config import opt

HELP = "commands: /reset (forget the conversation), /exit (quit), /help; end a line with \\ to continue it"


@dataclass
class ChatConfig:
    model: BackendConfig = opt(BackendConfig, "the model to talk to (spec, e.g. smollm2, hf:PATH, openai:MODEL)")
    system: str | None = opt(None, "system prompt sent first in every request")
    temperature: float = opt(0.7, "sampling temperature", min=0)
    top_p: float = opt(1.0, "nucleus sampling top_p", above=0, max=1)
    max_tokens: int = opt(512, "maximum tokens per reply", min=1)
    seed: int | None = opt(None, "sampling seed", min=0, max=2**32 - 1)

    STAGE: ClassVar[str] = "chat"


def read_message(read: Callable[[str], str]) -> str:
    """One user message: lines ending in a backslash continue on the next line.

    Raises EOFError at end of input.
    """
    lines = []
    prompt = "you> "
    while True:
        line = read(prompt)
        if line.endswith("\\"):
            lines.append(line[:-1])
            prompt = "...  "
            continue
        lines.append(line)
        return "\n".join(lines)


def chat_session(
    backend: Backend,
    params: SamplingParams,
    system: str | None = None,
    *,
    read: Callable[[str], str] = input,
    write: Callable[[str], None] = print,
) -> list[dict]:
    """Run the read-reply loop until ``/exit`` or end of input; return the final history."""
    base = [{"role": "system", "content": system}] if system else []
    history = list(base)
    write(f"chatting with {backend.config.spec}. {HELP}")
    while True:
        try:
            text = read_message(read)
        except (EOFError, KeyboardInterrupt):
            write("")
            return history
        command = text.strip()
        if not command:
            continue
        if command in ("/exit", "/quit"):
            return history
        if command == "/reset":
            history = list(base)
            write("(conversation reset)")
            continue
        if command == "/help":
            write(HELP)
            continue
        history.append({"role": "user", "content": text})
        [reply] = backend.generate([history], params)
        if not reply.ok:
            history.pop()
            write(f"(no reply: {reply.error}; send the message again to retry)")
            continue
        history.append({"role": "assistant", "content": reply.text})
        write(f"{backend.model_name}> {reply.text}")


def chat(config: ChatConfig) -> None:
    params = config.model.sampling(
        SamplingParams(
            temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens, seed=config.seed
        )
    )
    with load_backend(config.model) as backend:
        chat_session(backend, params, config.system, read=_terminal_input, write=lambda s: print(s, flush=True))


def _terminal_input(prompt: str) -> str:
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        return input(prompt)
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")
