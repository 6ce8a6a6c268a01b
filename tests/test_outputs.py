"""One rule for an existing output, the same for every stage that writes one, and one fingerprint.

The rule is checked on every output-writing command of ``cli.COMMANDS`` with that command's own
config class (its declared files, its kind of ``--resume``) and the real decorator around a
stand-in body that writes what the stage would: the real stages' own tests run them twice."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from parrot import ParrotError
from parrot.cli import COMMANDS
from parrot.core.config import build_config
from parrot.core.fingerprint import config_hash, fingerprint
from parrot.core.locks import lock_path
from parrot.core.manifest import manifest_path, read_manifest, record_manifest, write_manifest
from parrot.core.outputs import (
    CHECKPOINT,
    CONTINUES,
    ONE_PASS,
    WritesOutput,
    failures_path,
    writes_output,
)

NOT_OUTPUTS = {"chat", "pipeline"}  # they write no single output
STAGES = [c for c in COMMANDS if c.name not in NOT_OUTPUTS]


def settings(name: str, tmp_path: Path) -> dict:
    """The least a stage's config needs, its inputs made (empty) in ``tmp_path``."""
    src = shard(tmp_path / "in.jsonl")
    out = str(tmp_path / "w" / "out")
    by_stage = {
        "prepare": {"source": [str(src)], "output": out + ".jsonl"},
        "synthesize": {"seeds": str(src), "output": out + ".jsonl"},
        "merge": {"inputs": [str(src)], "output": out + ".jsonl"},
        "filter": {"input": str(src), "output": out + ".jsonl"},
        "stats": {"data": [str(src)], "output": out},
        "capo": {"dialogues": [str(src)], "output": out + ".jsonl"},
        "capo select": {"dialogues": [str(src)], "output": out + ".jsonl"},
        "eval answer": {"output": out + ".jsonl"},
        "eval judge": {"answers": [str(src)], "output": out + ".jsonl"},
        "eval verify": {"answers": [str(src)], "output": out + ".jsonl"},
        "eval report": {"judgments": [str(src)], "output": out},
        "report": {"output": out},
    }
    return by_stage.get(name, {"data": [str(src)], "output": out})  # train-ask, train-chat, train-dpo


def shard(path: Path, text: str = "") -> Path:
    """A file (empty by default) that is also a finished one-shard synthesize output (what merge reads)."""
    path.write_text(text)
    record_manifest(
        path,
        stage="synthesize",
        config={"n": 0},
        counts={"sessions": 0},
        shard={"index": 0, "of": 1},
        expected_sessions=0,
    )
    return path


# A setting that changes what each stage makes.
CHANGED = {
    "prepare": {"min_turns": 2},
    "train-ask": {"max_length": 512},
    "synthesize": {"max_turns": 3},
    "merge": {"inputs": ["in2.jsonl"]},  # in the test's directory
    "filter": {"min_turns": 3},
    "stats": {"sample": 5},
    "train-chat": {"max_length": 512},
    "capo": {"max_tokens": 100},
    "capo select": {"max_per_session": 1},
    "train-dpo": {"max_length": 512},
    "eval answer": {"max_tokens": 64},
    "eval judge": {"bench": "mt-bench-pp"},
    "eval verify": {"n_boot": 500},
    "eval report": {"bench": "mt-bench-pp"},
    "report": {"n_boot": 500},
}


def make(cmd, tmp_path, **over):
    cls, _ = cmd.config, cmd.run
    return build_config(cls, {**settings(cmd.name, tmp_path), **over}, extra_field=cmd.unknown_keys)


class Stand_in:
    """What a stage writes: its declared files (a training run's typical ones), a failures file
    for a stage that keeps one, and its manifest. Records what the rule left at each call."""

    def __init__(self):
        self.calls: list[dict] = []
        self.run = writes_output(self.body)

    def body(self, cfg):
        self.calls.append({"cfg": cfg, "existing": sorted(files(cfg))})
        for path in produced(cfg):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"made by {cfg.STAGE}")
        write_manifest(cfg, counts={"made": len(self.calls)})
        return {"ran": True}


def produced(cfg) -> list[Path]:
    if cfg.RESUMES == CHECKPOINT:
        out = Path(cfg.output)
        return [out / "config.json", out / "model.safetensors", out / "checkpoint-1" / "trainer_state.json"]
    made = [p for p in cfg.output_files() if p.suffix]  # files, not directories
    return made + ([failures_path(cfg.output)] if cfg.RESUMES == CONTINUES else [])


