"""`parrot pipeline`: named steps, their wiring and settings, skip-if-done, and reruns of what changed."""

import dataclasses
import json
from pathlib import Path

import pytest
from test_file_errors import error_line

import parrot.pipeline as pipeline_mod
from parrot import ParrotError
from parrot.cli import main
from parrot.core.config import build_config
from parrot.core.fingerprint import config_hash, selection
from parrot.core.manifest import write_manifest
from parrot.core.outputs import writes_output
from parrot.pipeline import PipelineConfig, stage_config, step_state
from parrot.pipeline.configs import shipped


def _source(tmp_path, n=20):
    path = tmp_path / "logs.jsonl"
    rows = [
        {
            "id": f"c{i}",
            "conversations": [{"from": "human", "value": f"question {i}?"}, {"from": "gpt", "value": f"answer {i}."}],
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _statuses(out):
    """{step: status} from the last step table printed."""
    table = out.rsplit("parrot pipeline:", 1)[1].split("\ntotal")[0].splitlines()[3:]
    return {line.split()[0]: line.rsplit(None, 1)[0].split("  ")[-1].strip() for line in table if line.strip()}


def _yaml(tmp_path, text):
    path = tmp_path / "pipe.yaml"
    path.write_text(text)
    return str(path)


def _cfg(tmp_path, steps=None, overrides=None, **top):
    return build_config(PipelineConfig, {"workdir": str(tmp_path), "steps": steps or {}, **top}, overrides)


def test_the_default_experiment_wires_every_arm_into_the_work_directory(tmp_path):
    cfg = _cfg(tmp_path)
    names = [s.name for s in cfg.graph]
    assert {"synth_parrot", "synth_selfchat", "sft_selfchat", "sft_parrot", "capo_dpo", "report"} <= set(names)
    for step in cfg.graph:  # every input comes before the step that reads it
        assert all(names.index(i) < names.index(step.name) for i in step.inputs)
    by = {s.name: stage_config(s, cfg) for s in cfg.graph}
    assert by["ask"].eval_data == str(tmp_path / "data/sharegpt.dev.jsonl")
    assert by["synth_parrot"].asker.spec == f"hf:{tmp_path / 'models/ask'}"
    selfchat = by["synth_selfchat"]
    assert selfchat.asker_mode == "prompted" and selfchat.assistant == by["synth_parrot"].assistant
    guardrails = ("min_turns", "max_redraws", "min_question_words", "max_question_words")
    assert [getattr(selfchat, g) for g in guardrails] == [getattr(by["synth_parrot"], g) for g in guardrails]
    demo = _cfg(tmp_path, steps={"synth_parrot": {"min_turns": 3}})  # both simulators held alike
    assert stage_config(demo.step("synth_selfchat"), demo).min_turns == 3
    # a setting of a role that names another step's role lands on the role it names
    tuned = _cfg(tmp_path, overrides=["steps.synth_selfchat.assistant.threads=1"])
    mine = stage_config(tuned.step("synth_selfchat"), tuned).assistant
    assert mine.threads == 1 and mine.spec == stage_config(tuned.step("synth_parrot"), tuned).assistant.spec
    assert stage_config(tuned.step("synth_parrot"), tuned).assistant.threads is None
    assert by["capo"].max_length == by["capo_dpo"].max_length and by["capo"].tokenizer == by["sft_parrot"].model
    assert by["capo_dpo"].model == str(tmp_path / "models/sft_parrot")
    judged = [stage_config(cfg.step(n), cfg).output for n in ("mtbenchpp_base", "mtbenchpp_capo")]
    assert set(judged) <= set(by["judge_mtbenchpp"].answers)
    assert cfg.step("capo_dpo").inputs == ("capo", "sft_parrot")


def test_a_config_merges_into_steps_adds_drops_and_sets_defaults_per_stage(tmp_path):
    cfg = _cfg(
        tmp_path,
        steps={
            "synth_parrot": {"num_sessions": 7, "asker": {"temperature": 1.0}},
            "capo_ignore": {"stage": "capo", "dialogues": ["{parrot}"], "strategies": ["ignore"]},
            "report": None,
        },
        defaults={"eval_answer": {"limit": 3}, "train-chat": {"max_steps": 2}},
        serve="gguf",
        overrides=["steps.capo_dpo.beta=0.2"],
    )
    synth = stage_config(cfg.step("synth_parrot"), cfg)
    assert synth.num_sessions == 7 and synth.asker.temperature == 1.0
    assert synth.asker.spec == f"gguf:{tmp_path / 'models/ask'}"  # {serve}
    assert stage_config(cfg.step("synth_selfchat"), cfg).num_sessions == 7  # "{synth_parrot.num_sessions}"
    assert str(stage_config(cfg.step("capo_ignore"), cfg).output) == str(tmp_path / "data/capo_ignore.jsonl")
    assert "report" not in [s.name for s in cfg.graph]
    assert stage_config(cfg.step("mtbenchpp_parrot"), cfg).limit == 3
    assert stage_config(cfg.step("sft_parrot"), cfg).trl_args["max_steps"] == 2
    assert stage_config(cfg.step("capo_dpo"), cfg).trl_args["beta"] == 0.2
    # the order is the experiment's, whichever layer last touched a step
    names = [s.name for s in cfg.graph]
    assert names.index("synth_parrot") < names.index("synth_selfchat") < names.index("capo_dpo")
    with pytest.raises(ParrotError, match=r"mtbenchpp_base: '\{mtbench_base.model\}' names no step"):
        _cfg(tmp_path, steps={"mtbench_base": None})  # a step others read cannot go alone


def test_executor_ray_reaches_every_step_that_calls_models_item_by_item_unless_a_step_says_otherwise(tmp_path):
    cfg = _cfg(tmp_path, steps={"judge_mtbench": {"executor": "local"}}, executor="ray")
    on = {s.name: getattr(stage_config(s, cfg), "executor", None) for s in cfg.graph}
    assert {n for n, e in on.items() if e == "ray"} == {
        "synth_parrot",
        "synth_selfchat",
        "capo",
        *(n for n in on if n.startswith(("mtbench_", "mtbenchpp_", "verified_"))),
        "judge_mtbenchpp",
    }
    assert on["judge_mtbench"] == "local" and on["sft_parrot"] is None and on["stats"] is None
    # where the models run is not part of what a step makes: no step goes out of date
    local = _cfg(tmp_path)
    assert all(config_hash(stage_config(s, cfg)) == config_hash(stage_config(s, local)) for s in cfg.graph)


def test_an_output_setting_is_resolved_alike_for_its_step_and_for_the_steps_that_read_it(tmp_path):
    cfg = _cfg(tmp_path, steps={"parrot": {"output": "{workdir}/{serve}/p.jsonl"}}, serve="gguf")
    assert stage_config(cfg.step("parrot"), cfg).output == str(tmp_path / "gguf/p.jsonl")
    assert stage_config(cfg.step("sft_parrot"), cfg).data == [str(tmp_path / "gguf/p.jsonl")]


def test_a_mistyped_setting_names_the_step_and_the_line_before_anything_runs(tmp_path, capsys):
    workdir = tmp_path / "wd"
    source = f"steps.sharegpt.source=[{_source(tmp_path)}]"
    rc = main(["pipeline", f"workdir={workdir}", "steps.judge_mtbench.judje=openai:x", source])
    assert rc == 2 and "error: command line: judge_mtbench: unknown key 'judje'" in capsys.readouterr().err
    config = _yaml(tmp_path, f"workdir: {workdir}\nsteps:\n  capo_dpo:\n    beta: 0.1\n    bta: 0.2\n")
    assert main(["pipeline", "--config", config, source]) == 2
    err = capsys.readouterr().err
    assert f"{config}:5: capo_dpo: unknown key 'bta'" in err and "did you mean 'beta'?" in err
    assert not workdir.exists()  # prepare never ran
    # a step left out with `only` is checked too: every step's settings before the first step runs
    with pytest.raises(ParrotError, match="parrot: unknown key 'min_turnz'.*did you mean 'min_turns'"):
        _cfg(tmp_path, steps={"parrot": {"min_turnz": 2}}, only=["sharegpt"])


def test_a_step_setting_out_of_range_in_yaml_stops_the_plan_naming_its_line(tmp_path, capsys):
    config = _yaml(tmp_path, f"workdir: {tmp_path / 'w'}\nsteps:\n  synth_selfchat:\n    num_sessions: -3\n")
    assert main(["pipeline", "--config", config, "--plan"]) == 2
    assert error_line(capsys) == (
        f"parrot pipeline: error: {config}:4: synth_selfchat: num_sessions: expected at least 1, found -3"
    )


def test_a_step_setting_out_of_range_on_the_command_line_stops_the_plan(tmp_path, capsys):
    assert main(["pipeline", f"workdir={tmp_path / 'w'}", "steps.synth_selfchat.num_sessions=-3", "--plan"]) == 2
    assert error_line(capsys) == (
        "parrot pipeline: error: command line: synth_selfchat: num_sessions: expected at least 1, found -3"
    )


def test_a_step_given_twice_in_a_config_names_both_lines(tmp_path, capsys):
    text = (
        f"workdir: {tmp_path / 'w'}\nsteps:\n  synth_parrot:\n    num_sessions: 3\n  synth_parrot:\n    max_turns: 2\n"
    )
    config = _yaml(tmp_path, text)
    assert main(["pipeline", "--config", config, "--plan"]) == 2
    assert error_line(capsys) == f"parrot pipeline: error: {config}:3 and {config}:5: duplicate key 'synth_parrot'"


def test_an_alias_bomb_in_a_config_is_one_error_naming_the_file(tmp_path, capsys):
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]  # 9**9 values expanded
    config = _yaml(tmp_path, "\n".join(lines) + "\n")
    assert main(["pipeline", "--config", config, "--plan"]) == 2
    assert error_line(capsys) == (
        f"parrot pipeline: error: {config}:6: aliases expand to more than 100000 values (an alias bomb?)"
    )


def test_a_config_that_is_not_utf8_is_one_error_naming_the_file(tmp_path, capsys):
    config = tmp_path / "pipe.yaml"
    config.write_bytes(f"workdir: {tmp_path / 'w'}\nserve: gguf # caf\xe9\n".encode("latin-1"))
    assert main(["pipeline", "--config", str(config), "--plan"]) == 2
    offset = config.read_bytes().index(b"\xe9")
    assert error_line(capsys) == (
        f"parrot pipeline: error: {config}:2: not UTF-8 text (byte 0xe9 at offset {offset}): save the file as UTF-8"
    )


def test_a_config_from_before_named_steps_is_told_where_its_settings_go(tmp_path, capsys):
    config = _yaml(tmp_path, f"workdir: {tmp_path / 'w'}\nsynthesize:\n  num_sessions: 3\n")
    assert main(["pipeline", "--config", config]) == 2
    err = capsys.readouterr().err
    assert (
        f"{config}:2: unknown key 'synthesize' for PipelineConfig; a stage's settings go under one of its steps" in err
    )


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ({"x": {"stage": "synthesise"}}, r"steps: x: stage: expected one of prepare, .*found 'synthesise'"),
        ({"x": {"stage": "filter", "input": "{synth_parot}"}}, r"steps: x: '\{synth_parot\}' names no step"),
        ({"x": {"stage": "filter", "input": "{parrot:dev}"}}, r"'\{parrot:dev\}': a filter step has no side outputs"),
        ({"a": {"stage": "filter", "input": "{b}"}, "b": {"stage": "filter", "input": "{a}"}}, "in a cycle"),
        ({"x-y": {"stage": "filter", "input": "a.jsonl"}}, "a step's name is letters, digits and underscores"),
        ({"x": ["filter"]}, "expected a mapping of settings with a stage"),
    ],
)
def test_a_bad_step_is_an_error_naming_it(tmp_path, steps, message):
    with pytest.raises(ParrotError, match=message):
        _cfg(tmp_path, steps=steps)


