"""The default experiment, end to end, with tiny random-weight models: every arm's output and
every section of the report; then one arm changed, and only that arm and what reads it run again."""

import hashlib
import json
import re
import shutil

import pytest
from test_pipeline import _statuses

from parrot.cli import main
from parrot.core.config import build_config, load_yaml
from parrot.pipeline import PipelineConfig, stage_config
from parrot.pipeline.configs import shipped

FOLLOW_UPS = ["Can you make it shorter?", "What about the second one?", "Why is that?", "And the last one?"]


def _logs(tmp_path, n=16):
    """ShareGPT-style logs of 2-5 turns whose follow-ups lean on the history (CaPO needs those)."""
    answer = "The first is the river, the second is the mill, and the last is the hall of records."
    rows = []
    for i in range(n):
        turns = [f"Tell me about place number {i} in the old town, please."] + FOLLOW_UPS[: 1 + i % 4]
        conv = [m for q in turns for m in ({"from": "human", "value": q}, {"from": "gpt", "value": f"({i}) {answer}"})]
        rows.append({"id": f"log{i}", "conversations": conv})
    path = tmp_path / "logs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _judge(request: dict) -> str:
    """A judge that reads what it grades: a rating from a hash of the prompt."""
    digest = hashlib.sha256(json.dumps(request["messages"]).encode()).digest()
    return f"Graded. Rating: [[{1 + digest[0] % 10}]]"


def test_the_default_experiment_runs_every_arm_and_reports_on_all_of_them(
    tmp_path, tiny_model_dir, fault_server, capsys
):
    fault_server.responder = _judge
    tiny, w = str(tiny_model_dir), tmp_path / "w"
    train = f"{{model: {tiny}, max_length: 256, max_steps: 1, per_device_train_batch_size: 2, disable_tqdm: true}}"
    config = tmp_path / "experiment.yaml"
    config.write_text(
        f"""workdir: {w}
defaults:
  train-ask: {train}
  train-chat: {train}
  train-dpo: {{max_length: 256, max_steps: 1, per_device_train_batch_size: 1, disable_tqdm: true}}
  synthesize: {{num_sessions: 4, max_turns: 3, asker: {{max_tokens: 8}},
               assistant: {{spec: "hf:{tiny}", max_tokens: 8}}}}
  filter: {{min_turns: 1}}
  eval answer: {{limit: 2, max_tokens: 8}}
  eval judge: {{judge: {{spec: "openai:judge", base_url: "{fault_server.base_url}"}}, limit: 2}}
steps:
  sharegpt: {{source: [{_logs(tmp_path)}], dev_fraction: 0.25}}
  ask: {{eval_limit: 2}}
  synth_selfchat: {{asker: "hf:{tiny}"}}
  stats: {{embeddings: false}}
  capo: {{dialogues: ["{{parrot}}", "{{sharegpt}}"], generator: "hf:{tiny}", max_tokens: 8,
         similarity_threshold: 1.0}}
  mtbench_base: {{model: "hf:{tiny}"}}
  # greedy (verified benches' temperature) the tiny random model ends every reply at once: sampled, it answers
  verified_base: {{model: {{spec: "hf:{tiny}", temperature: 0.7}}}}
  verified_selfchat: {{model: {{spec: "{{serve}}:{{sft_selfchat}}", temperature: 0.7}}}}
  verified_parrot: {{model: {{spec: "{{serve}}:{{sft_parrot}}", temperature: 0.7}}}}
  verified_capo: {{model: {{spec: "{{serve}}:{{capo_dpo}}", temperature: 0.7}}}}
"""
    )
    assert main(["pipeline", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    cfg = build_config(PipelineConfig, {"workdir": str(w), "steps": {}})
    statuses = _statuses(out)
    assert set(statuses) == {s.name for s in cfg.graph} and set(statuses.values()) == {"done"}
    assert f"report: {w / 'report/report.md'}  {w / 'report/report.html'}" in out

    # every arm's output is there
    for name in ("synth_parrot", "synth_selfchat", "parrot", "selfchat", "capo"):
        assert (w / f"data/{name}.jsonl").stat().st_size > 0
    for name in ("ask", "sft_selfchat", "sft_parrot", "capo_dpo"):
        assert (w / f"models/{name}/config.json").is_file()
    for bench in ("mtbench", "mtbenchpp"):
        judged = [json.loads(line) for line in (w / f"eval/judge_{bench}.jsonl").read_text().splitlines()]
        assert {j["model"] for j in judged} == {"base", "sft_selfchat", "sft_parrot", "capo_dpo"}
    verified = [json.loads(line) for line in (w / "eval/verify.jsonl").read_text().splitlines()]
    assert {v["model"] for v in verified} == {"base", "sft_selfchat", "sft_parrot", "capo_dpo"}
    prompted = json.loads((w / "data/synth_selfchat.jsonl.manifest.json").read_text())["config"]
    assert prompted["asker_mode"] == "prompted"

    # every section of the report, naming every arm
    md = (w / "report/report.md").read_text()
    for heading in (
        "Data", "Simulators", "Training", "CaPO pairs", "MT-Bench", "MT-Bench++",
        "Verified instruction following (verified-mt)", "Comparisons", "What the numbers support",
    ):  # fmt: skip
        assert re.search(rf"^#+ {re.escape(heading)}\s*$", md, re.M), heading
    for arm in ("Parrot-Ask", "Self-chat", "base", "sft_selfchat", "sft_parrot", "capo_dpo"):
        assert arm in md
    assert "sft_parrot vs sft_selfchat" in md and "capo_dpo vs sft_parrot" in md
    html = (w / "report/report.html").read_text()
    assert "data:image/png;base64," in html and not re.search(r"""(src|href)=["']https?://""", html)

    # one arm changed (other sessions): that arm, what reads it, and nothing else runs again
    assert main(["pipeline", "--config", str(config), "steps.synth_selfchat.seed=5"]) == 0
    done = {k for k, v in _statuses(capsys.readouterr().out).items() if v == "done"}
    assert done == {
        "synth_selfchat", "selfchat", "stats", "sft_selfchat", "mtbench_selfchat", "mtbenchpp_selfchat",
        "verified_selfchat", "judge_mtbench", "judge_mtbenchpp", "verify", "report",
    }  # fmt: skip
    assert stage_config(cfg.step("capo"), cfg).output.exists()

    # the work directory copied elsewhere (new paths, new mtimes): every step up to date there
    moved = tmp_path / "moved"
    shutil.copytree(w, moved, copy_function=shutil.copy)
    assert main(["pipeline", "--config", str(config), "steps.synth_selfchat.seed=5", f"workdir={moved}"]) == 0
    assert set(_statuses(capsys.readouterr().out).values()) == {"up to date"}


@pytest.mark.parametrize("name", sorted(shipped()))
def test_the_shipped_configs_are_valid_in_every_step_and_say_how_to_run_them(name):
    """The GPU configs cannot run here; they are parsed and every step's settings checked (every key
    known, TRL's included, every value valid) so they cannot rot."""
    path = shipped()[name]
    cfg = build_config(PipelineConfig, load_yaml(path), where=str(path))
    for step in cfg.graph:
        stage_config(step, cfg)
    header = path.read_text().split("\nworkdir:")[0]
    assert "parrot pipeline --config $C" in header or "make demo" in header
    assert re.search(r"(?i)\b(hardware|cpu)\b", header) and re.search(r"(?i)\b(min|hours?|day|time)\b", header)
    assert "7.04" in header  # the paper's numbers to read the results against
