"""Optional LLM check of context dependence (``--judge SPEC``), reported beside the detector.

A sample of follow-up questions (with up to four earlier messages) goes to a judge model with
the prompt ``prompts/stats_context_judge.txt``; the verdict is parsed from ``[[dependent]]`` or
``[[self-contained]]``. Unparseable or failed replies are counted, not guessed.
"""

from __future__ import annotations

import asyncio
import re
from importlib import resources

from parrot.backends import BackendConfig, SamplingParams, load_backend

JUDGE_DEFAULTS = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=16)
_VERDICT = re.compile(r"\[\[\s*(dependent|self[- ]contained)\s*\]\]", re.I)


def judge_prompt() -> str:
    return resources.files("parrot.prompts").joinpath("stats_context_judge.txt").read_text(encoding="utf-8")


def render(item: dict, template: str) -> str:
    """Fill the judge prompt with a follow-up ``{"history": [messages], "question": str}``."""
    history = "\n".join(f"{m['role'].upper()}: {m['content']}" for m in item["history"]) or "(none)"
    values = {"{history}": history, "{question}": item["question"]}
    # One pass: a "{question}" written inside the history stays as written.
    return re.sub(r"\{history\}|\{question\}", lambda m: values[m.group(0)], template)


def parse_verdict(text: str | None) -> bool | None:
    """True for dependent, False for self-contained, None when the reply holds no verdict.

    >>> parse_verdict("[[Dependent]]"), parse_verdict("[[self-contained]]"), parse_verdict("maybe")
    (True, False, None)
    """
    if not text:
        return None
    m = _VERDICT.search(text)
    if not m:
        return None
    return m.group(1).lower() == "dependent"


def judge_context(items: list[dict], config: BackendConfig | str) -> dict:
    """Run the judge on ``items``; return its dependent share and agreement with the detector."""
    template = judge_prompt()
    convs = [[{"role": "user", "content": render(it, template)}] for it in items]
    with load_backend(config) as backend:
        params = backend.config.sampling(JUDGE_DEFAULTS)

        async def run_all():
            return await asyncio.gather(*(backend.agenerate([c], params) for c in convs))

        completions = [c[0] for c in asyncio.run(run_all())] if convs else []
        usage = backend.usage.to_dict()
        describe = backend.describe()
    verdicts = [parse_verdict(c.text) for c in completions]
    judged = [(v, it["detector"]) for v, it in zip(verdicts, items) if v is not None]
    return {
        "judge": describe,
        "questions": len(items),
        "judged": len(judged),
        "unparsed_or_failed": len(items) - len(judged),
        "dependent_share": sum(v for v, _ in judged) / len(judged) if judged else None,
        "agreement_with_detector": sum(v == d for v, d in judged) / len(judged) if judged else None,
        "usage": usage,
    }
