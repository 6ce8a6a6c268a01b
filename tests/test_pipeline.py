"""`parrot pipeline`: stage configs from the work directory plus YAML, skip-if-done, reruns."""

import json

import pytest

from parrot import ParrotError
from parrot.cli import main
from parrot.config import build_config
from parrot.pipeline import STAGES, PipelineConfig, stage_config


def _source(tmp_path):
    path = tmp_path / "logs.jsonl"
    rows = [{"id": f"c{i}", "conversations": [{"from": "human", "value": f"question {i}?"},
                                              {"from": "gpt", "value": f"answer {i}."}]} for i in range(20)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _yaml(tmp_path, text):
    path = tmp_path / "pipe.yaml"
    path.write_text(text)
    return str(path)


def test_every_stage_builds_its_config_from_the_work_directory(tmp_path):
    cfg = build_config(PipelineConfig, {"workdir": str(tmp_path)})
    for stage in STAGES:
        stage_cfg = stage_config(stage, cfg)
        assert str(tmp_path) in json.dumps(stage_cfg, default=lambda o: getattr(o, "__dict__", str(o)))


def test_yaml_section_settings_win_and_nested_roles_merge(tmp_path):
    cfg = build_config(PipelineConfig, {"workdir": str(tmp_path),
                                        "synthesize": {"num_sessions": 7, "asker": {"temperature": 1.0}},
                                        "train_chat": {"max_steps": 3}})
    synth = stage_config(next(s for s in STAGES if s.name == "synthesize"), cfg)
    assert synth.num_sessions == 7
    assert synth.asker.temperature == 1.0 and synth.asker.spec == f"hf:{tmp_path / 'models/ask'}"
    chat = stage_config(next(s for s in STAGES if s.name == "train_chat"), cfg)
    assert chat.trl_args["max_steps"] == 3


def test_a_bad_stage_setting_names_the_stage(tmp_path):
    cfg = build_config(PipelineConfig, {"workdir": str(tmp_path), "filter": {"min_turnz": 2}})
    with pytest.raises(ParrotError, match="pipeline: filter: unknown key 'min_turnz'"):
        stage_config(next(s for s in STAGES if s.name == "filter"), cfg)


def test_unknown_stage_name_is_an_error():
    with pytest.raises(ParrotError, match="unknown stage"):
        build_config(PipelineConfig, {"stages": ["prepare", "trainask"]})


def test_finished_stage_is_skipped_and_a_changed_one_reruns(tmp_path, capsys):
    src = _source(tmp_path)
    config = _yaml(tmp_path, f"workdir: {tmp_path / 'w'}\nstages: [prepare]\n"
                             f"prepare: {{source: [{src}], dev_fraction: 0.0}}\n")
    assert main(["pipeline", "--config", config]) == 0
    out = tmp_path / "w/data/sharegpt.jsonl"
    assert len(out.read_text().splitlines()) == 20
    assert "prepare    done" in capsys.readouterr().out
    assert main(["pipeline", "--config", config]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["pipeline", "--config", config, "prepare.min_turns=2"]) == 0
    assert "prepare    done" in capsys.readouterr().out
    assert out.read_text() == ""  # every session has one turn: all dropped by the new setting
    manifest = json.loads((tmp_path / "w/pipeline.manifest.json").read_text())
    assert manifest["stages"][0]["stage"] == "prepare"