def test_unknown_step_names_in_only_and_rerun_are_errors(tmp_path):
    with pytest.raises(ParrotError, match="unknown step.*trainask"):
        _cfg(tmp_path, only=["sharegpt", "trainask"])
    with pytest.raises(ParrotError, match="defaults: 'synthesise' is not a stage"):
        _cfg(tmp_path, defaults={"synthesise": {"num_sessions": 2}})


def _prepare_only(tmp_path, extra=""):
    src = _source(tmp_path)
    return _yaml(
        tmp_path,
        f"workdir: {tmp_path / 'w'}\nonly: [sharegpt]\n"
        f"steps:\n  sharegpt: {{source: [{src}], dev_fraction: 0.0}}\n{extra}",
    )


def test_a_finished_step_is_skipped_and_a_changed_one_reruns(tmp_path, capsys):
    config = _prepare_only(tmp_path)
    assert main(["pipeline", "--config", config]) == 0
    out = tmp_path / "w/data/sharegpt.jsonl"
    assert len(out.read_text().splitlines()) == 20
    printed = capsys.readouterr().out
    assert "[1/1] sharegpt (prepare): new" in printed and _statuses(printed) == {"sharegpt": "done"}
    assert main(["pipeline", "--config", config]) == 0
    assert _statuses(capsys.readouterr().out) == {"sharegpt": "up to date"}
    assert main(["pipeline", "--config", config, "steps.sharegpt.dev_fraction=0.5"]) == 0
    assert "sharegpt (prepare): settings changed" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) < 20
    # every session has one turn: a setting that drops them all stops the run, saying so
    assert main(["pipeline", "--config", config, "steps.sharegpt.min_turns=2"]) == 2
    err = capsys.readouterr().err
    assert "stopped at sharegpt: prepare kept 0 of 20 records" in err and "lower min_turns=2" in err
    manifest = json.loads((tmp_path / "w/pipeline.manifest.json").read_text())
    assert manifest["steps"][0]["step"] == "sharegpt"


