"""CaPO end to end against the fault-injecting OpenAI-compatible server: the exact prompts each
strategy sends, failures and discards recorded, resume without duplicates."""

import json

import pytest

from parrot import ParrotError
from parrot.capo import CapoConfig, capo
from parrot.capo.negatives import unrelated_turn
from parrot.capo.prompts import load_prompt, render
from parrot.core.config import build_config
from parrot.core.manifest import read_manifest

SYSTEM = {"role": "system", "content": "You are a patient geography tutor."}
S1 = [
    SYSTEM,
    {"role": "user", "content": "Name two rivers in France."},
    {"role": "assistant", "content": "The Seine and the Loire are two well known French rivers."},
    {"role": "user", "content": "Which of them is longer?"},
    {"role": "assistant", "content": "The Loire is longer: about 1,006 km against 777 km for the Seine."},
    {"role": "user", "content": "Write a haiku about autumn."},
    {"role": "assistant", "content": "Red leaves drift and fall / the river carries them on / quiet turns the year"},
    {"role": "user", "content": "Make it rhyme."},
    {"role": "assistant", "content": "Leaves fall on the ground / the river runs without sound / autumn comes around"},
]
S2 = [
    {"role": "user", "content": "Tell me a joke about cats."},
    {"role": "assistant", "content": "Why did the cat sit on the computer? To keep an eye on the mouse."},
    {"role": "user", "content": "Why?"},
    {"role": "assistant", "content": "It is a pun: a computer mouse and the animal a cat hunts."},
]
S3 = [{"role": "user", "content": "What is the capital of Peru?"}, {"role": "assistant", "content": "Lima."}]

GUESS = "the river Thames"


@pytest.fixture
def sessions(tmp_path):
    path = tmp_path / "sessions.jsonl"
    path.write_text(
        "".join(json.dumps({"id": i, "messages": m}) + "\n" for i, m in (("s1", S1), ("s2", S2), ("s3", S3)))
    )
    return path


@pytest.fixture
def server(fault_server):
    """Guess requests get GUESS; everything else a distinct wrong answer."""
    guess_head = load_prompt("capo_hallucinate_guess").split("{question}")[0]

    def respond(req):
        text = req["messages"][-1]["content"]
        return GUESS if text.startswith(guess_head) else f"wrong answer number {len(fault_server.requests)}"

    fault_server.responder = respond
    return fault_server


def run(tmp_path, sessions, server, **settings):
    gen = {
        "spec": "openai:gen",
        "base_url": server.base_url,
        "max_retries": 0,
        "concurrency": 1,
        **settings.pop("generator", {}),
    }
    cfg = build_config(
        CapoConfig, {"dialogues": str(sessions), "output": str(tmp_path / "pairs.jsonl"), "generator": gen, **settings}
    )
    counts = capo(cfg)
    return counts, read_pairs(tmp_path / "pairs.jsonl")


