"""Judge prompts: which one grades a turn, how it is rendered, and how the rating is read back.

Which prompt grades turn k of an N-turn question (``category`` in NEED_REF_CATS and a
reference answer known → the reference variant):

===========================  =========================================  ====================
turn                         prompt                                     source
===========================  =========================================  ====================
k = 1                        ``single-v1`` / ``single-math-v1``         FastChat's data file
k = 2 of a 2-turn question   ``single-v1-multi-turn`` / ``-math-``      FastChat's data file
k >= 2 of a longer question  ``parrot-nturn-v1`` / ``parrot-nturn-math-v1``  prompts/eval_judge_nturn*.txt
===========================  =========================================  ====================

So MT-Bench is judged exactly as FastChat judges it (same prompts, same rendering, the same
two chat messages: the prompt's system prompt, then the filled-in template), and an N-turn
question uses one prompt for all its later turns: the judge sees the conversation up to turn k
and grades the k-th answer.

>>> p = nturn_prompts()["parrot-nturn-v1"]
>>> system, user = render_nturn(p, ["Name a fruit.", "Why that one?"], ["Apple.", "It is sweet."], 2)
>>> print(user)                                                     # doctest: +NORMALIZE_WHITESPACE
<|The Start of Assistant A's Conversation with User|>
<BLANKLINE>
### User:
Name a fruit.
<BLANKLINE>
### Assistant A:
Apple.
<BLANKLINE>
### User:
Why that one?
<BLANKLINE>
### Assistant A:
It is sweet.
<BLANKLINE>
<|The End of Assistant A's Conversation with User|>
>>> parse_rating("Fine work. Rating: [[7]]"), parse_rating("[6.5]"), parse_rating("no idea")
(7, 6.5, -1)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from parrot import ParrotError
from parrot.evaluate.bench import NEED_REF_CATS

NTURN_PROMPT_FILES = {"parrot-nturn-v1": "eval_judge_nturn.txt", "parrot-nturn-math-v1": "eval_judge_nturn_ref.txt"}
RATING_FORMAT = "[[rating]]"

# FastChat's patterns: "[[7]]" first, then "[7]"; the first match wins, no range check.
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_FALLBACK = re.compile(r"\[(\d+\.?\d*)\]")


@dataclass(frozen=True)
class JudgePrompt:
    """One judge prompt. FastChat's come from ``judge_prompts.jsonl``; ours (``turn_block`` set)
    from ``prompts/eval_judge_nturn*.txt``."""

    name: str
    system: str
    template: str
    output_format: str = RATING_FORMAT
    turn_block: str | None = None

    @classmethod
    def from_fastchat(cls, rec: dict) -> "JudgePrompt":
        return cls(rec["name"], rec["system_prompt"], rec["prompt_template"], rec["output_format"])


def _read_sections(path: Path) -> dict[str, str]:
    """``<<<name>>>`` sections of a prompt file; each section's surrounding newlines stripped."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.fullmatch(r"<<<(\w+)>>>", line.strip())
        if m:
            current = m.group(1)
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {k: "\n".join(v).strip("\n") for k, v in sections.items()}


@lru_cache(maxsize=None)
def nturn_prompts() -> dict[str, JudgePrompt]:
    """The project's N-turn judge prompts by name."""
    root = Path(__file__).resolve().parent.parent / "prompts"
    out = {}
    for name, filename in NTURN_PROMPT_FILES.items():
        path = root / filename
        sec = _read_sections(path)
        missing = {"system", "user", "turn"} - set(sec)
        if missing:
            raise ParrotError(f"{path}: prompt file lacks section(s) {', '.join(sorted(missing))}")
        out[name] = JudgePrompt(name, sec["system"], sec["user"], RATING_FORMAT, sec["turn"])
    return out


def prompt_name(category: str, turn: int, num_turns: int, has_reference: bool) -> str:
    """The name of the prompt that grades ``turn`` (1-based) of a ``num_turns`` question."""
    if category in NEED_REF_CATS and has_reference:
        if turn == 1:
            return "single-math-v1"
        return "single-math-v1-multi-turn" if num_turns == 2 else "parrot-nturn-math-v1"
    if turn == 1:
        return "single-v1"
    return "single-v1-multi-turn" if num_turns == 2 else "parrot-nturn-v1"


def render_fastchat(
    prompt: JudgePrompt, questions: list[str], answers: list[str], references: list[str] | None, multi_turn: bool
) -> tuple[str, str]:
    """FastChat's ``create_conv_single``: (system prompt, filled-in template).

    ``references`` are the reference answers to turns 1 and 2 (only read by math prompts).
    """
    kwargs = {}
    if references is not None:
        kwargs["ref_answer_1"] = references[0]
        if multi_turn:
            kwargs["ref_answer_2"] = references[1]
    if multi_turn:
        user = prompt.template.format(
            question_1=questions[0], question_2=questions[1], answer_1=answers[0], answer_2=answers[1], **kwargs
        )
    else:
        user = prompt.template.format(question=questions[0], answer=answers[0], **kwargs)
    return prompt.system, user


def render_nturn(
    prompt: JudgePrompt, questions: list[str], answers: list[str], turn: int, reference: str | None = None
) -> tuple[str, str]:
    """The N-turn prompt for ``turn`` (1-based): the conversation up to it, one block per turn."""
    blocks = [prompt.turn_block.format(question=q, answer=a) for q, a in zip(questions[:turn], answers[:turn])]
    fields = {"turn": turn, "conversation": "\n\n".join(blocks), "reference": reference or ""}
    return prompt.system.format(**fields), prompt.template.format(**fields)


def render_judge_prompt(
    prompts: dict[str, JudgePrompt], question: dict, answers: list[str], turn: int, references: list | None
) -> tuple[str, str, str]:
    """(prompt name, system, user) grading ``answers[turn-1]`` of ``question``.

    ``references`` holds the reference answer per turn (None where unknown).
    """
    turns = question["turns"]
    n = len(turns)
    refs = list(references or [])
    refs += [None] * (n - len(refs))
    # FastChat's math prompts need the references of every turn they show.
    needed = refs[:turn] if turn == 1 or n == 2 else refs[turn - 1 : turn]
    name = prompt_name(question.get("category", ""), turn, n, all(r is not None for r in needed))
    if name not in prompts:
        raise ParrotError(f"judge prompt {name!r} not found (known: {', '.join(sorted(prompts))})")
    prompt = prompts[name]
    if prompt.turn_block is not None:
        system, user = render_nturn(prompt, turns, answers, turn, refs[turn - 1])
    else:
        ref = refs[:2] if "math" in name else None
        system, user = render_fastchat(prompt, turns, answers, ref, multi_turn=turn == 2)
    return name, system, user


def judge_messages(system: str, user: str) -> list[dict]:
    """The chat sent to the judge: FastChat's ``to_openai_api_messages()`` of its template."""
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": user}]


def parse_rating(text: str | None) -> int | float:
    """FastChat's parse: the first ``[[x]]``, else the first ``[x]``; -1 when neither is there."""
    if not text:
        return -1
    m = _RATING.search(text) or _RATING_FALLBACK.search(text)
    if not m:
        return -1
    s = m.group(1)
    return float(s) if "." in s else int(s)
