"""train-ask, train-chat, train-dpo end to end on a tiny random model, reloaded through ``hf:``."""

import errno
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parrot import ParrotError
from parrot.backends import SamplingParams, load_backend
from parrot.cli import main
from parrot.core.config import build_config
from parrot.core.manifest import manifest_path, read_manifest
from parrot.synthesize.roleswap import simulator_prompt
from parrot.train.config import ACCELERATE_CONFIGS, SFTTrainConfig, accelerate_config_path

QUICK = ["max_steps=1", "per_device_train_batch_size=2", "disable_tqdm=true", "logging_steps=1"]


@pytest.fixture
def model_dir(tiny_model_dir, tmp_path):
    return shutil.copytree(tiny_model_dir, tmp_path / "start")


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def dialogue(i, turns):
    msgs = []
    for t in range(turns):
        msgs += [
            {"role": "user", "content": f"Question {i}.{t}: what comes after {t}?"},
            {"role": "assistant", "content": f"{t + 1} comes after {t}. " * (1 + t)},
        ]
    return {"id": f"d{i}", "messages": msgs, "meta": {}}


@pytest.fixture
def dialogues(tmp_path):
    # one long session, cut to fit max_length=220 in both views
    return write_jsonl(tmp_path / "d.jsonl", [dialogue(i, 1 + i % 3) for i in range(6)] + [dialogue(9, 12)])


def reloads_and_generates(path, messages) -> bool:
    """The ``hf:`` backend loads the output and generates from it (random weights: any tokens,
    possibly blank, so the check is on token counts, not text)."""
    with load_backend(f"hf:{path}") as model:
        [c] = model.generate([messages], SamplingParams(max_tokens=4, temperature=0.0))
    return c.prompt_tokens > 0 and c.completion_tokens > 0


def test_train_chat_cli_writes_a_checkpoint_the_hf_backend_loads(model_dir, dialogues, tmp_path):
    out = tmp_path / "chat"
    rc = main(chat_args(dialogues, out, model_dir))
    assert rc == 0
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()
    m = read_manifest(out)
    assert m["stage"] == "train-chat" and m["saved_as"] == "full"
    assert m["counts"]["sessions_read"] == 7
    assert m["counts"]["sessions_shortened"] == 1  # the 12-turn session, split at turn boundaries
    assert m["counts"]["examples"] > m["counts"]["sessions_trained"] == 7
    assert m["counts"]["trainable_tokens"] > 0
    assert m["losses"]["steps"] == 1 and m["losses"]["train_loss"] > 0
    assert m["config"]["trl_args"]["max_steps"] == 1  # pass-through recorded
    assert reloads_and_generates(out, [{"role": "user", "content": "Hi"}])


def test_train_ask_lora_merged_serves_as_a_simulator(model_dir, dialogues, tmp_path):
    from parrot.train.config import AskTrainConfig
    from parrot.train.sft import train_ask

    out = tmp_path / "ask"
    cfg = build_config(
        AskTrainConfig,
        {
            "data": [str(dialogues)],
            "output": str(out),
            "model": str(model_dir),
            "max_length": 260,
            "lora": True,
            "add_stop": True,
            "gguf": True,
        },
        QUICK,
        extra_field="trl_args",
    )
    result = train_ask(cfg)
    assert result["saved"] == "merged"
    assert not (out / "adapter_config.json").exists() and (out / "config.json").is_file()
    assert result["counts"]["sessions_trained"] == 7
    prompt = simulator_prompt(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}]
    )
    assert reloads_and_generates(out, prompt)
    # gguf=true: the merged model also as model.gguf, recorded in the manifest, served by llama.cpp
    assert read_manifest(out)["gguf"]["path"] == str(out / "model.gguf")
    assert out / "model.gguf" in cfg.output_files()  # --overwrite removes it
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(out).apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)
    with load_backend(f"gguf:{out}", slots=1, ctx_size=512) as model:  # the directory holding model.gguf
        assert model.path == out / "model.gguf" and model.model_name == "ask"
        assert model.count_tokens(prompt) == len(ids["input_ids"])


def test_gguf_needs_full_weights_and_a_llama(model_dir, dialogues, tmp_path):
    """gguf with an unmerged adapter is refused with the settings; a starting model llama.cpp
    cannot take, before any training."""
    settings = {"data": [str(dialogues)], "output": str(tmp_path / "o"), "gguf": True}
    with pytest.raises(ParrotError, match="merge the adapter"):
        build_config(SFTTrainConfig, {**settings, "lora": True, "merge": False})
    with pytest.raises(ParrotError, match="gguf_dtype: expected one of f16, q8_0, f32, found 'q4'"):
        build_config(SFTTrainConfig, {**settings, "gguf_dtype": "q4"})  # from YAML too, before any training
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "architectures": ["GPT2LMHeadModel"]}))
    from parrot.train.sft import train_chat

    with pytest.raises(ParrotError, match="GPT2LMHeadModel cannot be exported"):
        train_chat(build_config(SFTTrainConfig, {**settings, "model": str(model_dir)}, QUICK, extra_field="trl_args"))
    assert not (tmp_path / "o").exists()


