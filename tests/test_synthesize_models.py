"""synthesize with real models: a tiny random-weight checkpoint through the batching hf backend
(turn-synchronous loop), and SmolLM2 behind a real llama.cpp server (concurrent loop)."""

from __future__ import annotations

import pytest
from synth_helpers import SEED_QUESTIONS, read_out, write_seeds

from parrot.backends import load_backend
from parrot.core.config import build_config
from parrot.core.manifest import read_manifest
from parrot.synthesize.stage import SynthesizeConfig, synthesize


def test_local_backend_runs_turn_synchronous_batches(tmp_path, tiny_model_dir):
    spec = f"hf:{tiny_model_dir}"
    cfg = build_config(
        SynthesizeConfig,
        {
            "output": str(tmp_path / "out.jsonl"),
            "seeds": str(write_seeds(tmp_path / "s.jsonl")),
            "num_sessions": 4,
            "max_turns": 3,
            "asker_mode": "prompted",
            "asker": {"spec": spec, "batch_size": 4, "max_tokens": 8},
            "assistant": {"spec": spec, "batch_size": 4, "max_tokens": 8},
        },
    )
    backend = load_backend(cfg.asker)
    synthesize(cfg, asker=backend, assistant=backend)
    recs = read_out(tmp_path / "out.jsonl")
    assert len(recs) == 4 and len({r["id"] for r in recs}) == 4
    assert all(r["messages"][0]["content"] in SEED_QUESTIONS for r in recs)
    calls = backend.usage.requests
    # Every live session asks in one batch, then all are answered in one: one forward pass per
    # role per round (at most 3 answer rounds and 2 question rounds here), not one per call.
    assert calls >= 8 and backend.batches_run <= 5
    assert read_manifest(tmp_path / "out.jsonl")["usage"]["shared_backend"] is True


def test_sessions_opened_by_one_seed_question_sample_differently_on_a_local_backend(tmp_path, tiny_model_dir):
    """Each session's calls carry their own seeds: equal prompts in separate batches (batch size 1
    here) must not replay the same draws, or every session on a seed would be a copy."""
    spec = f"hf:{tiny_model_dir}"
    cfg = build_config(
        SynthesizeConfig,
        {
            "output": str(tmp_path / "out.jsonl"),
            "seeds": str(write_seeds(tmp_path / "s.jsonl", SEED_QUESTIONS[:1])),
            "num_sessions": 4,
            "max_turns": 1,
            "asker_mode": "prompted",
            "asker": {"spec": spec, "batch_size": 1, "max_tokens": 8},
            "assistant": {"spec": spec, "batch_size": 1, "max_tokens": 12, "temperature": 1.0},
        },
    )
    backend = load_backend(cfg.assistant)
    synthesize(cfg, asker=backend, assistant=backend)
    recs = read_out(tmp_path / "out.jsonl")
    assert {r["messages"][0]["content"] for r in recs} == {SEED_QUESTIONS[0]}
    answers = [r["messages"][1]["content"] for r in recs]
    assert len(set(answers)) == 4, answers


@pytest.fixture(scope="module")
def smollm2_server():
    """SmolLM2 behind a real llama.cpp server, one thread: on a busy shared CPU, llama.cpp's
    threads spin-wait for each other and decoding with all cores runs ~10x slower than with one."""
    pytest.importorskip("xllamacpp")
    backend = load_backend("smollm2", slots=4, ctx_size=4096, threads=1).start()
    try:
        yield backend
    finally:
        backend.close()


def test_prompted_self_chat_with_smollm2_on_a_real_llamacpp_server(tmp_path, smollm2_server):
    url = smollm2_server.base_url
    cfg = build_config(
        SynthesizeConfig,
        {
            "output": str(tmp_path / "out.jsonl"),
            "seeds": str(write_seeds(tmp_path / "s.jsonl")),
            "num_sessions": 3,
            "max_turns": 2,
            "asker_mode": "prompted",
            "asker": {"spec": "openai:smollm2", "base_url": url, "max_tokens": 16, "concurrency": 4},
            "assistant": {"spec": "openai:smollm2", "base_url": url, "max_tokens": 16, "concurrency": 4},
        },
    )
    synthesize(cfg)
    recs = read_out(tmp_path / "out.jsonl")
    assert len(recs) == 3
    for r in recs:
        assert r["messages"][0]["content"] in SEED_QUESTIONS
        assert r["messages"][1]["role"] == "assistant" and r["messages"][1]["content"].strip()
        assert r["meta"]["asker"]["mode"] == "prompted"
        assert r["meta"]["end_reason"] in ("max_turns", "stop_marker", "repeated_question", "echoed_answer")
    man = read_manifest(tmp_path / "out.jsonl")
    assert man["complete"] and man["timings"]["completion_tokens"] > 0


def test_a_session_that_outgrows_the_context_goes_on_with_its_oldest_turns_left_out(tmp_path, smollm2_tokenizer_dir):
    from fixtures.models import build_tiny_model

    spec = f"hf:{build_tiny_model(tmp_path / 'ctx512', smollm2_tokenizer_dir, positions=512)}"
    cfg = build_config(
        SynthesizeConfig,
        {
            "output": str(tmp_path / "out.jsonl"),
            "seeds": str(write_seeds(tmp_path / "s.jsonl")),
            "num_sessions": 2,
            "max_turns": 6,
            "asker_mode": "prompted",
            "asker": {"spec": spec, "max_tokens": 40, "temperature": 1.0},
            "assistant": {"spec": spec, "max_tokens": 120, "temperature": 1.0},
        },
    )
    synthesize(cfg)
    recs = read_out(tmp_path / "out.jsonl")
    assert len(recs) == 2
    long_ = [r for r in recs if r["meta"]["turns"] == 6]
    assert long_, [r["meta"]["end_reason"] for r in recs]  # random weights: sessions run to max_turns
    for r in long_:
        # the prompted asker's system prompt plus ~6 x 160 tokens outgrow 512 positions
        assert r["meta"]["shortened"]["assistant"]["calls"] >= 1
        assert r["meta"]["shortened"]["assistant"]["max_turns_dropped"] >= 1
    counts = read_manifest(tmp_path / "out.jsonl")["counts"]
    assert counts["calls_shortened:assistant"] >= 1 and counts["sessions"] == 2
