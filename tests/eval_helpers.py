"""Shared by the eval tests: FastChat's own llm_judge code, imported in-process, as the oracle."""

import importlib.util
import sys
import types
from pathlib import Path

from parrot.evaluate.bench import load_bench

# Text that would break a naive renderer: format braces, unicode, trailing blanks.
TRICKY = "Use {x} and {{y}} here — ünïcödé\n\n```python\nd = {'a': 1}\n```\n  "


def import_fastchat_common():
    """FastChat's llm_judge/common.py from nvidia-mtbench-evaluator, imported in-process.

    It imports ``anthropic`` at module level only for Claude judging; that package is not
    installed here, so a stub module stands in while it imports (nothing else is faked).
    """
    spec = importlib.util.find_spec("mtbench_evaluator")
    root = Path(list(spec.submodule_search_locations)[0]) / "fastchat"
    sys.path.insert(0, str(root))
    stubbed = "anthropic" not in sys.modules
    if stubbed:
        sys.modules["anthropic"] = types.ModuleType("anthropic")
    try:
        import fastchat.llm_judge.common as common
    finally:
        sys.path.remove(str(root))
        if stubbed:
            del sys.modules["anthropic"]
    return common


def fastchat_messages(fastchat, question, answer_turns, turn, ref_turns, judge_model="gpt-4"):
    """What FastChat's gen_judgment sends for ``turn`` (1 or 2) of ``question``.

    gen_judgment.py itself needs ``tenacity`` (absent), so its choice of judge is repeated here:
    math-like categories get the ``-math-`` prompt with the GPT-4 reference, turn 2 the
    ``-multi-turn`` one; create_conv_single and to_openai_api_messages are FastChat's own.
    """
    prompts = fastchat.load_judge_prompts(str(load_bench("mt-bench").data_dir / "judge_prompts.jsonl"))
    math = question["category"] in fastchat.NEED_REF_CATS
    name = ("single-math-v1" if math else "single-v1") + ("-multi-turn" if turn == 2 else "")
    judge = fastchat.Judge(judge_model, prompts[name], ref_based=math, multi_turn=turn == 2)
    answer = {"choices": [{"index": 0, "turns": answer_turns}]}
    ref = {"choices": [{"index": 0, "turns": ref_turns}]} if math else None
    conv, user_prompt = fastchat.create_conv_single(question, answer, judge, ref, multi_turn=turn == 2)
    return name, user_prompt, conv.to_openai_api_messages()