def test_lora_without_merge_saves_only_the_adapter_of_the_chosen_layers(model_dir, dialogues, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "adapter"
    assert (
        main(
            [
                "train-chat",
                str(dialogues),
                "-o",
                str(out),
                "--model",
                str(model_dir),
                "--lora",
                "--no-merge",
                "--lora-layers",
                "1",
                "--max-length",
                "220",
                *QUICK,
            ]
        )
        == 0
    )
    assert (out / "adapter_config.json").is_file() and not (out / "config.json").exists()
    assert read_manifest(out)["saved_as"] == "adapter"
    assert json.loads((out / "adapter_config.json").read_text())["layers_to_transform"] == [1]
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(".layers.1." in k for k in keys)


def test_a_full_run_into_an_adapters_directory_leaves_no_stale_adapter(model_dir, dialogues, tmp_path):
    out = tmp_path / "chat"
    args = chat_args(dialogues, out, model_dir)
    assert main([*args, "--lora", "--no-merge"]) == 0 and (out / "adapter_config.json").is_file()
    (out / "notes.txt").write_text("mine")
    assert main([*args, "--overwrite"]) == 0
    # Loaders prefer adapter_config.json: left there, it would hide the new weights.
    assert not (out / "adapter_config.json").exists() and not (out / "adapter_model.safetensors").exists()
    assert (out / "model.safetensors").is_file() and (out / "notes.txt").read_text() == "mine"
    assert read_manifest(out)["saved_as"] == "full"


def test_resume_from_checkpoint_true_continues_from_the_last_checkpoint(model_dir, dialogues, tmp_path):
    out = tmp_path / "chat"
    args = chat_args(dialogues, out, model_dir, "save_strategy=steps", "save_steps=1", "resume_from_checkpoint=true")
    assert main([*args, "max_steps=2"]) == 0  # no checkpoint yet: starts from the beginning
    # Mark checkpoint-2's logged state: a run that resumes from it carries the mark on.
    state_file = out / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"][0]["loss"] = 123.0
    state_file.write_text(json.dumps(state))
    assert main([*args, "max_steps=3", "--resume", "--force"]) == 0  # goes on from checkpoint-2: one more step
    history = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3] and history[0]["loss"] == 123.0
    assert read_manifest(out)["losses"]["steps"] == 3
    assert main([*args[:-1], "max_steps=3", f"resume_from_checkpoint={tmp_path / 'nope'}", "--resume", "--force"]) == 2


@pytest.mark.parametrize("spec", ["top", "3-1", "-2", "1,,2"])
def test_bad_lora_layers_is_an_error_naming_the_option(spec):
    from parrot.train.config import SFTTrainConfig

    with pytest.raises(ParrotError, match="lora_layers: expected layer indices"):
        build_config(SFTTrainConfig, {"data": ["a.jsonl"], "output": "o", "lora_layers": spec})


def test_lora_layers_ranges():
    from parrot.train.config import layer_indices

    assert layer_indices("20-23,26") == [20, 21, 22, 23, 26] and layer_indices(5) == [5]


def pair(i, answer_words=3):
    return {
        "id": f"p{i}",
        "prompt": [
            {"role": "user", "content": f"Tell me about the number {i}."},
            {"role": "assistant", "content": f"{i} is a number."},
            {"role": "user", "content": "Is it even?"},
        ],
        "chosen": [{"role": "assistant", "content": "yes" if i % 2 == 0 else "no"}],
        "rejected": [{"role": "assistant", "content": " ".join(["maybe"] * answer_words)}],
        "meta": {"strategy": "ignore", "source_id": f"d{i}", "turn": 2},
    }


@pytest.mark.parametrize("lora", [True, False], ids=["lora-reference-adapter-off", "full-reference-from-path"])
def test_train_dpo_counts_dropped_pairs_and_reloads(model_dir, tmp_path, lora):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [pair(i) for i in range(4)] + [pair(9, answer_words=400)])
    out = tmp_path / "dpo"
    args = ["train-dpo", str(pairs), "-o", str(out), "--model", str(model_dir), "--max-length", "160", *QUICK]
    if lora:
        args.append("--lora")
    else:
        args += ["--ref-model", str(model_dir)]
    assert main(args) == 0
    m = read_manifest(out)
    assert m["counts"]["pairs_read"] == 5
    assert m["counts"]["dropped_answers_too_long"] == 1
    assert m["counts"]["pairs_trained"] == 4
    assert m["counts"]["reference"] == ("starting model with the LoRA adapter disabled" if lora else str(model_dir))
    assert m["saved_as"] == ("merged" if lora else "full")
    assert reloads_and_generates(out, pair(0)["prompt"])