def read_pairs(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def sent(server):
    return [r["messages"] for r in server.requests]


def test_each_strategy_sends_its_prompt_built_from_the_known_session(tmp_path, sessions, server):
    run(tmp_path, sessions, server, strategies=["ignore", "hallucinate", "misunderstand"])
    requests = sent(server)
    q4 = "Make it rhyme."
    # ignore: the question alone (after the session's system message), no history
    assert [SYSTEM, {"role": "user", "content": q4}] in requests
    # hallucinate: a guess made without history or system message, then the answer on that guess
    guess_msgs = [{"role": "user", "content": render(load_prompt("capo_hallucinate_guess"), question=q4)}]
    assert guess_msgs in requests
    answer = render(load_prompt("capo_hallucinate_answer"), question=q4, guess=GUESS)
    assert [SYSTEM, {"role": "user", "content": answer}] in requests
    assert requests.index(guess_msgs) < requests.index([SYSTEM, {"role": "user", "content": answer}])
    # misunderstand: an earlier user turn other than turn 3 (the one just before) is quoted
    turn4 = {"id": "s1-t4", "turn": 4, "prompt": S1[:8]}
    j, span = unrelated_turn(turn4, seed=0)
    assert j in (1, 2) and span == S1[2 * j - 1]["content"]
    mis = render(load_prompt("capo_misunderstand"), question=q4, span=span)
    assert [SYSTEM, {"role": "user", "content": mis}] in requests
    # no request carries the assistant's earlier replies
    assert not any("Seine" in m["content"] for msgs in requests for m in msgs)


def test_pairs_are_trl_conversational_preference_records(tmp_path, sessions, server):
    counts, pairs = run(tmp_path, sessions, server)
    by_id = {p["id"]: p for p in pairs}
    # s1 turns 2 and 4, s2 turn 2; turn-2 questions have no unrelated earlier turn to misread
    assert set(by_id) == {
        "s1-t2-ignore",
        "s1-t2-hallucinate",
        "s1-t4-ignore",
        "s1-t4-hallucinate",
        "s1-t4-misunderstand",
        "s2-t2-ignore",
        "s2-t2-hallucinate",
    }
    p = by_id["s1-t4-hallucinate"]
    assert set(p) == {"id", "prompt", "chosen", "rejected", "meta"}
    assert p["prompt"] == S1[:8] and p["prompt"][-1] == {"role": "user", "content": "Make it rhyme."}
    assert p["chosen"] == [S1[8]]
    assert p["rejected"][0]["role"] == "assistant" and p["rejected"][0]["content"].startswith("wrong answer")
    assert p["meta"]["strategy"] == "hallucinate" and p["meta"]["guess"] == GUESS
    assert (p["meta"]["source_id"], p["meta"]["turn"]) == ("s1", 4)
    m = by_id["s1-t4-misunderstand"]["meta"]
    assert m["misunderstood_turn"] in (1, 2) and m["span"] == S1[2 * m["misunderstood_turn"] - 1]["content"]
    assert counts["this_run"]["misunderstand"]["no_unrelated_turn"] == 2
    manifest = read_manifest(tmp_path / "pairs.jsonl")
    assert manifest["counts"]["pairs_in_output"] == {"ignore": 3, "hallucinate": 3, "misunderstand": 1}
    assert manifest["complete"] and manifest["generator"]["spec"] == "openai:gen"


def test_strategies_option_selects_a_subset(tmp_path, sessions, server):
    _, pairs = run(tmp_path, sessions, server, strategies=["misunderstand"])
    assert [p["id"] for p in pairs] == ["s1-t4-misunderstand"]
    assert len(server.requests) == 1


def test_generator_failures_are_recorded_then_retried_by_resume(tmp_path, sessions, server):
    server.add_faults("500", "500")  # the first two requests: s1-t2 ignore, s1-t2 hallucinate's guess
    counts, pairs = run(tmp_path, sessions, server)
    assert len(pairs) == 5 and counts["discarded_by_reason"] == {"generator_failed": 2}
    fails = [json.loads(x) for x in (tmp_path / "pairs.jsonl.failures.jsonl").read_text().splitlines()]
    assert {(f["key"], f["reason"], f["detail"]["strategy"]) for f in fails} == {
        ("s1-t2-ignore", "generator_failed", "ignore"),
        ("s1-t2-hallucinate", "generator_failed", "hallucinate"),
    }
    assert counts["this_run"]["hallucinate"]["generator_failed"] == 1
    assert read_manifest(tmp_path / "pairs.jsonl")["complete"] is False  # so the pipeline resumes it

    before = len(server.requests)
    counts, pairs = run(tmp_path, sessions, server, resume=True)
    ids = [p["id"] for p in pairs]
    assert len(ids) == len(set(ids)) == 7
    assert read_manifest(tmp_path / "pairs.jsonl")["complete"] is True
    assert len(server.requests) - before == 3  # ignore (1) + hallucinate (guess and answer)
    assert counts["this_run"]["ignore"]["already_done"] == 2


def test_resume_of_a_finished_run_sends_nothing_and_writes_nothing(tmp_path, sessions, server):
    _, first = run(tmp_path, sessions, server)
    before = len(server.requests)
    counts, again = run(tmp_path, sessions, server, resume=True)
    assert again == first and len(server.requests) == before and counts["written"] == 0


def test_near_identical_rejected_is_discarded_and_not_retried(tmp_path, sessions, server):
    wrong = server.responder
    server.responder = lambda req: (
        S1[8]["content"].replace("ground", "ground,")
        if req["messages"][-1]["content"] == "Make it rhyme."
        else wrong(req)
    )
    counts, pairs = run(tmp_path, sessions, server, strategies=["ignore"])
    assert [p["id"] for p in pairs] == ["s1-t2-ignore", "s2-t2-ignore"]
    assert counts["this_run"]["ignore"]["near_identical"] == 1
    [fail] = [json.loads(x) for x in (tmp_path / "pairs.jsonl.failures.jsonl").read_text().splitlines()]
    assert fail["key"] == "s1-t4-ignore" and fail["detail"]["similarity"] >= 0.9
    before = len(server.requests)
    run(tmp_path, sessions, server, strategies=["ignore"], resume=True)
    assert len(server.requests) == before


def test_after_a_resume_the_failures_file_holds_only_the_final_discards(tmp_path, sessions, server):
    wrong = server.responder
    server.responder = lambda req: (
        S1[8]["content"].replace("ground", "ground,")
        if req["messages"][-1]["content"] == "Make it rhyme."
        else wrong(req)
    )
    server.add_faults("500")  # the first pair, s1-t2-ignore, fails; s1-t4-ignore is near-identical
    run(tmp_path, sessions, server, strategies=["ignore"])
    failures = tmp_path / "pairs.jsonl.failures.jsonl"
    assert sorted(json.loads(x)["key"] for x in failures.read_text().splitlines()) == ["s1-t2-ignore", "s1-t4-ignore"]
    _, pairs = run(tmp_path, sessions, server, strategies=["ignore"], resume=True)
    assert [p["id"] for p in pairs] == ["s2-t2-ignore", "s1-t2-ignore"]
    [final] = [json.loads(x) for x in failures.read_text().splitlines()]
    assert (final["key"], final["reason"]) == ("s1-t4-ignore", "near_identical")


def test_regenerate_chosen_sends_the_full_history_once_per_turn(tmp_path, sessions, server):
    _, pairs = run(tmp_path, sessions, server, regenerate_chosen=True, strategies=["ignore", "hallucinate"])
    requests = sent(server)
    assert requests.count(S1[:8]) == 1 and requests.count(S1[:4]) == 1 and requests.count(S2[:3]) == 1
    for p in pairs:
        assert p["chosen"][0]["content"].startswith("wrong answer") and p["meta"]["chosen_from"] == "generator"
        assert p["chosen"] != p["rejected"]


def test_existing_output_needs_resume_or_overwrite(tmp_path, sessions, server):
    run(tmp_path, sessions, server, strategies=["ignore"])
    with pytest.raises(ParrotError, match="--resume .* --overwrite"):
        run(tmp_path, sessions, server, strategies=["ignore"])
    with pytest.raises(ParrotError, match="different settings.*--force"):
        run(tmp_path, sessions, server, strategies=["hallucinate"], resume=True)
    _, pairs = run(tmp_path, sessions, server, strategies=["hallucinate"], resume=True, force=True)
    assert {p["meta"]["strategy"] for p in pairs} == {"ignore", "hallucinate"}  # continued, as asked
    _, pairs = run(tmp_path, sessions, server, strategies=["hallucinate"], overwrite=True)
    assert {p["meta"]["strategy"] for p in pairs} == {"hallucinate"}


def test_unknown_strategy_is_an_error_naming_the_choices():
    with pytest.raises(ParrotError, match="ignore, hallucinate, misunderstand"):
        build_config(CapoConfig, {"dialogues": "d", "output": "o", "strategies": ["ignore", "guess"]})


def test_output_file_trains_a_dpo_step_unchanged(tmp_path, sessions, server, tiny_model_dir):
    import math

    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    run(tmp_path, sessions, server)
    data = load_dataset(
        "json", data_files=str(tmp_path / "pairs.jsonl"), split="train", cache_dir=str(tmp_path / "hf-cache")
    )
    args = DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        max_steps=1,
        per_device_train_batch_size=4,
        learning_rate=1e-4,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        max_length=512,
    )
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        args=args,
        train_dataset=data,
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
    )
    assert len(trainer.train_dataset) == 7  # no pair lost in TRL's preparation
    result = trainer.train()
    assert result.global_step == 1 and math.isfinite(result.training_loss)


