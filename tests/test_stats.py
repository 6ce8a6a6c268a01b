"""``parrot stats`` metrics on small datasets written by the tests, with known answers."""

import json
import random

import numpy as np
import pytest
from test_file_errors import error_line

from parrot import ParrotError
from parrot.core.config import build_config
from parrot.core.tokens import TokenCounter
from parrot.stats.basic import DatasetAccumulator
from parrot.stats.rouge import lcs_length, rouge_l_f1, self_rouge
from parrot.stats.sampling import LogHistogram, Reservoir
from parrot.stats.stage import StatsConfig, stats


def _session(*pairs):
    msgs = []
    for q, a in pairs:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return {"messages": msgs}


def _write(path, sessions):
    path.write_text("".join(json.dumps(s) + "\n" for s in sessions), encoding="utf-8")
    return path


def _acc(**kw):
    args = dict(sample=100, shift_sessions=10, judge_sample=5, seed=0, tokens=None)
    args.update(kw)
    return DatasetAccumulator(**args)


# ---------------------------------------------------------------- turns, lengths, context


def test_turns_mean_median_and_histogram():
    acc = _acc()
    for n in (1, 2, 2, 7):
        acc.add(_session(*[(f"Question number {i} about cooking rice?", "Answer.") for i in range(n)]))
    s = acc.summary()
    assert s["sessions"] == 4
    assert s["turns_mean"] == 3.0
    assert s["turns_median"] == 2.0
    assert s["turns_histogram"] == {"1": 1, "2": 2, "7": 1}


def test_word_lengths_are_exact():
    acc = _acc()
    acc.add(_session(("one two three", "a b"), ("four five six seven eight", "c d e f")))
    s = acc.summary()
    assert s["user_words"]["mean"] == 4.0 and s["user_words"]["max"] == 5
    assert s["assistant_words"]["mean"] == 3.0


def test_token_lengths_match_the_named_tokenizer(smollm2_tokenizer):
    texts = ["Hello there, how are you?", "Explain photosynthesis in detail please."]
    acc = _acc(tokens=TokenCounter(smollm2_tokenizer, batch_size=1))
    acc.add(_session((texts[0], "Fine."), (texts[1], "Plants make sugar from light.")))
    acc.finish()
    expected = [len(smollm2_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert acc.summary()["user_tokens"]["mean"] == sum(expected) / 2


def test_context_dependent_questions_per_session_count_follow_ups_only():
    acc = _acc()
    # first turn "why?" is not counted per session (nothing came before it), follow-ups are
    acc.add(_session(("why?", "Because."), ("make it shorter", "Ok."), ("What is the capital of Peru?", "Lima.")))
    acc.add(
        _session(
            ("Write a poem about autumn.", "..."), ("Translate it into French", "..."), ("and the second one?", "...")
        )
    )
    s = acc.summary()
    assert s["context_dependent_per_session"] == 1.5  # (1 + 2) / 2 sessions
    assert s["context_dependent_share_of_followups"] == 0.75  # 3 of 4 follow-ups
    by_turn = {p["turn"]: p for p in s["context_by_turn"]}
    assert by_turn[1]["dependent"] == 1 and by_turn[2]["dependent"] == 2 and by_turn[3]["dependent"] == 1


# ---------------------------------------------------------------- Self-ROUGE


def _lcs_dp(a, b):
    dp = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a)):
        for j in range(len(b)):
            dp[i + 1][j + 1] = dp[i][j] + 1 if a[i] == b[j] else max(dp[i][j + 1], dp[i + 1][j])
    return dp[-1][-1]


def test_bit_parallel_lcs_matches_dynamic_programming():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 30))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 30))]
        assert lcs_length(a, b) == _lcs_dp(a, b)