def test_a_malformed_pair_names_the_file_and_line(model_dir, tmp_path, capsys):
    bad = pair(1)
    bad["chosen"] = [{"role": "user", "content": "oops"}]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [pair(0), bad])
    rc = main(["train-dpo", str(pairs), "-o", str(tmp_path / "x"), "--model", str(model_dir), *QUICK])
    assert rc == 2
    assert f"{pairs}:2" in capsys.readouterr().err


def test_unknown_key_is_an_error_naming_it_before_anything_loads(dialogues, tmp_path, capsys):
    # The model does not exist: the key is reported before anything would load it.
    rc = main(
        [
            "train-chat",
            str(dialogues),
            "-o",
            str(tmp_path / "x"),
            "--model",
            str(tmp_path / "none"),
            "learning_rat=1e-4",
            *QUICK,
        ]
    )
    assert rc == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "command line: unknown key 'learning_rat': neither a Parrot training option nor a field of "
            "TRL's SFTConfig; did you mean 'learning_rate'?"
        )
    )
    cfg_file = tmp_path / "dpo.yaml"
    cfg_file.write_text("data: [p.jsonl]\noutput: out\nbeta: 0.1\nlearning_rate: 1.0e-6\nlos_type: ipo\n")
    assert main(["train-dpo", "--config", str(cfg_file)]) == 2
    assert f"{cfg_file}:5: unknown key 'los_type'" in capsys.readouterr().err  # DPOConfig's loss_type


def test_yaml_and_overrides_reach_trl(tmp_path):
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text("data: [a.jsonl]\noutput: out\nlora: true\nlearning_rate: 0.0002\nnum_train_epochs: 2\n")
    from trl import SFTConfig

    from parrot.core.config import load_yaml
    from parrot.train.trainer import make_trl_config, trl_kwargs

    cfg = build_config(SFTTrainConfig, load_yaml(cfg_file), ["num_train_epochs=3"], extra_field="trl_args")
    assert cfg.lora and cfg.trl_args == {"learning_rate": 0.0002, "num_train_epochs": 3}
    args = make_trl_config(SFTConfig, trl_kwargs(cfg, packing=cfg.packing))
    assert args.learning_rate == 0.0002 and args.num_train_epochs == 3 and args.packing


@pytest.mark.parametrize("name", ACCELERATE_CONFIGS)
def test_shipped_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(accelerate_config_path(name)))
    assert cfg.num_processes >= 1
    assert cfg.distributed_type.value in ("MULTI_GPU", "MULTI_CPU", "DEEPSPEED", "FSDP")


def test_unknown_accelerate_config_is_an_error():
    with pytest.raises(ParrotError, match="fsdp2"):
        accelerate_config_path("zero9")


def test_accelerate_launch_runs_the_same_command(model_dir, dialogues, tmp_path):
    cpu = tmp_path / "cpu.yaml"
    cpu.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nmixed_precision: 'no'\n"
        "num_machines: 1\nnum_processes: 1\nuse_cpu: true\n"
    )
    out = tmp_path / "launched"
    assert main(chat_args(dialogues, out, model_dir, "--accelerate", str(cpu))) == 0
    assert (out / "config.json").is_file()
    assert read_manifest(out)["config"]["accelerate"] is None  # the child ran the training itself
    assert not (tmp_path / "launched.launch.yaml").exists()  # the child's settings, tokens and all


@pytest.mark.parametrize("native", [True, False])
def test_cpu_runs_use_bf16_only_where_the_cpu_has_it_and_the_user_wins(monkeypatch, native):
    import torch

    from parrot.train import cpu, trainer

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(cpu, "cpu_has_native_bf16", lambda: native)
    cfg = build_config(SFTTrainConfig, {"data": ["a.jsonl"], "output": "o"})
    kw = trainer.trl_kwargs(cfg)
    assert kw["bf16"] is native and kw.get("use_cpu", False) is native
    assert kw[cpu.checkpointing_key()] is False
    cfg = build_config(
        SFTTrainConfig,
        {"data": ["a.jsonl"], "output": "o"},
        ["bf16=true", "gradient_checkpointing=true"],
        extra_field="trl_args",
    )
    kw = trainer.trl_kwargs(cfg)
    assert kw["bf16"] is True and kw["use_cpu"] is True  # asked for: transformers needs use_cpu
    assert kw["gradient_checkpointing"] is True and "activation_checkpointing" not in kw