def test_tiny_hf_generator_writes_every_strategy(tmp_path, sessions, tiny_model_dir):
    cfg = build_config(
        CapoConfig,
        {
            "dialogues": str(sessions),
            "output": str(tmp_path / "pairs.jsonl"),
            "generator": {"spec": f"hf:{tiny_model_dir}", "batch_size": 4},
            "max_tokens": 6,
            "guess_max_tokens": 4,
            "temperature": 1.0,
        },
    )
    counts = capo(cfg)
    pairs = read_pairs(tmp_path / "pairs.jsonl")
    # random weights rarely end a turn at once; an empty reply would be a recorded failure
    assert len(pairs) + counts["discarded"] == 7
    assert {p["meta"]["strategy"] for p in pairs} == {"ignore", "hallucinate", "misunderstand"}
    assert read_manifest(tmp_path / "pairs.jsonl")["generator_usage"]["completions"] >= 7


def test_a_prompt_override_without_its_placeholder_fails_before_any_request(tmp_path, sessions, server):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "capo_misunderstand.txt").write_text("Answer this: {question}\n")
    with pytest.raises(ParrotError, match=r"capo_misunderstand.txt: expected the placeholder\(s\) \{span\}"):
        run(tmp_path, sessions, server, prompt_dir=str(tmp_path / "prompts"))
    assert server.requests == []


