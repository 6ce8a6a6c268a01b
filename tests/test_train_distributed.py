"""Training in two CPU processes (gloo), as on several GPUs: ``--accelerate multi-cpu --num-processes 2``.

Every launch here starts real ranks under torchrun. A helper loaded by each of them
(``tests/fixtures/ranks/sitecustomize.py``, first on PYTHONPATH) can watch what one rank writes
or make one rank fail; it acts only where the environment names its rank.
"""

import json
import os
import re
from pathlib import Path

import pytest

from parrot.cli import main
from parrot.core.manifest import read_manifest

RANKS = Path(__file__).parent / "fixtures" / "ranks"
pytestmark = pytest.mark.processes

TWO = ["--accelerate", "multi-cpu", "--num-processes", "2"]
STEPS = ["learning_rate=1e-3", "logging_steps=1", "disable_tqdm=true"]
#: The largest relative difference allowed between the loss curves of one process and of two
#: (same global batch, same samples in each step): the sums are made in another order (gloo's
#: all-reduce, then Adam), measured at ~1e-4 after 6 steps.
TOLERANCE = 1e-3


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def dialogue(i):
    msgs = []
    for t in range(1 + i % 3):
        msgs += [
            {"role": "user", "content": f"Question {i}.{t}: what comes after {t}?"},
            {"role": "assistant", "content": f"{t + 1} comes after {t}. " * (1 + t)},
        ]
    return {"id": f"d{i}", "messages": msgs, "meta": {}}