def test_time_limit_stops_before_the_step_that_would_cross_it(monkeypatch):
    import time

    from transformers import TrainerControl, TrainerState

    from parrot.train.trainer import callbacks

    [limit] = callbacks(build_config(SFTTrainConfig, {"data": ["x.jsonl"], "output": "o", "time_limit": 1.0}, []))
    clock = iter([0.0, 20.0, 32.0, 44.0, 56.0, 68.0])  # a slow first step, then steps of 12 s
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    state, control = TrainerState(), TrainerControl()
    limit.on_train_begin(None, state, control)
    stopped_at = []
    for step in range(1, 6):
        state.global_step = step
        limit.on_step_end(None, state, control)
        if control.should_training_stop:
            stopped_at.append(step)
            break
    assert stopped_at == [4]  # at 56 s: another 12 s step would end past 60 s
    for bad in (0, -1):
        with pytest.raises(ParrotError, match="time_limit: expected more than 0, found"):
            build_config(SFTTrainConfig, {"data": ["x.jsonl"], "output": "o", "time_limit": bad}, [])


def test_time_limit_ends_a_run_early_and_saves_it(model_dir, dialogues, tmp_path):
    out = tmp_path / "timed"
    assert (
        main(
            [
                "train-chat",
                str(dialogues),
                "-o",
                str(out),
                "--model",
                str(model_dir),
                "--max-length",
                "220",
                "--time-limit",
                "0.002",
                *QUICK,
                "max_steps=500",
            ]
        )
        == 0
    )
    steps = read_manifest(out)["losses"]["steps"]
    assert 1 <= steps < 500
    assert reloads_and_generates(out, [{"role": "user", "content": "Hi"}])


def test_packed_rows_keep_each_session_to_itself(model_dir, tmp_path):
    """Sessions packed into one padding-free row give the same logits as each alone: attention stays
    within a session (position ids restart at each), and no label reaches across a boundary."""
    import torch

    from parrot.core.tokens import load_tokenizer
    from parrot.train.sft import build_dataset, chat_view, sft_trainer

    data = write_jsonl(tmp_path / "short.jsonl", [dialogue(i, 1) for i in range(6)])
    cfg = build_config(
        SFTTrainConfig,
        {"data": [str(data)], "output": str(tmp_path / "o"), "model": str(model_dir), "max_length": 220},
        QUICK,
        extra_field="trl_args",
    )
    tok = load_tokenizer(model_dir)
    ds = build_dataset(cfg.data, tok, chat_view, cfg.max_length, str(tmp_path / "cache"), {})
    trainer = sft_trainer(cfg, tok, model_dir, ds)
    batch = next(iter(trainer.get_train_dataloader()))
    ids, pos, labels = batch["input_ids"], batch["position_ids"], batch["labels"]
    assert ids.shape[0] == 1 and "attention_mask" not in batch  # flattened, no padding
    starts = (pos[0] == 0).nonzero().flatten().tolist()
    assert len(starts) >= 3  # several sessions in the row
    model = trainer.model.eval()
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0]
        for s, e in zip(starts, [*starts[1:], ids.shape[1]]):
            alone = model(input_ids=ids[:, s:e], use_cache=False).logits[0]
            assert torch.allclose(packed[s:e], alone, atol=1e-4)
            assert labels[0, s] == -100  # the previous session never predicts it


def test_remote_code_is_trusted_only_when_the_user_says_so(monkeypatch, tiny_model_dir):
    from transformers import AutoTokenizer

    from parrot.core.tokens import load_tokenizer
    from parrot.train.config import trusts_remote_code

    def cfg(*overrides):
        return build_config(
            SFTTrainConfig, {"data": ["d.jsonl"], "output": "o"}, list(overrides), extra_field="trl_args"
        )

    assert not trusts_remote_code(cfg())
    assert trusts_remote_code(cfg("trust_remote_code=true"))
    assert trusts_remote_code(cfg('model_init_kwargs={"trust_remote_code": true}'))
    seen = []
    real = AutoTokenizer.from_pretrained
    monkeypatch.setattr(
        AutoTokenizer, "from_pretrained", lambda path, **kw: seen.append(kw["trust_remote_code"]) or real(path, **kw)
    )
    load_tokenizer(tiny_model_dir)
    load_tokenizer(tiny_model_dir, trust_remote_code=trusts_remote_code(cfg("trust_remote_code=true")))
    assert seen == [False, True]


