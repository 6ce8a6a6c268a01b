"""The estimate's token arithmetic against hand counts on small fixtures: histories that grow, the
shortening rule, the cache, LoRA against full fine-tuning, prices; and the estimate of a pipeline
against the manifests of its finished steps."""

import pytest

from parrot import ParrotError
from parrot.pipeline.estimate import Price, find_price, params_from_name
from parrot.pipeline.tokens import (
    Template,
    Tokens,
    Training,
    conversation_calls,
    dpo_tokens,
    fitted_prompt,
    reused,
    train_flops_per_token,
)

# 2 tokens of opening and generation prompt, 1 around each message: easy to count by hand
T = Template(fixed=2, per_message=1, fixed_with_system=2)


def test_a_history_grows_by_each_question_and_answer():
    calls = conversation_calls([], [(10, 20), (30, 40), (5, 6)], T, cache="none")
    # call 1: 2 + (1+10); call 2: 2 + (1+10) + (1+20) + (1+30); call 3: that + (1+40) + (1+5)
    assert [c.prompt for c in calls] == [13, 65, 112]
    assert [c.completion for c in calls] == [20, 40, 6]
    assert [c.cached for c in calls] == [0, 0, 0]


def test_the_simulators_view_asks_after_each_answer():
    # asker view: system 7, opening 3, seed question 4 as the assistant; then answer 20 (user) -> question 5
    calls = conversation_calls([("system", 7), ("user", 3), ("assistant", 4)], [(20, 5), (30, 6)], T, cache="none")
    assert [c.prompt for c in calls] == [2 + 8 + 4 + 5 + 21, 40 + 6 + 31]


def test_the_prefix_cache_reuses_the_last_prompt_and_its_answer():
    calls = conversation_calls([], [(10, 20), (30, 40)], T, cache="prefix")
    assert calls[1].cached == calls[0].prompt + calls[0].completion == 33


def test_openai_caches_only_long_prompts_in_steps_of_128():
    assert reused("openai", 1000, 900) == 0
    assert reused("openai", 1500, 1300) == 1280
    assert reused("none", 1500, 1300) == 0
    assert reused("prefix", 50, 80) == 50  # never more than the prompt


def test_shortening_drops_the_oldest_whole_turns_first():
    # turns of (question 10, answer 20); a context of 100 with room min(30, 50) = 30 for the answer
    msgs = [("user", 10), ("assistant", 20), ("user", 10), ("assistant", 20), ("user", 10)]
    prompt, allowed, cut = fitted_prompt(msgs, T, context=100, max_tokens=30)
    # whole: 2 + 5 + 70 = 77 > 70; without the first turn: 2 + 3 + 40 = 45 fits
    assert (prompt, allowed, cut) == (45, 30, True)


def test_a_turn_too_long_alone_is_cut_to_the_room_left():
    prompt, allowed, cut = fitted_prompt([("user", 500)], T, context=100, max_tokens=30)
    assert (prompt, allowed, cut) == (70, 30, True)


def test_a_shortened_history_is_not_read_from_the_cache():
    calls = conversation_calls([], [(10, 20), (10, 20), (10, 20)], T, cache="prefix", context=80, max_tokens=20)
    # call 2 fits (2 + 3 + 40 = 45 + 20 <= 80), call 3 does not (2 + 5 + 70 = 77): its first turn goes
    assert [c.shortened for c in calls] == [False, False, True]
    assert calls[1].cached == 13 + 20 and calls[2].cached == 0
    assert calls[2].prompt == 45


def test_full_fine_tuning_costs_six_n_per_token_and_lora_four():
    assert train_flops_per_token(1e9) == 6e9
    assert train_flops_per_token(1e9, lora=True) == 4e9
    assert train_flops_per_token(1e9, lora=True, checkpointing=True) == 6e9
    full, lora = Training(1e9, tokens=1000), Training(1e9, tokens=1000, lora=True)
    assert (full.flops, lora.flops) == (6e12, 4e12)


def test_dpo_trains_on_both_answers_and_reads_them_again_for_the_reference():
    trained, reference = dpo_tokens(pairs=4, prompt=100, chosen=10, rejected=30)
    assert trained == reference == 4 * (100 + 10 + 100 + 30)
    t = Training(2.0, tokens=trained, forward_tokens=reference)
    assert t.flops == trained * 6 * 2.0 + reference * 2 * 2.0