def test_rouge_l_f1_known_values():
    assert rouge_l_f1("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert rouge_l_f1("a b c", "x y z") == 0.0
    # LCS("a b c d", "a c") = 2: P = 2/4, R = 2/2 -> F1 = 2/3
    assert rouge_l_f1("a b c d", "a c") == pytest.approx(2 / 3)


def test_self_rouge_is_mean_over_pairs():
    assert self_rouge(["a b", "a b", "a b"]) == 1.0
    assert self_rouge(["a b", "c d", "e f"]) == 0.0
    # pairs: (1,2)=1, (1,3)=0, (2,3)=0 -> mean 1/3
    assert self_rouge(["a b", "a b", "c d"]) == pytest.approx(1 / 3)
    assert self_rouge(["only one"]) is None


# ---------------------------------------------------------------- bounded memory


def test_reservoir_and_histogram_stay_bounded_and_uniform():
    r = Reservoir(100, seed=1)
    h = LogHistogram()
    for i in range(100_000):
        r.add(i)
        h.add(i % 5000)
    assert len(r.items) == 100 and r.seen == 100_000 and r.sampled
    assert 30_000 < np.mean(r.items) < 70_000  # a uniform sample, not the first 100
    assert len(h.counts) < 200
    assert h.mean == pytest.approx(2499.5)


def test_accumulator_keeps_samples_bounded():
    acc = _acc(sample=20, shift_sessions=5, judge_sample=3)
    for i in range(500):
        acc.add(_session((f"Question {i} about gardening?", "Answer."), ("Why is that?", "Because.")))
    assert len(acc.question_sample.items) == 20 and acc.question_sample.seen == 1000
    assert len(acc.session_sample.items) == 5 and len(acc.followup_sample.items) == 3


# ---------------------------------------------------------------- embeddings


@pytest.fixture(scope="module")
def embedder():
    import torch

    from parrot.stats.embed import Embedder

    torch.set_num_threads(1)
    return Embedder(max_length=64)


def test_embedding_pooling_matches_the_model_config(embedder):
    import json as _json

    cfg = _json.loads((embedder.path / "1_Pooling" / "config.json").read_text())
    assert cfg["pooling_mode_mean_tokens"] and not cfg["pooling_mode_cls_token"]
    e = embedder.encode(["How do I cook rice?", "What is the best way to cook rice?", "Explain black holes."])
    assert e.shape == (3, 384)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] > 0.7 > e[0] @ e[2]
    # padding must not change a sentence's vector (mean over real tokens only)
    alone = embedder.encode(["How do I cook rice?"])[0]
    assert np.allclose(alone, e[0], atol=1e-5)


def test_topic_diversity_known_values(embedder):
    from parrot.stats.embed import mean_pairwise_cosine_distance

    same = embedder.encode(["How do I cook rice?"] * 4)
    assert mean_pairwise_cosine_distance(same) == pytest.approx(0.0, abs=1e-5)
    varied = embedder.encode(["How do I cook rice?", "Explain black holes.", "Write a sonnet about trains."])
    assert mean_pairwise_cosine_distance(varied) > 0.7


def test_topic_shifts_count_unrelated_self_contained_questions(embedder):
    from parrot.stats.run import topic_shifts

    sessions = [
        ["How do I cook rice?", "What is the tax rate in Norway?", "Write a sonnet about trains."],  # 2 shifts
        ["How do I cook brown rice?", "How long should I cook brown rice?", "make it shorter"],  # 0
    ]
    out = topic_shifts(sessions, embedder, threshold=0.2)
    assert out["shifts_per_session"] == 1.0
    assert out["shift_rate_per_transition"] == 0.5