def test_the_dpo_reference_is_loaded_with_the_users_remote_code_setting(monkeypatch, tiny_model_dir):
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig

    from parrot.train.dpo import _load_reference

    seen = []
    monkeypatch.setattr(
        AutoModelForCausalLM, "from_pretrained", lambda path, **kw: seen.append(kw["trust_remote_code"])
    )
    for remote in (False, True):
        _load_reference(tiny_model_dir, DPOConfig(output_dir="o", use_cpu=True, trust_remote_code=remote))
    assert seen == [False, True]


def test_on_cpu_the_lm_head_scores_only_labelled_positions_with_the_same_loss_and_gradients(
    tiny_model_dir, monkeypatch
):
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM

    from parrot.train.cpu import compact_lm_head

    rows, real = [], trl_utils._ChunkedLogProbFunction

    class Spy:
        @staticmethod
        def apply(hidden, *rest):
            rows.append(hidden.shape[0])
            return real.apply(hidden, *rest)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Spy)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    trl_utils.add_fused_lm_head(model)
    ids = torch.randint(0, model.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :30] = -100  # a user turn's worth of tokens trains; the rest is context

    def loss_and_grads():
        model.zero_grad()
        out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        out.loss.backward()
        return out.loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    full_loss, full_grads = loss_and_grads()
    with compact_lm_head() as on:
        compact_loss, compact_grads = loss_and_grads()
    assert on and rows == [39, 10]  # every shifted position, then only the 10 with a label
    assert compact_loss == pytest.approx(full_loss, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(full_grads, compact_grads))
    with compact_lm_head(enabled=False) as on:  # torch_compile: shapes stay fixed
        loss_and_grads()
    assert not on and rows[-1] == 39


# ---------------------------------------------------------------- curves and the base model's held-out loss


def test_train_ask_records_its_loss_curve_and_the_untrained_models_heldout_loss(model_dir, dialogues, tmp_path):
    held_out = write_jsonl(tmp_path / "dev.jsonl", [dialogue(20 + i, 2) for i in range(3)])
    out = tmp_path / "ask"
    args = ["train-ask", str(dialogues), "-o", str(out), "--model", str(model_dir), "--max-length", "260"]
    args += ["--eval-data", str(held_out), "--eval-limit", "2", "learning_rate=1e-3"]
    args += ["per_device_train_batch_size=2", "disable_tqdm=true"]  # logging_steps left to Parrot's default
    assert main([*args, "max_steps=3", "save_strategy=steps", "save_steps=1"]) == 0
    m = read_manifest(out)
    assert [s for s, _ in m["loss_curve"]] == [1, 2, 3] and all(loss > 0 for _, loss in m["loss_curve"])
    base, trained = m["losses"]["eval_loss_base"], m["losses"]["eval_loss"]
    assert isinstance(base, float) and isinstance(trained, float) and base != trained
    assert m["eval_curve"] == [[0, base], [3, trained]]  # before any step, and after the last
    assert m["counts"]["eval"]["sessions_read"] == 2  # eval_limit: both passes on the same 2 sessions
    # per held-out session, trained and untrained: the loss and a stop decision after each answer
    held = m["heldout"]
    assert held["sessions"] == 2 and held["turns_too_long"] == 0 and "log(0.5)" in held["rule"]
    assert held["turns_shortened"] > 0  # the simulator's prompt and two turns pass max_length=260: shortened
    for model in ("trained", "base"):
        assert set(held[model]["loss"]) == {"d20", "d21"} and all(v > 0 for v in held[model]["loss"].values())
        assert [[real for _, real in turns] for turns in held[model]["stops"].values()] == [[False, True]] * 2
    assert held["trained"]["loss"] != held["base"]["loss"]

    # Resumed from a checkpoint, the recorded value is reused, not measured on the checkpoint's weights.
    state_file = out / "checkpoint-3" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    [entry] = [h for h in state["log_history"] if "heldout_base" in h]
    assert entry["heldout_base"]["mean_loss"] == base  # the per-token mean of the same pass
    entry["heldout_base"]["mean_loss"] = 123.0
    state_file.write_text(json.dumps(state))
    assert main([*args, "max_steps=4", "resume_from_checkpoint=true", "--resume", "--force"]) == 0
    m = read_manifest(out)
    assert m["losses"]["eval_loss_base"] == 123.0 and m["losses"]["steps"] == 4
    assert m["heldout"]["base"] == {**held["base"], "mean_loss": 123.0}  # the pass reused from the checkpoint
    assert [s for s, _ in m["loss_curve"]] == [1, 2, 3, 4]

    # --no-eval-base: one evaluation, after training
    assert main([*args, "max_steps=3", "--no-eval-base", "--overwrite"]) == 0
    m = read_manifest(out)
    assert "eval_loss_base" not in m["losses"] and m["eval_curve"] == [[3, m["losses"]["eval_loss"]]]
    assert m["heldout"]["base"] is None and m["heldout"]["trained"]["loss"]