def test_a_price_counts_cached_tokens_at_their_own_rate():
    tokens = Tokens(calls=3, prompt=2_000_000, cached=1_000_000, completion=500_000)
    assert Price(prompt=2.0, cached=0.5, completion=8.0).cost(tokens) == pytest.approx(2.0 + 0.5 + 4.0)


def test_prices_are_found_by_step_role_then_role_then_model():
    prices = {
        "judge": {"prompt": 1, "completion": 2},
        "judge_pp.judge": {"prompt": 3, "completion": 4},
        "openai:gpt-4": {"prompt": 5, "cached": 1, "completion": 6},
    }
    assert find_price(prices, "judge_pp", "judge", "openai:gpt-4").prompt == 3
    assert find_price(prices, "judge_mt", "judge", "openai:gpt-4").prompt == 1
    assert find_price(prices, "synth", "assistant", "openai:gpt-4").cached == 1
    assert find_price(prices, "synth", "asker", "openai:ask") is None


def test_a_bad_price_is_an_error_naming_it():
    with pytest.raises(ParrotError, match="costs: prices: judge: .*prompt"):
        find_price({"judge": {"prompt": 1}}, "j", "judge", "x")
    with pytest.raises(ParrotError, match="unknown key.*cahced"):
        find_price({"judge": {"prompt": 1, "completion": 2, "cahced": 1}}, "j", "judge", "x")


def test_model_sizes_are_read_from_names():
    assert params_from_name("meta-llama/Llama-3.1-8B-Instruct") == 8e9
    assert params_from_name("meta-llama/Llama-2-13b-hf") == 13e9
    assert params_from_name("SmolLM2-135M-Instruct") == 135e6
    assert params_from_name("gpt-4") is None


def test_the_measured_template_counts_a_conversation_as_the_tokenizer_does():
    from parrot.core.tokens import count_tokens, load_tokenizer, token_lengths

    tok = load_tokenizer("smollm2")
    t = Template.measure(tok)
    msgs = [
        {"role": "system", "content": "You answer in French."},
        {"role": "user", "content": "Name a long river in Europe, please."},
        {"role": "assistant", "content": "The Loire, about 1,006 km."},
        {"role": "user", "content": "And the Rhine?"},
    ]
    lengths = token_lengths(tok, [m["content"] for m in msgs])
    # within a token per message: BPE may join a message's first word to the template's newline
    assert abs(t.prompt(lengths, system=True) - count_tokens(tok, msgs, generation_prompt=True)) <= len(msgs)
    assert abs(t.prompt(lengths[1:]) - count_tokens(tok, msgs[1:], generation_prompt=True)) <= len(msgs) - 1
    assert t.fixed > t.fixed_with_system  # SmolLM2's template adds its own system message when none is given


def test_a_finished_steps_actual_numbers_come_from_its_manifest_and_the_pipelines_row(tmp_path):
    import json

    from parrot.core.config import build_config
    from parrot.pipeline import PipelineConfig, actual_steps
    from parrot.pipeline.bill import StepBill, compare_rows, compare_table
    from parrot.pipeline.estimate import RoleBill
    from parrot.pipeline.tokens import Tokens as Tk

    cfg = build_config(PipelineConfig, overrides=[f"workdir={tmp_path}"])
    (tmp_path / "data").mkdir()
    usage = {
        "asker": {"requests": 3, "prompt_tokens": 300, "cached_tokens": 200, "completion_tokens": 30},
        "assistant": {"requests": 3, "prompt_tokens": 100, "completion_tokens": 270},
        "shared_backend": False,
    }
    manifest = {"stage": "synthesize", "complete": True, "usage": usage, "timings": {"seconds": 50.0}}
    (tmp_path / "data" / "synth_parrot.jsonl.manifest.json").write_text(json.dumps(manifest))
    steps = [{"step": "synth_parrot", "stage": "synthesize", "status": "done", "seconds": 55.0}]
    (tmp_path / "pipeline.manifest.json").write_text(json.dumps({"stage": "pipeline", "steps": steps}))
    done = actual_steps(cfg)
    assert set(done) == {"synth_parrot"}
    got = done["synth_parrot"]
    assert (got.roles["asker"].tokens.cached, got.tokens, got.seconds) == (200, 300 + 30 + 100 + 270, 55.0)
    estimate = StepBill("synth_parrot", "synthesize", seconds=60.0)
    estimate.roles["asker"] = RoleBill("x", Tk(calls=3, prompt=500, completion=40))
    [row] = compare_rows([estimate], done)
    assert row == {
        "step": "synth_parrot",
        "stage": "synthesize",
        "tokens_estimate": 540,
        "seconds_estimate": 60.0,
        "tokens_actual": 700,
        "seconds_actual": 55.0,
    }
    assert "-23%" in compare_table([row]) and "+9%" in compare_table([row])  # (540-700)/700, (60-55)/55