def files(cfg) -> set[str]:
    """Every file in the work directory that holds the output (a run's lock file aside)."""
    root = Path(cfg.output).parent
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix != ".lock"}


def snapshot_of(cfg) -> dict:
    root = Path(cfg.output).parent
    return {str(p): (p.stat().st_ino, p.read_bytes()) for p in root.rglob("*") if p.is_file() and p.suffix != ".lock"}


@pytest.mark.parametrize("cmd", STAGES, ids=lambda c: c.name)
def test_every_stage_that_writes_an_output_declares_it_and_runs_under_the_rule(cmd):
    cls, fn = cmd.config, cmd.run
    assert issubclass(cls, WritesOutput) and cls.STAGE == cmd.name
    assert cls.RESUMES in (CONTINUES, CHECKPOINT, ONE_PASS)
    assert getattr(fn, "writes_output", False), f"{fn.__name__} is not decorated with @writes_output"
    assert {"resume", "overwrite", "force"} <= {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("cmd", STAGES, ids=lambda c: c.name)
def test_an_existing_output_is_refused_without_a_flag_overwritten_or_resumed(cmd, tmp_path):
    stage = Stand_in()
    cfg = make(cmd, tmp_path)
    stage.run(cfg)
    out = Path(cfg.output)
    mine = [out.parent / "notes.txt"] + ([] if out.suffix else [out / "notes.txt"])  # a directory: inside too
    for path in mine:  # files of the user's beside or inside the output: never touched
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine")
    made = files(cfg)
    before = snapshot_of(cfg)

    # neither flag: an error naming both, nothing removed or written
    with pytest.raises(ParrotError) as info:
        stage.run(make(cmd, tmp_path))
    assert str(info.value) == f"{out}: already exists; pass --resume to continue it or --overwrite to start over"
    assert snapshot_of(cfg) == before and len(stage.calls) == 1

    # --resume on a complete output made with the same settings
    result = stage.run(make(cmd, tmp_path, resume=True))
    if cfg.RESUMES == CONTINUES:  # it continues: what is there stays for the stage to skip
        assert len(stage.calls) == 2 and stage.calls[-1]["existing"] == sorted(made)
        assert read_manifest(cfg.manifest_of())["counts"] == {"made": 2}
    else:  # nothing to do: up to date, the recorded counts returned, nothing touched
        assert result == {"made": 1} and len(stage.calls) == 1 and snapshot_of(cfg) == before

    # --overwrite: its files, and only those, are gone before the stage starts (a stage that can be
    # continued has a new manifest saying it is not complete); a one-pass stage writes each file
    # whole, so the old ones stay while it works (see the next test)
    stage.run(make(cmd, tmp_path, overwrite=True))
    left = {str(p.relative_to(out.parent)) for p in mine}
    left |= {str(p.relative_to(out.parent)) for p in cfg.kept_until_replaced()}  # a model, until the new one is saved
    if cfg.RESUMES != ONE_PASS:
        left.add(cfg.side_files()[0].name)
        assert read_manifest(cfg.manifest_of())["counts"] == {"made": len(stage.calls)}
    existing = stage.calls[-1]["existing"]
    aside = {name for name in existing if ".replaced" in name}  # the previous output, set aside
    assert sorted(set(existing) - aside) == sorted(made if cfg.RESUMES == ONE_PASS else left)
    if cfg.RESUMES == CONTINUES:  # until the new run has written something; then gone
        ours = set(made) - {str(p.relative_to(out.parent)) for p in mine}
        assert aside == {str(Path(n).with_name(f".{Path(n).name}.replaced")) for n in ours}
    if cfg.RESUMES == CHECKPOINT:  # its manifest and old checkpoints (the model itself stays in place)
        assert aside == {"out/.checkpoint-1.replaced/trainer_state.json", ".out.manifest.json.replaced"}
    assert not any(".replaced" in name for name in files(cfg))
    assert all(p.read_text() == "mine" for p in mine)
    assert not lock_path(out).exists()  # the lock file goes with the run


@pytest.mark.parametrize("cmd", STAGES, ids=lambda c: c.name)
def test_resume_with_changed_settings_is_an_error_naming_them_or_a_new_one_pass_run(cmd, tmp_path):
    stage = Stand_in()
    stage.run(make(cmd, tmp_path))
    [(key, value)] = CHANGED[cmd.name].items()
    if cmd.name == "merge":
        value = [str(shard(tmp_path / value[0], "\n"))]  # other contents: where a file sits does not count
    changed = make(cmd, tmp_path, resume=True, **{key: value})
    before = snapshot_of(changed)
    if changed.RESUMES == ONE_PASS:  # nothing partial to continue: made again with the new settings
        stage.run(changed)
        assert len(stage.calls) == 2 and read_manifest(changed.manifest_of())["config"][key] == value
        return
    with pytest.raises(ParrotError) as info:
        stage.run(changed)
    message = str(info.value)
    assert message.startswith(f"{changed.output}: holds {cmd.name} ") and re.search(rf"\({key} \S+ → ", message)
    assert "--overwrite" in message and "--force" in message
    assert snapshot_of(changed) == before and len(stage.calls) == 1
    stage.run(make(cmd, tmp_path, resume=True, force=True, **{key: value}))  # continued, as asked
    assert len(stage.calls) == 2 and stage.calls[-1]["existing"]


def test_a_manifest_left_alone_is_no_output_and_goes(tmp_path):
    """A run that failed before it wrote anything leaves at most a manifest: the next run starts."""
    [cmd] = [c for c in STAGES if c.name == "filter"]
    cfg = make(cmd, tmp_path)
    write_manifest(cfg, complete=False)
    stage = Stand_in()
    stage.run(cfg)
    assert stage.calls[0]["existing"] == []


# ---------------------------------------------------------------- the fingerprint


def synth(tmp_path, *overrides):
    from parrot.synthesize.stage import SynthesizeConfig

    seeds = tmp_path / "seeds.jsonl"
    if not seeds.exists():
        seeds.write_text('{"id": "a", "messages": [{"role": "user", "content": "hi"}]}\n')
    data = {"output": str(tmp_path / "out.jsonl"), "seeds": str(seeds), "asker": "openai:sim"}
    return build_config(SynthesizeConfig, data, list(overrides))


SERVING = {
    "output": "elsewhere.jsonl",
    "shard": "1/4",
    "in_flight": 3,
    "step_retries": 9,
    "step_retry_delay": 1.0,
    "resume": True,
    "force": True,
    "overwrite": True,
    "asker.concurrency": 99,
    "asker.slots": 2,
    "asker.threads": 1,
    "asker.batch_size": 64,
    "asker.base_url": "http://other:8000/v1",
    "asker.api_key_env": "OTHER_KEY",
    "asker.timeout": 5.0,
    "asker.max_retries": 0,
}


@pytest.mark.parametrize("key, value", list(SERVING.items()))
def test_serving_options_and_run_controls_do_not_change_the_fingerprint(tmp_path, key, value):
    assert config_hash(synth(tmp_path, f"{key}={value}")) == config_hash(synth(tmp_path))


@pytest.mark.parametrize(
    "key, value", [("max_turns", 3), ("seed", 7), ("asker.temperature", 0.2), ("asker.spec", "openai:other")]
)
def test_a_setting_that_changes_results_changes_the_fingerprint(tmp_path, key, value):
    other = synth(tmp_path, f"{key}={value}")
    assert config_hash(other) != config_hash(synth(tmp_path))
    assert fingerprint(other)[key] == value


def test_a_seed_file_regenerated_under_the_same_name_changes_the_fingerprint(tmp_path):
    before = config_hash(synth(tmp_path))
    (tmp_path / "seeds.jsonl").write_text('{"id": "b", "messages": [{"role": "user", "content": "other"}]}\n')
    after = synth(tmp_path)
    assert config_hash(after) != before
    assert fingerprint(after)["seeds"].startswith("sha256:")  # what it holds, not where it is


def test_inputs_count_by_what_they_hold_not_where_they_sit(tmp_path):
    """The same seed file at another path (a run directory moved): the same fingerprint."""
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    before = config_hash(synth(tmp_path))
    (moved / "seeds.jsonl").write_bytes((tmp_path / "seeds.jsonl").read_bytes())
    assert config_hash(synth(moved)) == before


def test_the_fields_that_choose_items_are_not_in_the_fingerprint():
    from parrot.evaluate.answer import AnswerConfig
    from parrot.evaluate.judge import JudgeConfig

    a = build_config(AnswerConfig, {"output": "a.jsonl"})
    assert config_hash(a) == config_hash(build_config(AnswerConfig, {"output": "a.jsonl", "limit": 3}))
    assert config_hash(a) == config_hash(build_config(AnswerConfig, {"output": "a.jsonl", "question_ids": ["81"]}))
    j = build_config(JudgeConfig, {"answers": ["a.jsonl"], "output": "j.jsonl"})
    more = build_config(JudgeConfig, {"answers": ["a.jsonl", "b.jsonl"], "output": "j.jsonl", "turns": [1]})
    assert config_hash(j) == config_hash(more)
    hotter = build_config(JudgeConfig, {"answers": ["a.jsonl"], "output": "j.jsonl"}, ["judge.temperature=0.5"])
    assert config_hash(j) != config_hash(hotter)


def test_secrets_in_pass_through_options_are_redacted_and_do_not_change_the_fingerprint():
    from parrot.train.config import SFTTrainConfig

    def cfg(token):
        return build_config(
            SFTTrainConfig, {"data": ["d.jsonl"], "output": "o"}, [f"hub_token={token}"], extra_field="trl_args"
        )

    assert fingerprint(cfg("hf_SECRET_one"))["trl_args.hub_token"] == "<redacted>"
    assert config_hash(cfg("hf_SECRET_one")) == config_hash(cfg("hf_SECRET_two"))


def test_training_resume_goes_on_from_the_latest_checkpoint_unless_told_where():
    from parrot.train.config import SFTTrainConfig
    from parrot.train.trainer import trl_kwargs

    def kw(*over, resume):
        cfg = build_config(
            SFTTrainConfig, {"data": ["d.jsonl"], "output": "o", "resume": resume}, list(over), extra_field="trl_args"
        )
        return trl_kwargs(cfg).get("resume_from_checkpoint")

    assert kw(resume=True) is True and kw(resume=False) is None
    assert kw("resume_from_checkpoint=ckpt/checkpoint-5", resume=True) == "ckpt/checkpoint-5"


def test_a_real_one_pass_stage_is_up_to_date_until_its_input_changes(tmp_path):
    from parrot.prepare.stage import PrepareConfig, prepare

    src = tmp_path / "logs.jsonl"
    row = {"id": "a", "messages": [{"role": "user", "content": "q?"}, {"role": "assistant", "content": "a."}]}
    src.write_text(json.dumps(row) + "\n")
    out = tmp_path / "data.jsonl"

    def run(**kw):
        return prepare(
            build_config(PrepareConfig, {"source": [str(src)], "output": str(out), "dev_fraction": 0.0, **kw})
        )

    assert run()["written"] == 1
    made = (out.stat().st_ino, out.stat().st_mtime_ns)
    assert (
        run(resume=True)["written"] == 1 and (out.stat().st_ino, out.stat().st_mtime_ns) == made
    )  # up to date: the recorded counts
    src.write_text(
        json.dumps(row)
        + "\n"
        + json.dumps(
            {"id": "b", "messages": [{"role": "user", "content": "r?"}, {"role": "assistant", "content": "b."}]}
        )
        + "\n"
    )  # same name, new contents
    assert run(resume=True)["written"] == 2 and len(out.read_text().splitlines()) == 2  # made again


def test_a_one_pass_stage_started_over_keeps_the_previous_output_until_it_succeeds(tmp_path):
    """prepare --overwrite that fails leaves the previous output as it was; one that succeeds
    replaces it and removes what it did not write again (a dev split it no longer makes)."""
    from parrot.prepare.stage import PrepareConfig, dev_path, prepare

    src = tmp_path / "logs.jsonl"
    rows = [
        {"id": f"s{i}", "messages": [{"role": "user", "content": f"q{i}?"}, {"role": "assistant", "content": "a."}]}
        for i in range(40)
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "data.jsonl"

    def run(**kw):
        return prepare(build_config(PrepareConfig, {"source": [str(src)], "output": str(out), **kw}))

    run(dev_fraction=0.5)
    before = {p: p.read_bytes() for p in (out, dev_path(out), manifest_path(out)) if p.exists()}
    assert dev_path(out) in before
    with pytest.raises(ParrotError, match="kept 0 of 40"):
        run(overwrite=True, min_turns=5)  # nothing kept: the run fails
    assert {p: p.read_bytes() for p in before} == before  # the previous output, as it was
    run(overwrite=True, dev_fraction=0.0)
    assert len(out.read_text().splitlines()) == 40 and not dev_path(out).exists()