def test_the_stop_decision_is_the_stop_completions_probability_against_one_half(tiny_model_dir, tmp_path):
    import torch

    from parrot.core.tokens import load_tokenizer
    from parrot.train.heldout import heldout_sessions, measure
    from parrot.train.sft import ask_view

    class Oracle(torch.nn.Module):
        """Puts all its probability on the token that comes next: every completion is certain."""

        def __init__(self, vocab):
            super().__init__()
            self.vocab, self.w = vocab, torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids):
            nxt = torch.cat([input_ids[:, 1:], input_ids[:, -1:]], dim=1)
            logits = torch.nn.functional.one_hot(nxt, self.vocab).float() * 100
            return type("Out", (), {"logits": logits})

    tok = load_tokenizer(tiny_model_dir, chat_template=True)
    path = write_jsonl(tmp_path / "dev.jsonl", [dialogue(1, 3), dialogue(2, 1)])
    sessions, counts = heldout_sessions(str(path), tok, ask_view(), ask_view(add_stop=True), 4096)
    assert counts == {"turns_shortened": 0, "turns_too_long": 0} and [len(s.turns) for s in sessions] == [3, 1]
    got = measure(Oracle(len(tok)), sessions)
    # certain of the stop marker after every answer: it stops at each turn; the real user only after the last
    assert got["stops"] == {"d1": [[True, False], [True, False], [True, True]], "d2": [[True, True]]}
    assert all(v < 1e-3 for v in got["loss"].values())  # and certain of every real question
    _, counts = heldout_sessions(str(path), tok, ask_view(), ask_view(add_stop=True), 280)
    assert counts["turns_shortened"] > 0  # prefixes over max_length lose their oldest turns first
    _, counts = heldout_sessions(str(path), tok, ask_view(), ask_view(add_stop=True), 20)
    assert counts["turns_too_long"] == 4  # not even the last answer fits: not scored


# ---------------------------------------------------------------- finished work kept, no litter left


CHECKPOINTS = ["save_strategy=steps", "save_steps=1"]
LITTER = re.compile(r"^\.tmp|\.tmp-|^\..+\.data-|\.saving")


def chat_args(dialogues, out, model_dir, *extra) -> list[str]:
    return [
        "train-chat",
        str(dialogues),
        "-o",
        str(out),
        "--model",
        str(model_dir),
        "--max-length",
        "220",
        *QUICK,
        *extra,
    ]


def litter(root) -> list[str]:
    """What a run must not leave: temporary files and folders (safetensors' ``.tmpXXXXXX``, the
    GGUF export's ``model.gguf.tmp-PID``, the folder a new model is saved in before it replaces
    the old one) and the rendered datasets' caches (``.OUT.data-*``)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if LITTER.search(p.name))


def stopped_mid_run(out) -> None:
    """The manifest a killed run leaves: the incomplete one written as it started."""
    path = manifest_path(out)
    path.write_text(json.dumps({**json.loads(path.read_text()), "complete": False}))


def error_line(capsys) -> str:
    """The CLI's error: one line, no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    [line] = [line for line in err.splitlines() if line.startswith("parrot ")]
    return line


@pytest.mark.parametrize("stage", ["train-chat", "train-dpo"])
def test_weights_that_cannot_be_read_are_one_line_naming_the_file(model_dir, dialogues, tmp_path, capsys, stage):
    weights = model_dir / "model.safetensors"
    weights.write_bytes(random.Random(0).randbytes(4096))
    data = dialogues if stage == "train-chat" else write_jsonl(tmp_path / "pairs.jsonl", [pair(0), pair(1)])
    assert main([stage, str(data), "-o", str(tmp_path / "out"), "--model", str(model_dir), *QUICK]) == 2
    line = error_line(capsys)
    assert line.startswith(f"parrot {stage}: error: {weights}: cannot be read as safetensors (")
    assert line.endswith("): the file is damaged; train it again")
    assert litter(tmp_path) == []