def test_the_report_shows_the_runs_estimate_against_actual(tmp_path):
    import json

    from parrot.report.sections import estimate_section

    rows = [
        {"step": "judge", "stage": "eval judge", "tokens_estimate": 110, "seconds_estimate": 30.0},
        {"step": "ask", "stage": "train-ask", "tokens_estimate": 0, "seconds_estimate": 90.0},
    ]
    rows[0].update(tokens_actual=100, seconds_actual=40.0)
    rows[1].update(tokens_actual=0, seconds_actual=60.0)
    path = tmp_path / "estimate.json"
    path.write_text(json.dumps({"basis": "defaults", "compare": rows}))
    got = estimate_section(str(path))
    body = next(b["table"]["rows"] for b in got["blocks"] if "table" in b)
    assert body[0][2:] == ["110", "100", "+10%", "30", "40", "-25%"]
    assert body[-1][-3:] == ["120", "100", "+20%"]  # 30 + 90 against 40 + 60
    assert estimate_section(str(tmp_path / "missing.json"))["data"] is None


def test_capo_is_counted_on_the_follow_ups_the_context_detector_flags():
    from parrot.core.tokens import load_tokenizer, token_lengths
    from parrot.pipeline.estimate import measure

    tok = load_tokenizer("smollm2")
    count_tokens = lambda tok, text: token_lengths(tok, [text])[0]  # noqa: E731
    asked = ["Write a long poem about the sea at night, with rhymes.", "Why is that?", "List ten rivers of Europe."]
    session = [m for q in asked for m in ({"role": "user", "content": q}, {"role": "assistant", "content": "Sure."})]
    p = measure([{"id": "a", "messages": session}], tok, "x.jsonl", limit=10)
    assert p.followups == [count_tokens(tok, asked[1]), count_tokens(tok, asked[2])]
    assert p.context_followups == [count_tokens(tok, "Why is that?")]  # "that": refers back; the list does not


def test_a_finished_steps_output_is_measured_for_the_steps_that_read_it(tmp_path):
    import json

    from parrot.core.config import build_config
    from parrot.pipeline import PipelineConfig
    from parrot.pipeline.bill import Estimator
    from parrot.pipeline.steps import stage_config

    def write(name, sessions, complete=True):
        path = tmp_path / "data" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("".join(json.dumps({"id": f"s{i}", "messages": m}) + "\n" for i, m in enumerate(sessions)))
        manifest = {"stage": "x", "complete": complete, "counts": {"train": len(sessions)}}
        (tmp_path / "data" / f"{name}.manifest.json").write_text(json.dumps(manifest))
        return path

    def session(turns):
        return [
            m
            for t in range(turns)
            for m in ({"role": "user", "content": f"question {t}"}, {"role": "assistant", "content": "an answer " * 20})
        ]

    write("sharegpt.jsonl", [session(2)] * 30)  # the real data, prepared
    cfg = build_config(PipelineConfig, overrides=[f"workdir={tmp_path}"])
    est = Estimator(cfg, cfg.costs)
    synth = next(s for s in cfg.graph if s.name == "synth_parrot")
    est.step(synth)
    out = str(tmp_path / "data" / "synth_parrot.jsonl")
    assert est.made_by(out)["count"] == stage_config(synth, cfg).num_sessions  # not run: as estimated

    made = write("synth_parrot.jsonl", [session(5)] * 3, complete=False)  # still running: not its numbers
    assert Estimator(cfg, cfg.costs).finished(str(made)) is None
    write("synth_parrot.jsonl", [session(5)] * 3)  # finished: 3 sessions of 5 turns, as they are
    est = Estimator(cfg, cfg.costs)
    est.step(synth)
    measured = est.made_by(out)
    assert measured["count"] == 3 and [len(s) for s in measured["sessions"]] == [10, 10, 10]