def test_plan_prints_each_steps_stage_inputs_and_state_and_runs_nothing(tmp_path, capsys):
    assert main(["pipeline", f"workdir={tmp_path / 'w'}", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "capo_dpo" in out and "capo, sft_parrot" in out and "new" in out
    assert not (tmp_path / "w").exists()


def _write_output(cfg, text: str):
    """Stand-in outputs: the stage's output files, or a file in its output folder (a model)."""
    files = [p for p in cfg.output_files() if p.suffix] or [Path(cfg.output) / "made.txt"]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _recording_stages(monkeypatch, seen: list):
    """Every stage's run replaced by one that records the step and writes its output and a complete manifest."""

    def record(cfg):
        seen.append((cfg.output, cfg.resume))
        _write_output(cfg, config_hash(cfg) + json.dumps(selection(cfg)))  # its settings, inputs and items
        write_manifest(cfg)

    stages = [dataclasses.replace(s, run=writes_output(record)) for s in pipeline_mod.steps.STAGES]  # the real rule
    monkeypatch.setattr(pipeline_mod.steps, "STAGES", stages)


def test_changing_one_arm_reruns_that_arm_and_what_reads_it_and_nothing_else(tmp_path, monkeypatch, capsys):
    seen = []
    _recording_stages(monkeypatch, seen)
    w = tmp_path / "w"
    assert main(["pipeline", f"workdir={w}"]) == 0
    cfg = _cfg(w)
    assert len(seen) == len(cfg.graph)
    capsys.readouterr()
    assert main(["pipeline", f"workdir={w}"]) == 0
    assert set(_statuses(capsys.readouterr().out).values()) == {"up to date"}
    # the self-chat arm's filter changes: its data, its model, that model's answers, both judges,
    # the verifier, the report
    assert main(["pipeline", f"workdir={w}", "steps.selfchat.min_turns=3"]) == 0
    done = {k for k, v in _statuses(capsys.readouterr().out).items() if v == "done"}
    assert done == {
        "selfchat", "stats", "sft_selfchat", "mtbench_selfchat", "mtbenchpp_selfchat", "verified_selfchat",
        "judge_mtbench", "judge_mtbenchpp", "verify", "report",
    }  # fmt: skip
    # a setting another step reads ("{capo_dpo.max_length}") reruns that step too
    assert main(["pipeline", f"workdir={w}", "steps.selfchat.min_turns=3", "steps.capo_dpo.max_length=256"]) == 0
    done = {k for k, v in _statuses(capsys.readouterr().out).items() if v == "done"}
    assert {"capo", "capo_dpo", "mtbench_capo", "report"} <= done and "sft_parrot" not in done


def test_an_interrupted_step_resumes_and_one_out_of_date_starts_over(tmp_path, monkeypatch):
    seen = []
    _recording_stages(monkeypatch, seen)
    w = tmp_path / "w"
    cfg = _cfg(w, only=["mtbench_base"])
    answer = stage_config(cfg.step("mtbench_base"), cfg)
    write_manifest(answer, complete=False)  # a run that crashed
    args = ["pipeline", f"workdir={w}", "--only", "mtbench_base"]
    assert main(args) == 0  # interrupted, same settings: resume
    assert main(args) == 0  # up to date: not called
    changed = [*args, "steps.mtbench_base.max_tokens=64"]
    assert main([*changed, "steps.mtbench_base.limit=2"]) == 0  # changed: over
    assert main([*changed, "steps.mtbench_base.limit=5"]) == 0  # more items: resumed
    assert main([*changed, "steps.mtbench_base.limit=3"]) == 0  # fewer: over, so it holds only those
    assert main([*changed, "steps.mtbench_base.limit=3", "--rerun", "mtbench_base"]) == 0
    assert [resume for _, resume in seen] == [True, False, True, False, False]


def test_step_state_follows_settings_completion_and_what_inputs_hold(tmp_path):
    cfg = _cfg(tmp_path)
    answer = cfg.step("mtbench_capo")
    answer_cfg = stage_config(answer, cfg)
    model = Path(stage_config(cfg.step("capo_dpo"), cfg).output)  # the model it answers with
    model.mkdir(parents=True)
    (model / "model.safetensors").write_text("weights")
    assert step_state(answer, cfg) == "new"
    write_manifest(answer_cfg, complete=False)
    assert step_state(answer, cfg) == "interrupted"
    write_manifest(answer_cfg)
    assert step_state(answer, cfg) == "up to date"
    changed = build_config(type(answer_cfg), {**vars(answer_cfg), "max_tokens": 7})
    assert step_state(answer, cfg, changed) == "settings changed"
    served = build_config(type(answer_cfg), {**vars(answer_cfg), "model": {"spec": answer_cfg.model.spec, "slots": 1}})
    assert step_state(answer, cfg, served) == "up to date"  # how it is served is not a setting
    (model / "model.safetensors").write_text("new weights")  # trained again: other contents
    assert step_state(answer, cfg) == "input changed: model.spec"


def test_placeholders_name_the_work_directory_and_other_steps_outputs(tmp_path):
    cfg = _cfg(tmp_path / "w", steps={"capo": {"dialogues": ["{workdir}/x.jsonl", "{selfchat}", "extra.jsonl"]}})
    capo = stage_config(cfg.step("capo"), cfg)
    assert [str(p) for p in capo.dialogues] == [
        str(tmp_path / "w/x.jsonl"),
        str(tmp_path / "w/data/selfchat.jsonl"),
        "extra.jsonl",
    ]
    assert cfg.step("capo").inputs == ("selfchat",)  # a file named in a setting is not a step


FOLLOW_UPS = [
    "Can you make it shorter?",
    "What about the second one?",
    "Why is that?",
    "Could you explain it again?",
    "And the last one?",
]


def _long_sessions(tmp_path, n=4):
    """ShareGPT-style logs: 6 turns each, ~150-token answers, follow-ups that lean on the history."""
    answer = "The first is the river, the second is the mill, and the last is the hall of records. " * 8
    rows = []
    for i in range(n):
        turns = [f"Tell me about place number {i} in the old town."] + FOLLOW_UPS
        conv = [
            m
            for k, q in enumerate(turns)
            for m in ({"from": "human", "value": q}, {"from": "gpt", "value": f"({i}.{k}) {answer}"})
        ]
        rows.append({"id": f"long{i}", "conversations": conv})
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_long_sessions_flow_from_prepare_through_capo_into_dpo_training(tmp_path, tiny_model_dir, capsys):
    """Histories of ~1,000 tokens against max_length 256: SFT splits the sessions, CaPO selects
    late turns that fit the DPO step's budget, and DPO trains on pairs with shortened prompts."""
    w = tmp_path / "w"
    config = _yaml(
        tmp_path,
        f"""workdir: {w}
only: [sharegpt, sft_parrot, capo, capo_dpo]
steps:
  sharegpt: {{source: [{_long_sessions(tmp_path)}], dev_fraction: 0.0}}
  sft_parrot: {{data: ["{{sharegpt}}"], model: {tiny_model_dir}, max_length: 256, max_steps: 1,
               per_device_train_batch_size: 2, disable_tqdm: true}}
  capo: {{dialogues: ["{{sharegpt}}"], generator: {{spec: "hf:{tiny_model_dir}", temperature: 1.0}}, max_tokens: 16,
         similarity_threshold: 1.0}}
  capo_dpo: {{max_length: 256, max_steps: 1, per_device_train_batch_size: 1, disable_tqdm: true}}
""",
    )
    assert main(["pipeline", "--config", config]) == 0
    chat = json.loads((w / "models/sft_parrot.manifest.json").read_text())["counts"]
    assert chat["sessions_shortened"] == 4 and chat["sessions_trained"] == 4 and "dropped_too_long" not in chat
    capo_counts = json.loads((w / "data/capo.jsonl.manifest.json").read_text())
    assert capo_counts["config"]["max_length"] == 256 and capo_counts["config"]["tokenizer"] == str(tiny_model_dir)
    pairs = [json.loads(line) for line in (w / "data/capo.jsonl").read_text().splitlines()]
    assert pairs and max(p["meta"]["turn"] for p in pairs) >= 4
    dpo = json.loads((w / "models/capo_dpo.manifest.json").read_text())["counts"]
    assert dpo["pairs_trained"] == len(pairs) and dpo["pairs_shortened"] > 0 and dpo["turns_dropped"] > 0
    assert _statuses(capsys.readouterr().out)["capo_dpo"] == "done"


def test_a_step_left_with_nothing_stops_the_pipeline_before_the_next_one(tmp_path, capsys):
    w = tmp_path / "w"
    config = _yaml(
        tmp_path,
        f"workdir: {w}\nonly: [sharegpt, parrot, sft_parrot]\n"
        f"steps:\n  sharegpt: {{source: [{_source(tmp_path)}], dev_fraction: 0.0}}\n"
        f"  parrot: {{input: '{{sharegpt}}', min_turns: 2}}\n",
    )
    assert main(["pipeline", "--config", config]) == 2
    captured = capsys.readouterr()
    assert "stopped at parrot: filter kept 0 of 20 sessions" in captured.err and "lower min_turns=2" in captured.err
    assert _statuses(captured.out) == {"sharegpt": "done", "parrot": "failed"}
    assert not (w / "models").exists()  # train-chat never started


@pytest.mark.parametrize("config", [None, *sorted(shipped())])
def test_every_setting_that_reads_another_steps_output_names_an_input(tmp_path, config):
    """What a step reads from another step is in a ``digest=True`` setting: it counts by contents in
    the fingerprint (a moved run stays up to date) and is pinned and locked as the step starts."""
    from parrot.core.config import load_yaml
    from parrot.core.fingerprint import named_inputs

    data = load_yaml(shipped()[config]) if config else {}
    cfg = build_config(PipelineConfig, [data, {"workdir": str(tmp_path)}])
    for step in cfg.graph:
        named = json.dumps(list(named_inputs(stage_config(step, cfg))))
        for name in step.inputs:  # its output or one of its side outputs (a dev split, a GGUF file)
            places = pipeline_mod.written_places(cfg.step(name), cfg)
            assert any(str(p) in named for p in places), f"{step.name} reads {name}"