@pytest.mark.parametrize("torn", ["no-state", "half-written-state"])
def test_resume_takes_the_latest_complete_checkpoint_and_removes_a_torn_one(
    model_dir, dialogues, tmp_path, caplog, torn
):
    out = tmp_path / "chat"
    args = chat_args(dialogues, out, model_dir, *CHECKPOINTS, "max_steps=3")
    assert main(args) == 0
    # A mark in checkpoint-2's log: a run resumed from it carries the mark on.
    state_file = out / "checkpoint-2" / "trainer_state.json"
    marked = json.loads(state_file.read_text())
    marked["log_history"][0]["loss"] = 123.0
    state_file.write_text(json.dumps(marked))
    # Killed while saving checkpoint-3: the trainer state (TRL's last write) missing or cut short.
    state = out / "checkpoint-3" / "trainer_state.json"
    if torn == "no-state":
        state.unlink()
    else:
        state.write_text(state.read_text()[:100])
    (out / "checkpoint-3" / ".tmpAb12Cd").write_bytes(b"\0" * 64)  # safetensors' temporary file
    stopped_mid_run(out)
    with caplog.at_level(logging.INFO):
        assert main([*args, "--resume"]) == 0
    assert f"{out / 'checkpoint-3'}: incomplete checkpoint" in caplog.text  # removed as the run started
    assert f"resuming from {out / 'checkpoint-2'}, the latest complete checkpoint" in caplog.text
    history = json.loads(state.read_text())["log_history"]
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3] and history[0]["loss"] == 123.0
    m = read_manifest(out)
    assert m["complete"] and m["losses"]["steps"] == 3
    assert litter(tmp_path) == []


def test_resume_from_a_named_checkpoint_that_is_incomplete_is_an_error(model_dir, dialogues, tmp_path, capsys):
    out = tmp_path / "chat"
    args = chat_args(dialogues, out, model_dir, *CHECKPOINTS, "max_steps=2")
    assert main(args) == 0
    named = shutil.copytree(out / "checkpoint-2", tmp_path / "kept-checkpoint")
    (named / "trainer_state.json").unlink()
    stopped_mid_run(out)
    assert main([*args, "--resume", "--force", f"resume_from_checkpoint={named}"]) == 2
    assert error_line(capsys).endswith(f"{named}: incomplete checkpoint (no readable trainer_state.json)")


def test_a_run_killed_while_it_saves_a_checkpoint_resumes_and_leaves_no_litter(model_dir, dialogues, tmp_path):
    """A real ``parrot train-chat`` killed with SIGKILL as ``checkpoint-2/`` appears (mid-save, or
    just after), then resumed: it finishes, from a complete checkpoint, and nothing is left over."""
    out = tmp_path / "chat"
    args = chat_args(dialogues, out, model_dir, *CHECKPOINTS, "max_steps=4")
    proc = subprocess.Popen([sys.executable, "-m", "parrot", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoint-2").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0].decode()[-3000:]
            time.sleep(0.005)
    finally:
        proc.kill()
        proc.wait(30)
    assert main([*args, "--resume"]) == 0
    m = read_manifest(out)
    assert m["complete"] and m["losses"]["steps"] == 4
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [f"checkpoint-{n}" for n in range(1, 5)]
    assert all((p / "trainer_state.json").is_file() for p in out.glob("checkpoint-*"))
    assert litter(tmp_path) == []


def test_what_a_killed_run_left_is_removed_at_the_next_start(model_dir, dialogues, tmp_path):
    out = tmp_path / "chat"
    out.mkdir()
    (out / ".tmpX1y2Z3").write_bytes(b"\0" * 1024)  # safetensors' temporary file, killed mid-write
    (out / "model.gguf.tmp-12345").write_bytes(b"GGUF")  # the GGUF export's
    (out / ".saving.tmp").mkdir()  # a new model being saved
    (out / ".saving.tmp" / "model.safetensors").write_bytes(b"\0" * 1024)
    for cache in (".chat.data-k1ll3d", ".chat.data-0"):  # the rendered datasets' caches
        (tmp_path / cache / "generator").mkdir(parents=True)
        (tmp_path / cache / "generator" / "data.arrow").write_bytes(b"\0" * 1024)
    (tmp_path / ".other.data-abc").mkdir()  # another output's: not this run's business
    assert main(chat_args(dialogues, out, model_dir)) == 0
    assert read_manifest(out)["complete"]
    assert litter(tmp_path) == [".other.data-abc"]


def failing_safetensors(monkeypatch, code: int) -> None:
    """safetensors fails to write as it does on a full disk or a directory it may not write to
    (its message, as a real tmpfs gives it; its temporary file removed)."""
    import safetensors.torch
    from safetensors import SafetensorError

    def serialize_file(tensors, filename, metadata=None):
        raise SafetensorError(f"Error while serializing: I/O error: {os.strerror(code)} (os error {code})")

    monkeypatch.setattr(safetensors.torch, "serialize_file", serialize_file)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_a_save_that_fails_for_lack_of_space_is_one_line_and_claims_nothing(
    model_dir, dialogues, tmp_path, capsys, monkeypatch, code
):
    out = tmp_path / "chat"
    failing_safetensors(monkeypatch, code)
    assert main(chat_args(dialogues, out, model_dir)) == 2
    assert error_line(capsys) == f"parrot train-chat: error: {out}: {os.strerror(code)}"
    m = read_manifest(out)
    assert m is None or not m["complete"]
    assert litter(tmp_path) == []


def test_a_new_model_that_fails_to_save_leaves_the_previous_one(model_dir, dialogues, tmp_path, capsys, monkeypatch):
    out = tmp_path / "chat"
    args = chat_args(dialogues, out, model_dir, "--gguf")
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "model.gguf"} <= set(before)
    failing_safetensors(monkeypatch, errno.ENOSPC)
    assert main([*args, "--overwrite", "learning_rate=0.1"]) == 2
    assert error_line(capsys) == f"parrot train-chat: error: {out}: No space left on device"
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert reloads_and_generates(out, [{"role": "user", "content": "Hi"}])
    assert litter(tmp_path) == []


def test_a_new_model_replaces_the_previous_ones_files_and_removes_those_it_did_not_write(
    model_dir, dialogues, tmp_path, monkeypatch
):
    out = tmp_path / "chat"
    args = chat_args(dialogues, out, model_dir)
    assert main([*args, "--gguf"]) == 0
    (out / "notes.txt").write_text("mine")
    full = (out / "model.safetensors").read_bytes()
    cfg = build_config(SFTTrainConfig, {"data": [str(dialogues)], "output": str(out)})
    kept = {p.name for p in cfg.kept_until_replaced()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "model.gguf"} <= kept
    assert not kept & {"notes.txt", "README.md", "checkpoint-1", "runs"}

    assert main([*args, "--overwrite", "--lora", "--no-merge"]) == 0  # adapter only: the full model goes
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "notes.txt"} <= names
    assert not names & {"model.safetensors", "config.json", "model.gguf"}
    assert read_manifest(out)["saved_as"] == "adapter"

    assert main([*args, "--overwrite", "learning_rate=0.1"]) == 0  # full weights: the adapter goes
    names = {p.name for p in out.iterdir()}
    assert not names & {"adapter_config.json", "adapter_model.safetensors"}
    assert (out / "model.safetensors").read_bytes() != full and (out / "notes.txt").read_text() == "mine"
    assert reloads_and_generates(out, [{"role": "user", "content": "Hi"}])
    assert litter(tmp_path) == []


