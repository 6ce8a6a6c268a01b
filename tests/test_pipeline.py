"""`parrot pipeline`: stage configs from the work directory plus YAML, skip-if-done, reruns."""

import dataclasses
import json

import pytest

from parrot import ParrotError
from parrot.cli import main
from parrot.core.config import build_config
from parrot.pipeline import STEPS, PipelineConfig, stage_config


def _source(tmp_path):
    path = tmp_path / "logs.jsonl"
    rows = [
        {
            "id": f"c{i}",
            "conversations": [{"from": "human", "value": f"question {i}?"}, {"from": "gpt", "value": f"answer {i}."}],
        }
        for i in range(20)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _statuses(out):
    """{stage: status} from the last stage table printed."""
    table = out.rsplit("parrot pipeline:", 1)[1].split("total")[0].splitlines()[3:]
    return {line.split()[0]: " ".join(line.split()[1:-1]) for line in table if line.strip()}


def _yaml(tmp_path, text):
    path = tmp_path / "pipe.yaml"
    path.write_text(text)
    return str(path)


def test_every_stage_builds_its_config_from_the_work_directory(tmp_path):
    cfg = build_config(PipelineConfig, {"workdir": str(tmp_path)})
    for stage in STEPS:
        stage_cfg = stage_config(stage, cfg)
        assert str(tmp_path) in json.dumps(stage_cfg, default=lambda o: getattr(o, "__dict__", str(o)))


def test_yaml_section_settings_win_and_nested_roles_merge(tmp_path):
    cfg = build_config(
        PipelineConfig,
        {
            "workdir": str(tmp_path),
            "synthesize": {"num_sessions": 7, "asker": {"temperature": 1.0}},
            "train_chat": {"max_steps": 3},
        },
    )
    synth = stage_config(next(s for s in STEPS if s.name == "synthesize"), cfg)
    assert synth.num_sessions == 7
    assert synth.asker.temperature == 1.0 and synth.asker.spec == f"hf:{tmp_path / 'models/ask'}"
    chat = stage_config(next(s for s in STEPS if s.name == "train_chat"), cfg)
    assert chat.trl_args["max_steps"] == 3


def test_a_bad_stage_setting_names_the_stage(tmp_path):
    with pytest.raises(ParrotError, match="config: filter: unknown key 'min_turnz'.*did you mean 'min_turns'"):
        build_config(PipelineConfig, {"workdir": str(tmp_path), "filter": {"min_turnz": 2}})
    # A stage that is not selected is not checked.
    build_config(PipelineConfig, {"workdir": str(tmp_path), "filter": {"min_turnz": 2}, "stages": ["prepare"]})


def test_a_later_stages_typo_stops_the_run_before_the_first_stage(tmp_path, capsys):
    workdir = tmp_path / "wd"
    source = f"prepare.source=[{_source(tmp_path)}]"
    rc = main(["pipeline", f"workdir={workdir}", "eval_judge.judje=openai:x", source])
    assert rc == 2 and "error: command line: eval_judge: unknown key 'judje'" in capsys.readouterr().err
    rc = main(["pipeline", f"workdir={workdir}", "train_dpo.bta=0.1", source])
    err = capsys.readouterr().err
    assert rc == 2 and "command line: train_dpo: unknown key 'bta'" in err and "did you mean 'beta'?" in err
    config = _yaml(tmp_path, f"workdir: {workdir}\ntrain_dpo:\n  beta: 0.1\n  bta: 0.2\n")
    assert main(["pipeline", "--config", config, source]) == 2
    assert f"{config}:4: train_dpo: unknown key 'bta'" in capsys.readouterr().err  # the YAML line
    assert not workdir.exists()  # prepare never ran


def test_unknown_stage_name_is_an_error():
    with pytest.raises(ParrotError, match="unknown stage"):
        build_config(PipelineConfig, {"stages": ["prepare", "trainask"]})


def test_finished_stage_is_skipped_and_a_changed_one_reruns(tmp_path, capsys):
    src = _source(tmp_path)
    config = _yaml(
        tmp_path, f"workdir: {tmp_path / 'w'}\nstages: [prepare]\nprepare: {{source: [{src}], dev_fraction: 0.0}}\n"
    )
    assert main(["pipeline", "--config", config]) == 0
    out = tmp_path / "w/data/sharegpt.jsonl"
    assert len(out.read_text().splitlines()) == 20
    assert "prepare    done" in capsys.readouterr().out
    assert main(["pipeline", "--config", config]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["pipeline", "--config", config, "prepare.dev_fraction=0.5"]) == 0
    assert "prepare    done" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) < 20
    # every session has one turn: a setting that drops them all stops the run, saying so
    assert main(["pipeline", "--config", config, "prepare.min_turns=2"]) == 2
    err = capsys.readouterr().err
    assert "stopped at prepare: prepare kept 0 of 20 records" in err and "lower min_turns=2" in err
    manifest = json.loads((tmp_path / "w/pipeline.manifest.json").read_text())
    assert manifest["stages"][0]["stage"] == "prepare"


