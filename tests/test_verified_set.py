"""The verified multi-turn set (``parrot/data/verified_mt.jsonl``) and its seeded generator.

The file must be exactly what ``python -m parrot.evaluate.verified_set`` writes, and hold to its
contract: FastChat's question schema, 3-8 turns, every IFEval id used, kwargs the verifier accepts,
no conflicting or duplicate instructions on a turn, ``since``/``persist`` telling the truth, and none
of MT-Bench's text. The verifier (``parrot.evaluate.instructions``) is the judge of ids, kwargs and
conflicts; it is imported without a skip on purpose.
"""

import json
from collections import Counter
from importlib.resources import files

import pytest

from parrot.evaluate import verified_set
from parrot.evaluate.bench import load_bench
from parrot.evaluate.instructions import INSTRUCTION_IDS, check_kwargs, conflicting

DATA = files("parrot") / "data" / "verified_mt.jsonl"
PERSIST_MARKERS = ("from now on", "rest of our conversation", "until i say otherwise", "from here on")


@pytest.fixture(scope="module")
def records():
    with DATA.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_generator_reproduces_the_committed_file(tmp_path):
    out = tmp_path / "v.jsonl"
    verified_set.main(["-o", str(out)])
    assert out.read_bytes() == DATA.read_bytes()


def test_another_seed_gives_another_set():
    assert verified_set.dumps(verified_set.generate(1)) != DATA.read_text(encoding="utf-8")


def test_schema_and_size(records):
    assert len(records) >= 150
    assert len({r["question_id"] for r in records}) == len(records)
    for r in records:
        assert list(r) == ["question_id", "category", "turns", "instructions"]
        assert 3 <= len(r["turns"]) <= 8, r["question_id"]
        assert len(r["instructions"]) == len(r["turns"]), r["question_id"]
        assert all(isinstance(t, str) and t.strip() for t in r["turns"])
        for insts in r["instructions"]:
            assert 1 <= len(insts) <= 3, r["question_id"]
            for inst in insts:
                assert list(inst) == ["id", "kwargs", "since", "persist"]


def test_bench_loader_reads_it_unchanged():
    bench = load_bench(str(DATA))
    assert len(bench.questions) >= 150


def test_openings_and_categories_vary(records):
    assert len({r["turns"][0].split(". ")[0] for r in records}) >= 120
    assert len({r["category"] for r in records}) >= 8


def test_every_instruction_id_appears_several_times(records):
    introduced = Counter(
        inst["id"] for r in records for t, insts in enumerate(r["instructions"], 1) for inst in insts
        if inst["since"] == t
    )  # fmt: skip
    assert set(introduced) == set(INSTRUCTION_IDS)
    assert min(introduced.values()) >= 5, introduced.most_common()[-3:]


def test_every_kwargs_passes_the_verifier(records):
    for r in records:
        for insts in r["instructions"]:
            for inst in insts:
                check_kwargs(inst["id"], inst["kwargs"])


def test_no_turn_holds_conflicting_or_duplicate_instructions(records):
    for r in records:
        for t, insts in enumerate(r["instructions"], 1):
            ids = [inst["id"] for inst in insts]
            assert len(ids) == len(set(ids)), (r["question_id"], t)
            assert not conflicting(ids), (r["question_id"], t, conflicting(ids))


def test_since_and_persist_are_consistent(records):
    for r in records:
        qid, per_turn = r["question_id"], r["instructions"]
        by_turn = [{inst["id"]: inst for inst in insts} for insts in per_turn]
        for t, insts in enumerate(per_turn, 1):
            for inst in insts:
                s = inst["since"]
                assert 1 <= s <= t, (qid, t, inst)
                for u in range(s, t + 1):
                    same = by_turn[u - 1].get(inst["id"])
                    assert same is not None and same["kwargs"] == inst["kwargs"], (qid, t, u, inst)
                    assert same["since"] == s and same["persist"] == inst["persist"], (qid, t, u, inst)
                before = by_turn[s - 2].get(inst["id"]) if s > 1 else None
                assert before is None or before["kwargs"] != inst["kwargs"], (qid, inst)  # new or changed at s
        # A one-turn instruction is active on exactly one turn.
        spans = Counter((inst["id"], inst["since"]) for insts in per_turn for inst in insts)
        for t, insts in enumerate(per_turn, 1):
            for inst in insts:
                if not inst["persist"]:
                    assert spans[(inst["id"], inst["since"])] == 1, (qid, inst)


def test_messages_state_new_instructions(records):
    """A persisting instruction is announced as one when introduced or changed; a drop is announced."""
    for r in records:
        previous = {}
        for t, (text, insts) in enumerate(zip(r["turns"], r["instructions"]), 1):
            current = {inst["id"]: inst for inst in insts}
            new = [inst for inst in insts if inst["since"] == t]
            for inst in new:
                if inst["persist"]:
                    assert any(m in text.lower() for m in PERSIST_MARKERS), (r["question_id"], t)
            dropped = [i for i, inst in previous.items() if inst["persist"] and i not in current]
            if dropped:
                assert "no longer need to" in text or "no need to" in text, (r["question_id"], t)
            previous = current


def test_repeat_prompt_is_the_text_before_the_instructions(records):
    seen = 0
    for r in records:
        for t, (text, insts) in enumerate(zip(r["turns"], r["instructions"]), 1):
            for inst in insts:
                if inst["id"] == "combination:repeat_prompt":
                    seen += 1
                    prompt = inst["kwargs"]["prompt_to_repeat"]
                    assert text.startswith(prompt + " "), (r["question_id"], t)
                    assert "repeat" in text[len(prompt) :].split(".")[0] or "copy out" in text[len(prompt) :]
    assert seen >= 5


def test_no_mt_bench_text():
    from parrot.core.assets import mtbench_data_dir

    try:
        path = mtbench_data_dir() / "mt_bench" / "question.jsonl"
    except Exception:  # noqa: BLE001 - MT-Bench not installed: nothing to compare with
        pytest.skip("no MT-Bench question.jsonl here")
    if not path.is_file():
        pytest.skip("no MT-Bench question.jsonl here")
    with open(path, encoding="utf-8") as f:
        theirs = {turn.strip() for line in f if line.strip() for turn in json.loads(line)["turns"]}
    with DATA.open(encoding="utf-8") as f:
        ours = [turn for line in f for turn in json.loads(line)["turns"]]
    assert not [turn for turn in ours if turn.strip() in theirs]
    assert not [turn for turn in ours if any(turn.startswith(t[:60]) for t in theirs if len(t) >= 60)]