def test_a_prompt_override_replaces_the_packaged_file(tmp_path, sessions, server):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "capo_ignore.txt").write_text("# mine\nPlease answer: {question}\n")
    run(tmp_path, sessions, server, strategies=["ignore"], prompt_dir=str(tmp_path / "prompts"))
    assert [{"role": "user", "content": "Please answer: Why?"}] in sent(server)


@pytest.mark.slow
def test_smollm2_generator_end_to_end(tmp_path, sessions):
    pytest.importorskip("xllamacpp")
    cfg = build_config(
        CapoConfig,
        {
            "dialogues": str(sessions),
            "output": str(tmp_path / "pairs.jsonl"),
            "generator": {"spec": "smollm2", "threads": 1},
            "max_tokens": 24,
        },
    )
    counts = capo(cfg)
    assert counts["pairs_total"] + counts["discarded"] == 7
    assert counts["this_run"]["misunderstand"]["no_unrelated_turn"] == 2


def test_no_context_dependent_question_is_an_error_saying_what_to_change(tmp_path, server):
    path = tmp_path / "flat.jsonl"
    flat = [
        {"role": "user", "content": "What is the capital of Peru?"},
        {"role": "assistant", "content": "Lima."},
        {"role": "user", "content": "What is the capital of Chile?"},
        {"role": "assistant", "content": "Santiago."},
    ]
    path.write_text(json.dumps({"id": "f", "messages": flat}) + "\n")
    with pytest.raises(
        ParrotError,
        match=r"capo wrote 0 pairs .*none of the 1 questions from turn 2 on depends "
        r"on the history; synthesize more or longer sessions",
    ):
        run(tmp_path, path, server)
    assert server.requests == [] and read_manifest(tmp_path / "pairs.jsonl")["complete"] is False
