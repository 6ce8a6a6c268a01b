"""The stage table: the command line and the pipeline read the same rows."""

import pytest

from parrot import ParrotError
from parrot.cli import COMMANDS, parse_args
from parrot.core.config import build_config
from parrot.pipeline import STEPS, PipelineConfig, stage_config
from parrot.stages import STAGES


def test_every_stage_is_a_command_and_every_pipeline_step_runs_a_row_of_the_table():
    assert [c for c in COMMANDS if c in STAGES] == STAGES
    for stage in STAGES:
        args = parse_args([*stage.name.split(), "--config", "x.yaml"])
        assert args._command is stage
    assert all(step.stage in STAGES for step in STEPS)


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.name)
def test_unknown_keys_are_collected_or_refused_alike_on_the_command_line_and_in_the_pipeline(step, tmp_path):
    """Training stages pass unknown keys on to TRL (``trl_args``); every other stage refuses them."""
    cfg = build_config(PipelineConfig, {"workdir": str(tmp_path), "stages": []})
    setattr(cfg, step.name, {"logging_steps": 5})
    if step.stage.unknown_keys:
        assert stage_config(step, cfg).trl_args == {"logging_steps": 5}
        assert step.name.startswith("train_")
    else:
        with pytest.raises(ParrotError, match=f": {step.name}: unknown key 'logging_steps'"):
            stage_config(step, cfg)
