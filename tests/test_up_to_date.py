"""What "up to date" trusts, tried as a hostile user would: an input rewritten while a step reads
it, a hand-edited or corrupt output, an answer file dropped from a judge, two steps writing one
file, a run directory moved. Nothing stale passes as finished, and nothing finished is deleted
before the new run is sure to start."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from synth_helpers import Script, read_out
from test_output_lock import ENV, HeldRun
from test_pipeline import _cfg, _recording_stages, _statuses
from test_synthesize_kill import N, synth_cmd

from parrot import ParrotError
from parrot.cli import main
from parrot.core.config import build_config
from parrot.core.digest import sha256_file
from parrot.core.fingerprint import config_hash
from parrot.core.locks import output_lock
from parrot.core.manifest import manifest_path, read_manifest, write_manifest
from parrot.core.outputs import writes_output
from parrot.filter.stage import FilterConfig
from parrot.pipeline import stage_config, step_state


def _prepared(tmp_path: Path, name: str = "seeds.jsonl", n: int = 3) -> Path:
    """A Dialogue file made by `parrot prepare` (so it has a manifest that vouches for it)."""
    src = tmp_path / f"{name}.src.jsonl"
    rows = [
        {"id": f"s{i}", "messages": [{"role": "user", "content": f"Question {i}, please?"},
                                     {"role": "assistant", "content": "An answer."}]}
        for i in range(n)
    ]  # fmt: skip
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / name
    assert main(["prepare", str(src), "-o", str(out), "dev_fraction=0", "--overwrite"]) == 0
    return out


# ---------------------------------------------------------------- inputs pinned as a step starts


def test_an_input_a_step_is_reading_cannot_be_rewritten_until_it_ends(tmp_path, fault_server, capsys):
    seeds = _prepared(tmp_path)
    before = sha256_file(seeds)
    out = tmp_path / "out.jsonl"
    run = HeldRun(fault_server, synth_cmd(out, seeds, fault_server.base_url), Script(), hold_at=13, parallel=2)
    try:
        capsys.readouterr()
        assert main(["prepare", str(seeds) + ".src.jsonl", "-o", str(seeds), "dev_fraction=0", "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert f"{seeds}: another process is writing it, or reading it as an input" in err
        assert sha256_file(seeds) == before  # not rewritten
        rc, log = run.finish()
    finally:
        run.stop()
    assert rc == 0, log[-2000:]
    assert len(read_out(out)) == N
    recorded = {i["path"]: i.get("sha256") for i in read_manifest(out)["inputs"]}
    assert recorded[str(seeds)] == before
    # the reader is gone: the writer runs
    assert main(["prepare", str(seeds) + ".src.jsonl", "-o", str(seeds), "dev_fraction=0", "--overwrite"]) == 0


def test_a_step_does_not_read_an_input_another_process_is_writing(tmp_path, capsys):
    seeds = _prepared(tmp_path)
    out = tmp_path / "out.jsonl"
    with output_lock(seeds):  # a run writing the seeds now
        rc = main(
            ["synthesize", "--seeds", str(seeds), "-o", str(out), "--asker", "openai:x", "--assistant", "openai:y"]
        )
    assert rc == 2
    assert f"{seeds}: another process is writing it; wait for it to finish" in capsys.readouterr().err
    assert not out.exists() and not manifest_path(out).exists()


def test_the_manifest_records_inputs_as_they_were_when_the_step_started(tmp_path):
    """A process that ignores the locks rewrites the input mid-run: the manifest still says what
    the step read, so the step is not taken as made from the new file."""
    source = _prepared(tmp_path)
    cfg = build_config(FilterConfig, {"input": str(source), "output": str(tmp_path / "f.jsonl")})
    read_at_start = config_hash(cfg)

    @writes_output
    def rewriting(cfg):
        Path(cfg.output).write_text(source.read_text())
        source.write_text(source.read_text() + source.read_text().splitlines()[0] + "\n")  # mid-run
        write_manifest(cfg)

    rewriting(cfg)
    doc = read_manifest(cfg.output)
    assert doc["config_hash"] == read_at_start != config_hash(cfg)
    assert doc["inputs"][0]["sha256"] != sha256_file(source)


# ---------------------------------------------------------------- outputs verified


def test_a_truncated_input_stops_the_reader_before_it_touches_its_output(tmp_path, capsys):
    data = _prepared(tmp_path, "data.jsonl")
    out = tmp_path / "filtered.jsonl"
    assert main(["filter", str(data), "-o", str(out), "min_turns=1"]) == 0
    before = {p: p.read_bytes() for p in (out, manifest_path(out))}
    text = data.read_bytes()
    data.write_bytes(text[: len(text) - 20])  # cut mid-line
    assert main(["filter", str(data), "-o", str(out), "min_turns=1", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"{data}: changed on disk since prepare wrote it" in err and "make it again first" in err
    assert {p: p.read_bytes() for p in before} == before


def test_a_damaged_model_is_out_of_date_and_stops_what_reads_it_before_anything_is_removed(tmp_path, capsys):
    cfg = _cfg(tmp_path / "w")
    sft = stage_config(cfg.step("sft_parrot"), cfg)
    model = Path(sft.output)
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights" * 100)
    write_manifest(sft)
    assert step_state(cfg.step("sft_parrot"), cfg) == "up to date"
    (model / "model.safetensors").write_bytes(b"garbage" * 100)  # same size, other bytes
    assert step_state(cfg.step("sft_parrot"), cfg) == f"changed on disk: {model / 'model.safetensors'} (changed)"

    dpo = stage_config(cfg.step("capo_dpo"), cfg)
    old = Path(dpo.output) / "model.safetensors"
    old.parent.mkdir(parents=True)
    old.write_text("the previous capo_dpo")
    Path(dpo.data[0]).parent.mkdir(parents=True, exist_ok=True)
    Path(dpo.data[0]).write_text("")
    assert main(["train-dpo", dpo.data[0], "--model", str(model), "-o", dpo.output, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"{model}: changed on disk since train-chat wrote it ({model / 'model.safetensors'} (changed))" in err
    assert old.read_text() == "the previous capo_dpo"


def test_an_output_copied_elsewhere_is_the_one_its_manifest_recorded(tmp_path):
    """A copy has new mtimes and the same bytes: hashed again, it passes."""
    (tmp_path / "a").mkdir()
    data = _prepared(tmp_path / "a", "data.jsonl")
    copy = tmp_path / "b"
    shutil.copytree(tmp_path / "a", copy, copy_function=shutil.copy)  # plain copies: new mtimes
    from parrot.core.digest import changed_outputs

    assert changed_outputs(manifest_path(copy / data.name)) == []
    (copy / data.name).write_text((copy / data.name).read_text().replace("Question", "Query"))
    assert changed_outputs(manifest_path(copy / data.name)) == [f"{copy / data.name} (changed)"]


# ---------------------------------------------------------------- the pipeline


def _recorded_run(tmp_path, monkeypatch, capsys) -> tuple[Path, list]:
    seen: list = []
    _recording_stages(monkeypatch, seen)
    w = tmp_path / "w"
    assert main(["pipeline", f"workdir={w}"]) == 0
    capsys.readouterr()
    return w, seen


def _done(capsys) -> set[str]:
    return {k for k, v in _statuses(capsys.readouterr().out).items() if v == "done"}


def test_a_judge_holds_exactly_the_answer_files_it_is_given(tmp_path, monkeypatch, capsys):
    w, seen = _recorded_run(tmp_path, monkeypatch, capsys)
    cfg = _cfg(w)
    answers = [a for a in stage_config(cfg.step("judge_mtbench"), cfg).answers if not a.endswith("mtbench_capo.jsonl")]
    fewer = ["pipeline", f"workdir={w}", f"steps.judge_mtbench.answers=[{', '.join(answers)}]"]
    assert main([*fewer, "--plan"]) == 0
    assert re.search(r"judge_mtbench +eval judge +selection changed", capsys.readouterr().out)
    assert main(fewer) == 0
    assert _done(capsys) == {"judge_mtbench", "report"}
    assert seen[-2] == (stage_config(cfg.step("judge_mtbench"), cfg).output, False)  # made again, not resumed


def test_a_hand_edited_answer_file_is_noticed_by_its_step_and_by_the_judge(tmp_path, monkeypatch, capsys):
    w, _ = _recorded_run(tmp_path, monkeypatch, capsys)
    answers = w / "eval/mtbench_parrot.jsonl"
    made = answers.read_text()
    answers.write_text("edited by hand\n")
    assert main(["pipeline", f"workdir={w}", "--plan"]) == 0
    plan = capsys.readouterr().out
    assert f"changed on disk: {answers} (changed)" in plan
    assert re.search(r"judge_mtbench +eval judge +selection changed", plan)  # what it grades changed
    assert re.search(r"report +report +up to date unless judge_mtbench, mtbench_parrot changes it", plan)
    # the judge alone refuses to grade the edited file
    assert main(["pipeline", f"workdir={w}", "--only", "judge_mtbench"]) == 2
    assert f"{answers}: changed on disk since eval answer wrote it" in capsys.readouterr().err
    # the answers are made again; the judge graded exactly what they hold again, so it stays
    assert main(["pipeline", f"workdir={w}"]) == 0
    assert _done(capsys) == {"mtbench_parrot"} and answers.read_text() == made


def test_a_copied_work_directory_is_up_to_date_wherever_it_is(tmp_path, monkeypatch, capsys):
    w, seen = _recorded_run(tmp_path, monkeypatch, capsys)
    moved = tmp_path / "scratch" / "elsewhere"
    shutil.copytree(w, moved, copy_function=shutil.copy)  # new paths, new mtimes
    shutil.rmtree(w)
    runs = len(seen)
    assert main(["pipeline", f"workdir={moved}"]) == 0
    assert set(_statuses(capsys.readouterr().out).values()) == {"up to date"} and len(seen) == runs


def test_only_keeps_the_other_steps_in_the_pipeline_manifest(tmp_path, monkeypatch, capsys):
    w, _ = _recorded_run(tmp_path, monkeypatch, capsys)
    assert main(["pipeline", f"workdir={w}", "--only", "sharegpt", "--rerun", "sharegpt"]) == 0
    rows = json.loads((w / "pipeline.manifest.json").read_text())["steps"]
    assert [r["step"] for r in rows] == [s.name for s in _cfg(w).graph]
    assert {r["step"]: r["status"] for r in rows}["sharegpt"] == "done"


@pytest.mark.parametrize(
    "steps, message",
    [
        ({"parrot": {"output": "{workdir}/data/selfchat.jsonl"}}, r"steps: selfchat: writes .*selfchat\.jsonl, where step parrot"),
        ({"capo": {"output": "{synth_parrot}"}}, r"steps: capo: .*writes .*synth_parrot\.jsonl, where step synth_parrot"),
        ({"stats": {"output": "{workdir}"}}, r"steps: stats: its output .* would hold the whole work directory"),
        ({"capo": {"output": "{workdir}/models/sft_parrot/pairs.jsonl"}}, r"steps: capo: writes .*sft_parrot/pairs\.jsonl, where step sft_parrot"),
        ({"parrot": {"output": "{synth_parrot}"}}, r"steps: parrot: its output .*synth_parrot\.jsonl is also one of its inputs"),
        ({"capo": {"dialogues": ["{capo}"]}}, r"steps: capo: a step cannot read its own output \('\{capo\}'"),
    ],
    ids=["two filters, one file", "over another step's output", "over the workdir", "inside a model", "reads itself", "names itself"],
)  # fmt: skip
def test_two_steps_never_write_one_place_and_none_reads_itself(tmp_path, steps, message):
    with pytest.raises(ParrotError, match=message):
        _cfg(tmp_path / "w", steps=steps)


def test_a_step_killed_after_its_output_was_set_aside_gets_it_back(tmp_path, fault_server):
    """`--overwrite` sets an item-by-item output aside; killed before the new run wrote anything,
    the next start puts the previous output back in place."""
    seeds = _prepared(tmp_path)
    out = tmp_path / "out.jsonl"
    argv = synth_cmd(out, seeds, fault_server.base_url)
    fault_server.responder = Script()
    assert subprocess.run(argv, env=ENV, capture_output=True, timeout=120).returncode == 0
    before, requests = out.read_bytes(), len(fault_server.requests)
    for p in (out, manifest_path(out)):  # what a kill right after the set-aside leaves
        p.rename(p.with_name(f".{p.name}.replaced"))
    assert main(argv[3:] + ["--resume"]) == 0  # put back, then continued: every session was done
    assert out.read_bytes() == before and len(fault_server.requests) == requests
    assert read_manifest(out)["complete"] and not list(tmp_path.glob(".*.replaced"))


def test_a_failed_start_over_leaves_the_previous_output_in_place(tmp_path, fault_server, capsys):
    seeds = _prepared(tmp_path)
    out = tmp_path / "out.jsonl"
    argv = synth_cmd(out, seeds, fault_server.base_url)
    fault_server.responder = Script()
    assert subprocess.run(argv, env=ENV, capture_output=True, timeout=120).returncode == 0
    before = {p: p.read_bytes() for p in (out, manifest_path(out))}
    bad = [a if a != "openai:sim" else f"hf:{tmp_path / 'no-such-model'}" for a in argv[3:]]
    assert main(bad + ["--overwrite"]) == 2  # the model cannot load: nothing new was written
    assert "no-such-model" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in before} == before
    assert not list(tmp_path.glob(".*.replaced"))


def test_reading_a_side_output_holds_the_lock_of_the_run_that_writes_it(tmp_path, capsys):
    """A dev split is written by its prepare run: reading it keeps that run from starting over."""
    from parrot.core.locks import reading
    from parrot.prepare.stage import dev_path

    src = _prepared(tmp_path, n=10).with_suffix(".jsonl.src.jsonl")
    data = tmp_path / "data.jsonl"
    assert main(["prepare", str(src), "-o", str(data), "dev_fraction=0.3"]) == 0
    with reading([dev_path(data)], tmp_path / "elsewhere.jsonl"):
        assert main(["prepare", str(src), "-o", str(data), "dev_fraction=0.3", "--overwrite"]) == 2
    assert f"{data}: another process is writing it, or reading it as an input" in capsys.readouterr().err


def test_a_path_counts_by_what_it_holds_however_it_is_written(tmp_path, monkeypatch):
    from parrot.core.digest import contents

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"weights")
    same = {contents(v) for v in ("m", "./m", "m/", str(tmp_path / "m"))}
    assert len(same) == 1 and next(iter(same)).startswith("sha256:")
    assert contents("hf:m") == "hf:" + contents("m") and contents("openai:m") == "openai:m"
    assert contents("sharegpt") == "sharegpt"


def test_a_retraining_that_fails_before_it_saves_leaves_the_previous_model_and_its_manifest(tmp_path, capsys):
    """The model stays in place (the new one replaces it once saved); its manifest and old
    checkpoints are set aside and come back when the new run saved nothing: it is still the model
    its manifest vouches for."""
    from parrot.train.config import SFTTrainConfig

    cfg = build_config(SFTTrainConfig, {"data": [str(_prepared(tmp_path))], "output": str(tmp_path / "m")})
    model = Path(cfg.output)
    (model / "checkpoint-2").mkdir(parents=True)
    (model / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    write_manifest(cfg)
    before = {p: p.read_bytes() for p in model.rglob("*") if p.is_file()} | {
        manifest_path(model): manifest_path(model).read_bytes()
    }
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "messages": [\n')
    assert main(["train-chat", str(bad), "-o", str(model), "--overwrite"]) == 2
    assert f"{bad}:1: invalid JSON" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in before} == before
    assert not list(tmp_path.rglob("*.replaced"))


def test_a_retraining_killed_before_its_first_checkpoint_gets_the_previous_model_back(tmp_path):
    from parrot.train.config import SFTTrainConfig

    data = _prepared(tmp_path)
    cfg = build_config(SFTTrainConfig, {"data": [str(data)], "output": str(tmp_path / "m")})
    model = Path(cfg.output)
    (model / "checkpoint-2").mkdir(parents=True)
    (model / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    write_manifest(cfg)
    complete = manifest_path(model).read_bytes()
    for p in (manifest_path(model), model / "checkpoint-2"):  # what a kill right after the start leaves
        p.rename(p.with_name(f".{p.name}.replaced"))
    write_manifest(cfg, complete=False)
    assert main(["train-chat", str(data), "-o", str(model), "--resume"]) == 0  # put back: up to date
    assert manifest_path(model).read_bytes() == complete and (model / "checkpoint-2").is_dir()
    assert not list(tmp_path.rglob("*.replaced"))


def test_a_large_output_copied_elsewhere_is_hashed_not_taken_by_its_time(tmp_path, monkeypatch):
    """Above the hashing limit a file no step wrote goes by size and time; one a manifest
    recorded is hashed, so a plain copy of a large model is still the same model."""
    import parrot.core.digest as digest

    monkeypatch.setattr(digest, "HASH_LIMIT", 10)
    (tmp_path / "a").mkdir()
    data = _prepared(tmp_path / "a", "data.jsonl")  # larger than 10 bytes
    assert ":" in digest.file_digest(tmp_path / "a" / "data.jsonl.src.jsonl")  # nobody recorded it
    shutil.copytree(tmp_path / "a", tmp_path / "b", copy_function=shutil.copy)
    copy = tmp_path / "b" / data.name
    assert digest.changed_outputs(manifest_path(copy)) == []
    assert digest.contents(str(copy)) == digest.contents(str(data))
