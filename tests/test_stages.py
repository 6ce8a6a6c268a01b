"""The stage table: the command line and the pipeline read the same rows."""

import pytest

from parrot import ParrotError
from parrot.cli import COMMANDS, parse_args
from parrot.core.config import build_config
from parrot.pipeline import PipelineConfig, stage_config
from parrot.stages import STAGES


def test_every_stage_is_a_command_and_every_pipeline_step_runs_a_row_of_the_table():
    assert [c for c in COMMANDS if c in STAGES] == STAGES
    for stage in STAGES:
        args = parse_args([*stage.name.split(), "--config", "x.yaml"])
        assert args._command is stage
    cfg = build_config(PipelineConfig, {"workdir": "w"})
    assert all(step.stage in STAGES for step in cfg.graph)


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_unknown_keys_are_collected_or_refused_alike_on_the_command_line_and_in_the_pipeline(stage, tmp_path):
    """Training stages pass unknown keys on to TRL (``trl_args``); every other stage refuses them."""
    step = {"stage": stage.name, "logging_steps": 5, **({"data": ["x.jsonl"]} if stage.unknown_keys else {})}
    data = {"workdir": str(tmp_path), "steps": {"x": step}, "only": ["sharegpt"]}
    if stage.unknown_keys:
        cfg = build_config(PipelineConfig, data)
        assert stage_config(cfg.step("x"), cfg).trl_args == {"logging_steps": 5}
        assert stage.name.startswith("train-")
    else:  # every step is checked as the config is read, the steps --only leaves out too
        with pytest.raises(ParrotError, match=": x: unknown key 'logging_steps'"):
            build_config(PipelineConfig, data)