def test_a_rerun_upstream_stage_makes_the_stages_reading_from_it_run_again(tmp_path, capsys):
    src = _source(tmp_path)
    w = tmp_path / "w"
    config = _yaml(
        tmp_path,
        f"workdir: {w}\nstages: [prepare, filter]\n"
        f"prepare: {{source: [{src}], dev_fraction: 0.0}}\n"
        f"filter: {{input: {w / 'data/sharegpt.jsonl'}, min_turns: 1}}\n",
    )
    assert main(["pipeline", "--config", config]) == 0
    assert len((w / "data/parrot.jsonl").read_text().splitlines()) == 20
    capsys.readouterr()
    assert main(["pipeline", "--config", config]) == 0
    assert _statuses(capsys.readouterr().out) == {"prepare": "up to date", "filter": "up to date"}
    # filter reads prepare's output (through synthesize): a changed prepare reruns both
    assert main(["pipeline", "--config", config, "prepare.dev_fraction=0.5"]) == 0
    assert _statuses(capsys.readouterr().out) == {"prepare": "done", "filter": "done"}
    assert len((w / "data/parrot.jsonl").read_text().splitlines()) < 20
    # and asking for prepare alone leaves filter out of date for the next full run
    assert main(["pipeline", "--config", config, "--stages", "prepare", "prepare.dev_fraction=0.0"]) == 0
    assert main(["pipeline", "--config", config]) == 0
    assert _statuses(capsys.readouterr().out) == {"prepare": "up to date", "filter": "done"}
    assert len((w / "data/parrot.jsonl").read_text().splitlines()) == 20


def test_a_resumable_stage_resumes_when_interrupted_and_starts_over_when_out_of_date(tmp_path, monkeypatch):
    import parrot.pipeline as pipeline_mod
    from parrot.core.manifest import write_manifest

    seen = []

    def fake_answer(cfg, complete=True):
        seen.append(cfg.overwrite)
        write_manifest(cfg.output, stage="eval answer", config=cfg, complete=complete)

    steps = [dataclasses.replace(s, stage=dataclasses.replace(s.stage, run=fake_answer)) for s in STEPS]
    monkeypatch.setattr(pipeline_mod, "STEPS", steps)
    config = _yaml(tmp_path, f"workdir: {tmp_path / 'w'}\nstages: [eval_answer]\n")
    cfg = build_config(PipelineConfig, {"workdir": str(tmp_path / "w"), "stages": ["eval_answer"]})
    [stage] = [s for s in STEPS if s.name == "eval_answer"]
    fake_answer(stage_config(stage, cfg), complete=False)  # a run that crashed half way
    seen.clear()
    assert main(["pipeline", "--config", config]) == 0  # interrupted, same settings: resume
    assert main(["pipeline", "--config", config]) == 0  # up to date: not called
    assert main(["pipeline", "--config", config, "eval_answer.max_tokens=64"]) == 0  # changed: over
    assert main(["pipeline", "--config", config, "eval_answer.max_tokens=64", "--rerun", "eval_answer"]) == 0
    assert seen == [False, True, True]