def test_human_likeness_auc_separates_templated_questions(embedder):
    from parrot.stats.human import question_features, two_sample_auc

    rng = random.Random(0)
    subjects = [
        "rice",
        "black holes",
        "tax law",
        "python",
        "gardening",
        "jazz",
        "knitting",
        "volcanoes",
        "chess",
        "bread",
        "dogs",
        "rust",
        "poetry",
        "the moon",
        "trains",
        "coffee",
    ]
    real = [
        rng.choice(["how do i ", "what's ", "pls explain ", "why "]) + s + rng.choice(["", "?", " lol", "??"])
        for s in subjects
        for _ in range(3)
    ]
    fake = [f"Could you please provide a comprehensive overview of {s}?" for s in subjects for _ in range(3)]
    real_x = question_features(real, embedder.encode(real))
    fake_x = question_features(fake, embedder.encode(fake))
    apart = two_sample_auc(fake_x, real_x, n_boot=200)
    assert apart["auc"] > 0.9
    # the pooled out-of-fold AUC with its interval over questions (each class resampled), seeded
    ci = apart["auc_ci"]
    assert ci["value"] > 0.9 and ci["low"] <= ci["value"] <= ci["high"] <= 1.0 and ci["n"] == apart["n_per_class"]
    assert two_sample_auc(fake_x, real_x, n_boot=200)["auc_ci"] == ci
    shuffled = real_x[np.random.default_rng(0).permutation(len(real_x))]
    same = two_sample_auc(shuffled[: len(real) // 2], shuffled[len(real) // 2 :])["auc"]
    assert same < 0.75


def test_no_questions_give_an_empty_feature_matrix_and_no_auc():
    from parrot.stats.human import question_features, two_sample_auc

    empty = question_features([], np.zeros((0, 8), dtype=np.float32))
    one = question_features(["how do i cook rice?"], np.zeros((1, 8), dtype=np.float32))
    assert empty.shape == (0, one.shape[1])
    assert two_sample_auc(empty, one)["auc"] is None


def test_judge_prompt_fills_history_and_question_in_one_pass():
    from parrot.stats.judge import render

    item = {"history": [{"role": "user", "content": "fill in {question} here"}], "question": "Why?"}
    assert render(item, "H: {history}\nQ: {question}") == "H: USER: fill in {question} here\nQ: Why?"


# ---------------------------------------------------------------- the command


def _dataset(path, rng, n, follow):
    topics = ["cooking rice", "python decorators", "the french revolution", "black holes", "tomatoes"]
    sessions = []
    for _ in range(n):
        t = rng.choice(topics)
        pairs = [(f"Tell me about {t}.", f"Here is a long answer about {t} with quite a few words in it.")]
        pairs += [(rng.choice(follow), "Sure.") for _ in range(rng.randint(0, 3))]
        sessions.append(_session(*pairs))
    return _write(path, sessions)


def test_stats_command_writes_table_json_plots_and_manifests(tmp_path, smollm2_tokenizer_dir):
    rng = random.Random(0)
    a = _dataset(tmp_path / "a.jsonl", rng, 40, ["Why is that?", "make it shorter", "and the second one?"])
    b = _dataset(tmp_path / "b.jsonl", rng, 40, ["What is the capital of Peru?", "Explain quantum computing."])
    cfg = build_config(
        StatsConfig,
        {
            "data": [str(a), str(b)],
            "names": ["dep", "indep"],
            "output": str(tmp_path / "out"),
            "tokenizer": str(smollm2_tokenizer_dir),
            "real": str(b),
            "sample": 60,
            "rouge_sample": 30,
            "shift_sessions": 10,
            "threads": 1,
            "embed_max_tokens": 64,
        },
    )
    doc = stats(cfg)
    out = tmp_path / "out"
    rows = {r["name"]: r for r in json.loads((out / "stats.json").read_text())["datasets"]}
    assert rows["dep"]["context_dependent_share_of_followups"] == 1.0
    assert rows["indep"]["context_dependent_per_session"] == 0.0
    assert rows["dep"]["sessions"] == 40 and rows["dep"]["user_tokens"]["count"] > 40
    assert rows["dep"]["self_rouge_sample"] == 30 and 0 < rows["dep"]["self_rouge"] < 1
    assert rows["indep"]["human_likeness"]["n_per_class"] > 5
    # the --real file against itself: two disjoint halves of its sample, never its questions twice
    assert rows["indep"]["human_likeness"]["halves"] is True and "halves" not in rows["dep"]["human_likeness"]
    md = (out / "stats.md").read_text()
    assert md.count("\n| dep |") == 1 and "| indep |" in md and "Sampled metrics" in md
    for name in ("turns_histogram.png", "lengths.png", "context_by_turn.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    manifest = json.loads((out / "stats.json.manifest.json").read_text())
    assert manifest["stage"] == "stats" and len(manifest["inputs"]) == 3
    assert (out / "stats.md.manifest.json").is_file()
    assert set(doc["timings_s"]) >= {"scan", "tokens", "context_detector", "self_rouge", "topic_diversity"}


def test_stats_without_embeddings_or_tokenizer(tmp_path):
    a = _dataset(tmp_path / "a.jsonl", random.Random(1), 10, ["Why is that?"])
    cfg = build_config(
        StatsConfig,
        {"data": [str(a)], "output": str(tmp_path / "o"), "tokenizer": "none", "embeddings": False, "plots": False},
    )
    row = stats(cfg)["datasets"][0]
    assert row["name"] == "a" and "user_tokens" not in row and "topic_diversity" not in row
    assert "n/a" in (tmp_path / "o" / "stats.md").read_text()


def test_a_line_that_is_not_utf8_is_an_error_naming_it(tmp_path):
    a = _dataset(tmp_path / "a.jsonl", random.Random(1), 3, ["Why?"])
    with a.open("ab") as fh:
        fh.write(b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n')  # Latin-1, not UTF-8
    cfg = build_config(
        StatsConfig,
        {"data": [str(a)], "output": str(tmp_path / "o"), "tokenizer": "none", "embeddings": False, "plots": False},
    )
    with pytest.raises(ParrotError, match=r"a\.jsonl:4: not UTF-8 \(byte 0xe9 at column 47\)"):
        stats(cfg)


def test_names_must_match_datasets(tmp_path):
    a = _dataset(tmp_path / "a.jsonl", random.Random(1), 3, ["Why?"])
    cfg = build_config(
        StatsConfig,
        {
            "data": [str(a)],
            "names": ["x", "y"],
            "output": str(tmp_path / "o"),
            "tokenizer": "none",
            "embeddings": False,
        },
    )
    with pytest.raises(ParrotError, match="expected 1 names"):
        stats(cfg)


def test_llm_judge_is_reported_separately(tmp_path, fault_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    fault_server.responder = lambda req: (
        "[[dependent]]"
        if "Why is that?" in req["messages"][-1]["content"].split("Last user question:")[-1]
        else "[[self-contained]]"
    )
    a = _dataset(tmp_path / "a.jsonl", random.Random(2), 30, ["Why is that?", "What is the capital of Peru?"])
    cfg = build_config(
        StatsConfig,
        {
            "data": [str(a)],
            "output": str(tmp_path / "o"),
            "tokenizer": "none",
            "embeddings": False,
            "plots": False,
            "judge_sample": 20,
            "judge": {"spec": "openai:judge", "base_url": fault_server.base_url},
        },
    )
    judge = stats(cfg)["datasets"][0]["llm_judge"]
    assert judge["judged"] == judge["questions"] > 5
    assert judge["agreement_with_detector"] == 1.0
    assert 0 < judge["dependent_share"] < 1
    assert "LLM judge" in (tmp_path / "o" / "stats.md").read_text()


def test_cli_runs_stats_and_reports_user_errors(tmp_path, capsys):
    from parrot.cli import main

    a = _dataset(tmp_path / "a.jsonl", random.Random(3), 5, ["Why is that?"])
    assert (
        main(
            [
                "stats",
                str(a),
                "-o",
                str(tmp_path / "o"),
                "--tokenizer",
                "none",
                "--no-embeddings",
                "--no-plots",
                "sample=10",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "o" / "stats.json").read_text())["config"]["sample"] == 10
    assert main(["stats", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o"), "--tokenizer", "none"]) == 2
    assert "missing.jsonl: dataset file not found" in capsys.readouterr().err


def test_a_negative_sample_is_an_error_naming_the_command_line(tmp_path, capsys):
    from parrot.cli import main

    src = tmp_path / "d.jsonl"
    src.write_text("")
    assert main(["stats", str(src), "-o", str(tmp_path / "o"), "--tokenizer", "none", "sample=-2"]) == 2
    assert error_line(capsys) == "parrot stats: error: command line: sample: expected at least 1, found -2"
    assert not (tmp_path / "o").exists()