def pair(i):
    return {
        "id": f"p{i}",
        "prompt": [
            {"role": "user", "content": f"Tell me about the number {i}."},
            {"role": "assistant", "content": f"{i} is a number."},
            {"role": "user", "content": "Is it even?"},
        ],
        "chosen": [{"role": "assistant", "content": "yes" if i % 2 == 0 else "no"}],
        "rejected": [{"role": "assistant", "content": "maybe, maybe not"}],
        "meta": {"strategy": "ignore", "source_id": f"d{i}", "turn": 2},
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    return {
        "dialogues": write_jsonl(d / "d.jsonl", [dialogue(i) for i in range(16)]),
        "pairs": write_jsonl(d / "pairs.jsonl", [pair(i) for i in range(8)]),
    }


@pytest.fixture
def ranks(monkeypatch):
    """The rank helper on every launched process's path; returns a setter of its variables."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(RANKS), os.environ.get("PYTHONPATH")])))
    return lambda **env: [monkeypatch.setenv(f"PARROT_TEST_{k.upper()}", str(v)) for k, v in env.items()]


def curve(out) -> list[float]:
    return [loss for _, loss in read_manifest(out)["loss_curve"]]


def same_curve(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and max(abs(x - y) / abs(y) for x, y in zip(a, b)) < TOLERANCE


def chat(data, out, model, *extra):
    return ["train-chat", str(data["dialogues"]), "-o", str(out), "--model", str(model), "--max-length", "220", *extra]


@pytest.fixture(scope="module")
def chat_runs(data, tiny_model_dir, tmp_path_factory):
    """train-chat 6 steps, global batch 4: in one process (4 per device), and in two (2 each),
    checkpointing every 2 steps, rank 1 watched: what it writes under the output goes to a log."""
    root = tmp_path_factory.mktemp("chat")
    one, two, log = root / "one", root / "two", root / "rank1.log"
    assert main(chat(data, one, tiny_model_dir, *STEPS, "max_steps=6", "per_device_train_batch_size=4")) == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(RANKS))
        mp.setenv("PARROT_TEST_WATCH_RANK", "1")
        mp.setenv("PARROT_TEST_WATCH_DIR", str(two))
        mp.setenv("PARROT_TEST_WATCH_LOG", str(log))
        args = chat(data, two, tiny_model_dir, *STEPS, "max_steps=6", "per_device_train_batch_size=2", *TWO)
        assert main([*args, "save_strategy=steps", "save_steps=2", "--gguf"]) == 0
    return {"one": one, "two": two, "rank1": log.read_text() if log.exists() else ""}


def test_two_processes_train_the_same_curve_as_one_with_the_same_global_batch(chat_runs):
    one, two = read_manifest(chat_runs["one"]), read_manifest(chat_runs["two"])
    assert one["distributed"] == {"world_size": 1, "type": "NO", "backend": None, "global_batch": 4}
    assert two["distributed"] == {"world_size": 2, "type": "MULTI_CPU", "backend": "gloo", "global_batch": 4}
    assert curve(chat_runs["one"])[0] != curve(chat_runs["one"])[-1]  # it learned: the curves can differ
    assert same_curve(curve(chat_runs["two"]), curve(chat_runs["one"]))
    assert two["losses"]["steps"] == one["losses"]["steps"] == 6


def test_only_rank_0_writes_the_output(chat_runs):
    two = chat_runs["two"]
    m = read_manifest(two)
    assert m["complete"] and m["gguf"]["bytes"] == (two / "model.gguf").stat().st_size
    assert {p.name for p in two.iterdir()} >= {"model.safetensors", "config.json", "model.gguf", "checkpoint-6"}
    # rank 1 made no file there: it only created (exist_ok) the checkpoint folders it saves its own
    # random state into (transformers' format: rng_state_1.pth, written by torch in C++, unwatched)
    written = chat_runs["rank1"].splitlines()
    assert written and all(re.fullmatch(r"os\.mkdir checkpoint-[246]", line) for line in written), written
    assert sorted((two / "checkpoint-2").glob("rng_state_*.pth")) == [
        two / "checkpoint-2" / "rng_state_0.pth",
        two / "checkpoint-2" / "rng_state_1.pth",
    ]


def test_dpo_with_a_reference_model_in_two_processes_matches_one(data, tiny_model_dir, tmp_path):
    def dpo(out, *extra):
        args = ["train-dpo", str(data["pairs"]), "-o", str(out), "--model", str(tiny_model_dir)]
        return [*args, "--ref-model", str(tiny_model_dir), "--max-length", "160", *STEPS, "max_steps=4", *extra]

    assert main(dpo(tmp_path / "one", "per_device_train_batch_size=4")) == 0
    assert main(dpo(tmp_path / "two", "per_device_train_batch_size=2", *TWO)) == 0
    assert read_manifest(tmp_path / "two")["distributed"]["world_size"] == 2
    assert same_curve(curve(tmp_path / "two"), curve(tmp_path / "one"))
    assert read_manifest(tmp_path / "two")["counts"]["reference"] == str(tiny_model_dir)


def test_train_ask_with_lora_merged_and_its_held_out_pass_in_two_processes(data, tiny_model_dir, tmp_path):
    out = tmp_path / "ask"
    args = ["train-ask", str(data["dialogues"]), "-o", str(out), "--model", str(tiny_model_dir), "--lora"]
    args += ["--max-length", "220", "--eval-data", str(data["dialogues"]), "--eval-limit", "3", "--add-stop"]
    assert main([*args, "max_steps=2", "per_device_train_batch_size=2", "disable_tqdm=true", *TWO]) == 0
    m = read_manifest(out)
    assert m["distributed"]["world_size"] == 2 and m["saved_as"] == "merged"
    assert m["heldout"]["sessions"] == 3 and len(m["heldout"]["trained"]["loss"]) == 3
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").is_file()


def test_in_the_pipeline_a_failing_rank_stops_the_launch_with_one_error_then_it_resumes_in_two_then_skips(
    data, tiny_model_dir, tmp_path, ranks, capfd, chat_runs
):
    """A pipeline step trains in two processes; rank 1 fails after the checkpoint of step 2: one
    error, nothing marked done, the lock released. The next run resumes from checkpoint-2 in two
    processes, on the curve of the run that never stopped; the one after that has nothing to do."""
    w = tmp_path / "w"
    config = tmp_path / "pipe.yaml"
    config.write_text(
        f"workdir: {w}\nonly: [sft_parrot]\nsteps:\n  sft_parrot: {{data: [{data['dialogues']}], "
        f"model: {tiny_model_dir}, max_length: 220, accelerate: multi-cpu, num_processes: 2, max_steps: 6, "
        "per_device_train_batch_size: 2, learning_rate: 1.0e-3, logging_steps: 1, disable_tqdm: true, "
        "save_strategy: steps, save_steps: 2}\n"
    )
    out = w / "models" / "sft_parrot"
    ranks(fail_rank=1, fail_step=3)
    assert main(["pipeline", "--config", str(config)]) == 2
    err = capfd.readouterr().err
    assert "rank 1 failed: RuntimeError: rank 1 failed on purpose at step 4" in err
    assert "Traceback" not in err and "ChildFailedError" not in err and "SIGTERM" not in err
    assert not read_manifest(out)["complete"] and not (out / "model.safetensors").exists()
    assert [p.name for p in sorted(out.glob("checkpoint-*"))] == ["checkpoint-2"]

    ranks(fail_rank="none")  # the lock was released: the output runs again, and resumes
    assert main(["pipeline", "--config", str(config)]) == 0
    assert "resuming from" in capfd.readouterr().err
    m = read_manifest(out)
    assert m["complete"] and m["losses"]["steps"] == 6 and m["distributed"]["world_size"] == 2
    # from checkpoint-2 on, the same steps as the run that never stopped (each rank's random state restored)
    assert same_curve(curve(out), curve(chat_runs["two"]))

    before = out.with_name("sft_parrot.manifest.json").stat().st_mtime_ns
    assert main(["pipeline", "--config", str(config)]) == 0
    assert "up to date" in capfd.readouterr().out
    assert out.with_name("sft_parrot.manifest.json").stat().st_mtime_ns == before


def test_a_launch_that_starts_fewer_processes_than_asked_stops_before_training(
    data, tiny_model_dir, tmp_path, monkeypatch, capsys
):
    from parrot.train.launch import WORLD_ENV

    monkeypatch.setenv(WORLD_ENV, "2")  # as the parent of a launch sets it, but one process came up
    assert main(chat(data, tmp_path / "x", tiny_model_dir, "max_steps=1")) == 2
    assert "asked for 2 processes, but this one trains in a world of 1 (NO)" in capsys.readouterr().err
    assert not (tmp_path / "x" / "model.safetensors").exists()


@pytest.mark.parametrize("name", ["fsdp2", "deepspeed-zero3"])
def test_gpu_only_configs_on_a_cpu_are_an_error_before_anything_starts(name, data, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    args = chat(data, tmp_path / "x", tmp_path / "no-model", "--accelerate", name, "--num-processes", "2")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{name}: " in err and "needs GPUs" in err and "--accelerate multi-cpu" in err


def test_every_key_of_the_shipped_accelerate_configs_is_one_accelerate_reads():
    """accelerate maps each key of a config (and of its deepspeed_config / fsdp_config) to a
    launch argument of the same name; a misspelt key would be ignored without a word."""
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser

    from parrot.core.yamlfile import load_yaml
    from parrot.train.config import ACCELERATE_CONFIGS, accelerate_config_path

    fields = set(ClusterConfig.__dataclass_fields__)
    arguments = {a.dest for a in launch_command_parser()._actions}
    for name in ACCELERATE_CONFIGS:
        settings = load_yaml(accelerate_config_path(name))
        assert set(settings) <= fields, (name, set(settings) - fields)
        for section in ("deepspeed_config", "fsdp_config"):
            keys = set(settings.get(section) or {})
            assert keys <= arguments, (name, section, keys - arguments)