def test_only_the_main_process_moves_or_removes_files(tmp_path, monkeypatch):
    """Under accelerate or torchrun every process saves (a collective) and renders its own data;
    only rank 0 moves the new model into place and removes what a killed run left, and no process
    touches another's dataset cache."""
    from parrot.train.dataset import dataset_cache
    from parrot.train.save import save_output
    from parrot.train.trainer import leftovers_removed

    out = tmp_path / "chat"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"previous")
    (out / ".tmpAb12Cd").write_bytes(b"\0")
    cfg = build_config(SFTTrainConfig, {"data": ["d.jsonl"], "output": str(out)})

    class Worker:
        """A process other than rank 0: it takes part in saving and writes nothing."""

        saved: list = []

        def is_world_process_zero(self):
            return False

        def save_model(self, path):
            self.saved.append(path)

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    (tmp_path / ".chat.data-0").mkdir()  # rank 0's, in use
    assert save_output(Worker(), cfg, tokenizer=None) == "" and Worker.saved == [str(out / ".saving.tmp")]
    with leftovers_removed(out), dataset_cache(cfg) as cache:
        assert cache == str(tmp_path / ".chat.data-1")
    assert sorted(p.name for p in out.iterdir()) == [".tmpAb12Cd", "model.safetensors"]
    assert (out / "model.safetensors").read_bytes() == b"previous" and (tmp_path / ".chat.data-0").is_dir()

    monkeypatch.setenv("RANK", "0")
    for rank in (1, 2):  # rank 1's, in use; rank 2's, of a run with more processes
        (tmp_path / f".chat.data-{rank}").mkdir()
    with leftovers_removed(out), dataset_cache(cfg) as cache:
        assert cache == str(tmp_path / ".chat.data-0")
    assert sorted(p.name for p in tmp_path.glob(".chat.data-*")) == [".chat.data-1"]
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]


def test_a_save_without_weights_replaces_nothing(tmp_path):
    """A trainer that saved no weights (a sharded state dict left sharded) is an error, and the
    previous model stays."""
    from parrot.train.save import save_output

    out = tmp_path / "chat"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"previous")
    cfg = build_config(SFTTrainConfig, {"data": ["d.jsonl"], "output": str(out)})

    class SavesNothing:
        def is_world_process_zero(self):
            return True

        def save_model(self, path):
            (Path(path) / "config.json").write_text("{}")

    with pytest.raises(ParrotError, match="the trainer saved no weights"):
        save_output(SavesNothing(), cfg, tokenizer=None)
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]
    assert (out / "model.safetensors").read_bytes() == b"previous"
