"""``parrot eval answer``: turn by turn, FastChat's schema and temperatures, resumable."""

import json

import pytest
from test_file_errors import error_line

from parrot import ParrotError
from parrot.backends import BackendConfig
from parrot.backends.spec import parse_spec
from parrot.core.outputs import failures_path
from parrot.evaluate.answer import AnswerConfig, answer
from parrot.evaluate.bench import load_bench


def read(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def answer_cfg(server, out, **kw):
    model = BackendConfig(
        spec="openai:model-a", base_url=server.base_url, max_retries=0, concurrency=kw.pop("concurrency", 4)
    )
    return AnswerConfig(output=str(out), model=model, **kw)


def by_first_question(requests):
    """Requests grouped by the conversation's first user message."""
    out = {}
    for r in requests:
        out.setdefault(r["messages"][0]["content"], []).append(r)
    return out


def test_answers_turn_by_turn_with_own_history_in_fastchat_schema(fault_server, tmp_path):
    out = tmp_path / "A.jsonl"
    ids = ["151", "81", "101", "141"]
    answer(answer_cfg(fault_server, out, question_ids=ids))
    bench = load_bench("mt-bench").by_id()
    records = read(out)
    assert [r["question_id"] for r in records] == [81, 101, 141, 151]  # sorted, as FastChat leaves it
    for r in records:
        assert set(r) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
        assert r["model_id"] == "model-a" and r["choices"][0]["index"] == 0
        assert r["choices"][0]["turns"] == [f"echo: {t}" for t in bench[r["question_id"]]["turns"]]
    reqs = by_first_question(fault_server.requests)
    q81 = bench[81]["turns"]
    first, second = reqs[q81[0]]
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert second["messages"][1]["content"] == f"echo: {q81[0]}" and second["messages"][2]["content"] == q81[1]
    temps = {qid: {r["temperature"] for r in reqs[bench[qid]["turns"][0]]} for qid in (81, 101, 141, 151)}
    assert temps == {81: {0.7}, 101: {0.0}, 141: {0.1}, 151: {0.1}}
    assert {r["max_tokens"] for r in fault_server.requests} == {1024}
    manifest = json.loads((tmp_path / "A.jsonl.manifest.json").read_text())
    assert manifest["sampling"]["temperature_by_category"]["writing"] == 0.7


def test_golden_history_puts_the_reference_answer_in_the_context(fault_server, tmp_path):
    out = tmp_path / "A.jsonl"
    answer(answer_cfg(fault_server, out, question_ids=["101", "81"], golden_history=True))
    bench = load_bench("mt-bench")
    reqs = by_first_question(fault_server.requests)
    q101 = bench.by_id()[101]["turns"]
    second = reqs[q101[0]][1]
    assert second["messages"][1] == {"role": "assistant", "content": bench.reference(101, 1)}
    # the model's own answer is still what is recorded; no reference: own history
    assert read(out)[1]["choices"][0]["turns"][0] == f"echo: {q101[0]}"
    q81 = bench.by_id()[81]["turns"]
    assert reqs[q81[0]][1]["messages"][1]["content"] == f"echo: {q81[0]}"


def test_resume_answers_only_what_is_missing(fault_server, tmp_path):
    out = tmp_path / "A.jsonl"
    fault_server.add_faults("500")  # the first request fails (max_retries=0): one question fails
    counts = answer(answer_cfg(fault_server, out, limit=3, concurrency=1))
    assert counts["failed"] == 1 and len(read(out)) == 2
    assert read(failures_path(out))[0]["reason"] == "generation_failed"
    fault_server.requests.clear()
    counts = answer(answer_cfg(fault_server, out, limit=3, resume=True))
    assert counts["skipped_done"] == 2 and counts["written"] == 1
    assert len(fault_server.requests) == 2  # the failed question's two turns, nothing else
    assert [r["question_id"] for r in read(out)] == [81, 82, 83]
    assert not failures_path(out).exists()  # the failure is settled: the file matches the output


def test_overwrite_starts_the_file_over_and_the_manifest_tracks_completion(fault_server, tmp_path):
    out = tmp_path / "A.jsonl"
    fault_server.add_faults("500")
    answer(answer_cfg(fault_server, out, limit=2, concurrency=1))
    manifest = json.loads((tmp_path / "A.jsonl.manifest.json").read_text())
    assert manifest["complete"] is False and failures_path(out).exists()
    fault_server.requests.clear()
    fault_server.responder = lambda req: "retrained"
    counts = answer(answer_cfg(fault_server, out, limit=2, model_id="model-a", overwrite=True))
    assert counts["written"] == 2 and counts.get("skipped_done", 0) == 0 and len(fault_server.requests) == 4
    assert {t for r in read(out) for t in r["choices"][0]["turns"]} == {"retrained"}
    assert not failures_path(out).exists()
    assert json.loads((tmp_path / "A.jsonl.manifest.json").read_text())["complete"] is True


def test_resuming_into_another_models_file_is_an_error(fault_server, tmp_path):
    out = tmp_path / "A.jsonl"
    answer(answer_cfg(fault_server, out, limit=1))
    with pytest.raises(ParrotError, match="holds answers of model 'model-a'"):
        answer(answer_cfg(fault_server, out, limit=1, model_id="model-b", resume=True))


def test_adding_to_a_file_answered_with_other_settings_is_an_error(fault_server, tmp_path):
    out = tmp_path / "A.jsonl"
    answer(answer_cfg(fault_server, out, limit=1))
    assert answer(answer_cfg(fault_server, out, limit=2, concurrency=1, resume=True))["written"] == 1  # more: fine
    with pytest.raises(
        ParrotError,
        match=r"A\.jsonl: holds eval answer records made with other settings "
        r"\(bench 'mt-bench' → 'mt-bench-pp'; max_tokens 1024 → 64\); "
        r"pass --overwrite to start over",
    ):
        answer(answer_cfg(fault_server, out, limit=2, bench="mt-bench-pp", max_tokens=64, resume=True))
    counts = answer(answer_cfg(fault_server, out, limit=2, bench="mt-bench-pp", max_tokens=64, overwrite=True))
    assert counts["written"] == 2 and all(len(r["choices"][0]["turns"]) == 8 for r in read(out))


def test_n_turn_question_file_is_answered_through_every_turn(fault_server, tmp_path):
    qfile = tmp_path / "q.jsonl"
    qfile.write_text(
        json.dumps({"question_id": "s1", "category": "roleplay", "turns": ["one", "two", "three", "four"]}) + "\n"
    )
    out = tmp_path / "A.jsonl"
    answer(answer_cfg(fault_server, out, bench=str(qfile), system_prompt="Be brief."))
    assert read(out)[0]["choices"][0]["turns"] == ["echo: one", "echo: two", "echo: three", "echo: four"]
    last = fault_server.requests[-1]["messages"]
    assert [m["role"] for m in last] == ["system"] + ["user", "assistant"] * 3 + ["user"]


@pytest.mark.parametrize(
    "spec, name",
    [
        ("openai:gpt-4", "gpt-4"),
        ("smollm2", "smollm2"),
        ("gguf:/m/tiny.Q4_K.gguf", "tiny.Q4_K"),
        ("hf:/ckpt/parrot-chat/", "parrot-chat"),
        ("gguf:runs/demo/models/ask/model.gguf", "ask"),  # train-* --gguf
    ],
)
def test_model_id_from_spec(spec, name):
    assert parse_spec(spec).model_id == name


def test_eight_turns_against_a_1024_token_model_complete_with_the_shortening_recorded(tmp_path, smollm2_tokenizer_dir):
    from fixtures.models import build_tiny_model

    model = build_tiny_model(tmp_path / "ctx1024", smollm2_tokenizer_dir, positions=1024)
    out = tmp_path / "A.jsonl"
    # random weights rarely stop early: ~200-token answers fill 1,024 tokens within a few turns
    counts = answer(
        AnswerConfig(
            output=str(out), bench="mt-bench-pp", limit=1, max_tokens=200, model=BackendConfig(spec=f"hf:{model}")
        )
    )
    [record] = read(out)
    assert len(record["choices"][0]["turns"]) == 8 and counts.get("failed", 0) == 0
    shortened = record["meta"]["shortened"]
    assert "8" in shortened and "1" not in shortened
    assert all(note["turns_dropped"] >= 1 for note in shortened.values())
    later = [int(t) for t in shortened]
    assert later == list(range(min(later), 9))  # once the history outgrows the context, it stays shortened
    manifest = json.loads((tmp_path / "A.jsonl.manifest.json").read_text())
    assert manifest["counts"]["turns_shortened"] == len(shortened) == manifest["usage"]["shortened"]


def test_a_limit_below_one_is_an_error_and_nothing_is_written(tmp_path, capsys):
    from parrot.cli import main

    out = tmp_path / "a.jsonl"
    assert main(["eval", "answer", "--model", "openai:m", "--limit", "-1", "-o", str(out)]) == 2
    assert error_line(capsys) == "parrot eval answer: error: command line: limit: expected at least 1, found -1"
    assert list(tmp_path.iterdir()) == []


def test_a_negative_max_tokens_is_an_error_and_nothing_is_written(tmp_path, capsys):
    from parrot.cli import main

    out = tmp_path / "a.jsonl"
    dead = ["model.base_url=http://127.0.0.1:9/v1", "model.max_retries=0"]
    assert main(["eval", "answer", "--model", "openai:m", *dead, "--limit", "1", "max_tokens=-5", "-o", str(out)]) == 2
    assert error_line(capsys) == "parrot eval answer: error: command line: max_tokens: expected at least 1, found -5"
    assert list(tmp_path.iterdir()) == []
