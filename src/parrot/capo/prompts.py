"""CaPO's prompt files and how they are filled in.

The prompts live in ``parrot/prompts/capo_*.txt``; ``prompt_dir`` (a config option) points at a
directory whose files of the same names replace them. A file starts with an optional block of
``#`` comment lines (dropped); ``{name}`` placeholders are filled in one pass, so braces inside
a question or an answer (code, JSON) are never touched.

>>> render("Q: {question} / {guess}", question="what is {x}?", guess="a set")
'Q: what is {x}? / a set'
"""

from __future__ import annotations

import re
from pathlib import Path

from parrot import ParrotError

PACKAGED = Path(__file__).resolve().parent.parent / "prompts"

# prompt name -> the placeholders it must contain
PROMPTS = {
    "capo_ignore": ("question",),
    "capo_hallucinate_guess": ("question",),
    "capo_hallucinate_answer": ("question", "guess"),
    "capo_misunderstand": ("question", "span"),
    "capo_verify": ("history", "question"),
}

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def load_prompt(name: str, prompt_dir: str | Path | None = None) -> str:
    """The template ``name`` (``"capo_ignore"``), from ``prompt_dir`` if it has the file."""
    path = PACKAGED / f"{name}.txt"
    if prompt_dir is not None and (Path(prompt_dir) / f"{name}.txt").is_file():
        path = Path(prompt_dir) / f"{name}.txt"
    if not path.is_file():
        raise ParrotError(f"{path}: prompt file not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    text = "\n".join(lines).strip()
    missing = [p for p in PROMPTS.get(name, ()) if "{" + p + "}" not in text]
    if missing:
        raise ParrotError(
            f"{path}: expected the placeholder(s) {', '.join('{' + m + '}' for m in missing)}, found none"
        )
    return text


def render(template: str, **values: str) -> str:
    """Fill ``{name}`` placeholders from ``values``; unknown ``{...}`` stay as they are."""
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template)


class Prompts:
    """All CaPO templates, loaded once (so a bad override fails before any model call)."""

    def __init__(self, prompt_dir: str | Path | None = None, names: tuple[str, ...] = tuple(PROMPTS)):
        self.templates = {n: load_prompt(n, prompt_dir) for n in names}

    def user(self, name: str, **values: str) -> list[dict]:
        """One user message holding the rendered template ``name``."""
        return [{"role": "user", "content": render(self.templates[name], **values)}]
