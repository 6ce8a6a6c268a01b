"""What the simulator's guardrails cost (issue 27): extra simulator calls, and the time they take,
against the same run with the guardrails off, measured in the same process.

    .venv/bin/python benchmarks/guardrails_cost.py                       # prompted SmolLM2 asker
    .venv/bin/python benchmarks/guardrails_cost.py --asker gguf:runs/demo/models/ask --asker-mode trained

Both runs are ``parrot synthesize`` with the same real ShareGPT seed questions (the embedded data),
the same run seed and SmolLM2 (llama.cpp) answering: *off* accepts the stop marker at once and
ends a session at its first degenerate question (``min_turns=1 max_redraws=0
min_question_words=1 max_question_words=0``); *on* is the defaults with ``--min-turns``. It prints,
for each: sessions, answers (turns) per session, simulator calls, simulator calls per question it
got in, redraws by reason, end reasons and seconds; then the ratios on/off of simulator calls per
question and of seconds per answer. A redraw is one more simulator call; the longer sessions are
more answers, which is what the guardrails are for, so the cost is per question and per answer.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from parrot.core.config import build_config
from parrot.core.manifest import read_manifest
from parrot.synthesize.stage import SynthesizeConfig, synthesize

OFF = {"min_turns": 1, "max_redraws": 0, "min_question_words": 1, "max_question_words": 0}


def real_seeds(path: Path, n: int, max_chars: int = 300) -> Path:
    """The first ``n`` short first questions of the embedded ShareGPT data, as a Dialogue file."""
    from parrot.prepare.sources import SourceStats, read_source

    with path.open("w", encoding="utf-8") as fh:
        kept = 0
        for raw in read_source("sharegpt", SourceStats()):
            turns = raw.record.get("conversations") or [] if isinstance(raw.record, dict) else []
            first = next((str(t.get("value", "")) for t in turns if t.get("from") == "human"), "").strip()
            if first and len(first) <= max_chars:
                msgs = [{"role": "user", "content": first}, {"role": "assistant", "content": "-"}]
                fh.write(json.dumps({"id": f"sharegpt-{kept}", "messages": msgs}) + "\n")
                kept += 1
                if kept == n:
                    break
    return path


def run(folder: Path, name: str, seeds: Path, args, guardrails: dict) -> dict:
    out = folder / f"{name}.jsonl"
    settings = {
        "output": str(out),
        "seeds": str(seeds),
        "num_sessions": args.sessions,
        "max_turns": args.max_turns,
        "asker_mode": args.asker_mode,
        "asker": {"spec": args.asker, "max_tokens": 40, "slots": args.slots},
        "assistant": {"spec": "smollm2", "max_tokens": 64, "slots": args.slots},
        **guardrails,
    }
    t0 = time.perf_counter()
    synthesize(build_config(SynthesizeConfig, settings))
    seconds = time.perf_counter() - t0
    man = read_manifest(out)
    counts = man["counts"]
    records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    asked = sum(sum(m["role"] == "user" for m in r["messages"]) - 1 for r in records)  # the seed is real
    return {
        "sessions": counts["sessions"],
        "turns": counts["turns"],
        "asker_calls": man["usage"]["asker"]["requests"],
        "questions_in": asked,
        "redraws": {k.removeprefix("redraw:"): v for k, v in counts.items() if k.startswith("redraw:")},
        "ends": dict(Counter(r["meta"]["end_reason"] for r in records)),
        "banned_at_sampling": man["guardrails"]["stop_banned_at_sampling"],
        "seconds": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--asker", default="smollm2", help="the simulator's spec (default: SmolLM2 served by llama.cpp)")
    ap.add_argument("--asker-mode", default="prompted", choices=["prompted", "trained"])
    ap.add_argument("--sessions", type=int, default=12)
    ap.add_argument("--max-turns", type=int, default=4)
    ap.add_argument("--min-turns", type=int, default=3)
    ap.add_argument("--slots", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        seeds = real_seeds(folder / "seeds.jsonl", args.sessions)
        results = {
            "off": run(folder, "off", seeds, args, OFF),
            "on": run(folder, "on", seeds, args, {"min_turns": args.min_turns}),
        }
    print(f"{args.sessions} sessions of at most {args.max_turns} answers, asker {args.asker} ({args.asker_mode})")
    print(f"{'':4} {'turns/session':>13} {'asker calls':>11} {'calls/question':>14} {'s/answer':>8}  redraws; ends")
    per_q, per_answer = {}, {}
    for name, r in results.items():
        per_q[name] = r["asker_calls"] / max(1, r["questions_in"])
        per_answer[name] = r["seconds"] / max(1, r["turns"])
        print(
            f"{name:4} {r['turns'] / max(1, r['sessions']):13.2f} {r['asker_calls']:11d} {per_q[name]:14.2f} "
            f"{per_answer[name]:8.2f}  {r['redraws'] or '-'}; {r['ends']}"
        )
    print(f"stop marker banned at sampling: {results['on']['banned_at_sampling']}")
    print(
        f"on/off: simulator calls per question {per_q['on'] / per_q['off']:.2f}x, "
        f"seconds per answer {per_answer['on'] / per_answer['off']:.2f}x, "
        f"answers {results['on']['turns']} vs {results['off']['turns']}"
    )


if __name__ == "__main__":
    main()