def test_stage_state_follows_settings_completion_and_input_times(tmp_path):
    import os

    from parrot.core.manifest import write_manifest
    from parrot.pipeline import stage_state

    cfg = build_config(PipelineConfig, {"workdir": str(tmp_path)})
    by_name = {s.name: s for s in STEPS}
    dpo, answer = by_name["train_dpo"], by_name["eval_answer"]
    answer_cfg = stage_config(answer, cfg)
    assert stage_state(answer, answer_cfg, tmp_path) == "new"
    write_manifest(tmp_path / "eval/answers.jsonl", stage="eval answer", config=answer_cfg, complete=False)
    assert stage_state(answer, answer_cfg, tmp_path) == "interrupted"
    write_manifest(tmp_path / "eval/answers.jsonl", stage="eval answer", config=answer_cfg)
    assert stage_state(answer, answer_cfg, tmp_path) == "up to date"
    changed = build_config(type(answer_cfg), {**vars(answer_cfg), "max_tokens": 7})
    assert stage_state(answer, changed, tmp_path) == "settings changed"
    # a newer model two stages up (capo feeds train-dpo) puts the answers out of date
    capo_marker = by_name["capo"].marker(tmp_path)
    capo_marker.parent.mkdir(parents=True, exist_ok=True)
    capo_marker.write_text("{}")
    later = answer.marker(tmp_path).stat().st_mtime_ns + 10**9
    os.utime(capo_marker, ns=(later, later))
    assert stage_state(answer, answer_cfg, tmp_path) == "capo is newer"
    assert dpo.name in {s.name for s in __import__("parrot.pipeline").pipeline.upstream(answer)}


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
    late turns that fit train-dpo's budget, and DPO trains on pairs with shortened prompts."""
    w = tmp_path / "w"
    data = w / "data/sharegpt.jsonl"
    config = _yaml(
        tmp_path,
        f"""workdir: {w}
stages: [prepare, train_chat, capo, train_dpo]
prepare: {{source: [{_long_sessions(tmp_path)}], dev_fraction: 0.0}}
train_chat: {{data: [{data}], model: {tiny_model_dir}, max_length: 256, max_steps: 1,
             per_device_train_batch_size: 2, disable_tqdm: true}}
capo: {{dialogues: {data}, generator: {{spec: "hf:{tiny_model_dir}", temperature: 1.0}}, max_tokens: 16,
       similarity_threshold: 1.0}}
train_dpo: {{max_length: 256, max_steps: 1, per_device_train_batch_size: 1, disable_tqdm: true}}
""",
    )
    assert main(["pipeline", "--config", config]) == 0
    chat = json.loads((w / "models/chat.manifest.json").read_text())["counts"]
    assert chat["sessions_shortened"] == 4 and chat["sessions_trained"] == 4 and "dropped_too_long" not in chat
    capo_counts = json.loads((w / "data/capo.jsonl.manifest.json").read_text())
    assert capo_counts["config"]["max_length"] == 256 and capo_counts["config"]["tokenizer"] == str(tiny_model_dir)
    pairs = [json.loads(line) for line in (w / "data/capo.jsonl").read_text().splitlines()]
    assert pairs and max(p["meta"]["turn"] for p in pairs) >= 4
    dpo = json.loads((w / "models/dpo.manifest.json").read_text())["counts"]
    assert dpo["pairs_trained"] == len(pairs) and dpo["pairs_shortened"] > 0 and dpo["turns_dropped"] > 0
    assert _statuses(capsys.readouterr().out)["train_dpo"] == "done"


def test_a_stage_left_with_nothing_stops_the_pipeline_before_the_next_one(tmp_path, capsys):
    w = tmp_path / "w"
    config = _yaml(
        tmp_path,
        f"workdir: {w}\nstages: [prepare, filter, train_chat]\n"
        f"prepare: {{source: [{_source(tmp_path)}], dev_fraction: 0.0}}\n"
        f"filter: {{input: {w / 'data/sharegpt.jsonl'}, min_turns: 2}}\n",
    )
    assert main(["pipeline", "--config", config]) == 2
    captured = capsys.readouterr()
    assert "stopped at filter: filter kept 0 of 20 sessions" in captured.err and "lower min_turns=2" in captured.err
    assert _statuses(captured.out) == {"prepare": "done", "filter": "failed"}
    assert not (w / "models").exists()  # train-chat never started


def test_workdir_placeholder_in_a_setting_is_the_work_directory(tmp_path):
    cfg = build_config(
        PipelineConfig,
        {"workdir": str(tmp_path / "w"), "capo": {"dialogues": ["{workdir}/data/parrot.jsonl", "extra.jsonl"]}},
    )
    capo_cfg = stage_config(next(s for s in STEPS if s.name == "capo"), cfg)
    assert [str(p) for p in capo_cfg.dialogues] == [str(tmp_path / "w/data/parrot.jsonl"), "extra.jsonl"]


def test_a_stage_asked_for_more_items_resumes_and_one_with_other_settings_starts_over(tmp_path, monkeypatch):
    import parrot.pipeline as pipeline_mod
    from parrot.core.manifest import write_manifest
    from parrot.pipeline import stage_state

    cfg = build_config(PipelineConfig, {"workdir": str(tmp_path / "w"), "stages": ["eval_answer"]})
    [answer] = [s for s in STEPS if s.name == "eval_answer"]
    answer_cfg = stage_config(answer, cfg)
    write_manifest(answer_cfg.output, stage="eval answer", config=answer_cfg)
    assert stage_state(answer, answer_cfg, tmp_path / "w") == "up to date"
    more = build_config(type(answer_cfg), {**vars(answer_cfg), "limit": 5})  # fewer or more questions
    assert stage_state(answer, more, tmp_path / "w") == "more items"
    served = build_config(
        type(answer_cfg), {**vars(answer_cfg), "model": {"spec": answer_cfg.model.spec, "concurrency": 1}}
    )
    assert stage_state(answer, served, tmp_path / "w") == "up to date"  # how it is served is not a setting
    seen = []
    record = lambda c: seen.append((c.resume, c.overwrite))  # noqa: E731
    steps = [dataclasses.replace(s, stage=dataclasses.replace(s.stage, run=record)) for s in STEPS]
    monkeypatch.setattr(pipeline_mod, "STEPS", steps)
    config = _yaml(tmp_path, f"workdir: {tmp_path / 'w'}\nstages: [eval_answer]\n")
    assert main(["pipeline", "--config", config, "eval_answer.limit=5"]) == 0
    assert main(["pipeline", "--config", config, "eval_answer.max_tokens=64"]) == 0
    assert seen == [(True, False), (False, True)]
