"""Evaluation: MT-Bench (FastChat-compatible) and MT-Bench++ (8 turns), graded turn by turn.

    bench.py    benchmark data: questions, GPT-4 reference answers, judge prompts, MT-Bench++
    answer.py   ``parrot eval answer``: the model under test answers turn by turn
    render.py   judge prompts: FastChat's exact rendering, the N-turn prompt, the rating parse
    judge.py    ``parrot eval judge``: one judgment per (answer, turn), FastChat's schema
    report.py   ``parrot eval report``: means per turn / category / overall, runs, figure

All files are FastChat's JSONL schemas, so FastChat's own ``show_result.py`` reads them too.
"""
