"""``--executor ray`` on a real local Ray cluster (one node, 2 CPUs: two replicas of one CPU each):
the same records as the local executor, a replica killed mid-run, endpoints shared beside it."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fixtures.servers import FaultServer
from synth_helpers import Script, read_out, write_seeds

from parrot import ParrotError
from parrot.backends import BackendConfig, SamplingParams
from parrot.backends.ray_pool import RayBackend, replica_plan
from parrot.core.config import build_config
from parrot.core.manifest import read_manifest
from parrot.evaluate.answer import AnswerConfig, answer
from parrot.evaluate.judge import JudgeConfig, judge
from parrot.synthesize.journal import journal_path
from parrot.synthesize.stage import SynthesizeConfig, synthesize

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster with 2 CPUs, shared by this module's tests."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False)
    yield ray
    ray.shutdown()


def synth_cfg(tmp_path, name, spec, **kw):
    role = {"spec": spec, "batch_size": kw.pop("batch_size", 2), "max_tokens": kw.pop("max_tokens", 8)}
    return build_config(
        SynthesizeConfig,
        {
            "output": str(tmp_path / f"{name}.jsonl"),
            "seeds": str(write_seeds(tmp_path / "seeds.jsonl")),
            "num_sessions": 6,
            "max_turns": 3,
            "asker_mode": "prompted",
            "asker": role,
            "assistant": role,
            **kw,
        },
    )


def sessions(path):
    return {r["id"]: r["messages"] for r in read_out(path)}


def test_synthesis_on_two_replicas_writes_the_records_of_the_local_executor(cluster, tmp_path, tiny_model_dir):
    spec = f"hf:{tiny_model_dir}"
    # the same sessions in flight (by default the window grows with the replicas: a batch each)
    synthesize(synth_cfg(tmp_path, "local", spec, in_flight=6))
    synthesize(synth_cfg(tmp_path, "ray", spec, in_flight=6, executor="ray", replicas=2))

    local, on_ray = sessions(tmp_path / "local.jsonl"), sessions(tmp_path / "ray.jsonl")
    # same ids, and the same words: the replicas run the batches this process would have run, each
    # seeded from its calls' seeds
    assert len(local) == 6 and on_ray == local
    manifest = read_manifest(tmp_path / "ray.jsonl")
    usage = manifest["usage"]["asker"]  # one model for both roles: one set of replicas
    assert manifest["usage"]["shared_backend"] is True
    assert [r["replica"] for r in usage["replicas"]] == [0, 1]
    assert all(r["requests"] > 0 and r["failures"] == 0 for r in usage["replicas"])  # both served
    assert usage["requests"] == sum(r["requests"] for r in usage["replicas"]) and usage["failures"] == 0
    assert manifest["models"]["asker"]["executor"] == "ray" and manifest["models"]["asker"]["replicas"] == 2
    assert manifest["counts"]["sessions"] == 6


def test_a_replica_killed_mid_run_loses_no_session_and_duplicates_none(cluster, tmp_path, tiny_model_dir):
    spec = f"hf:{tiny_model_dir}"
    # batch size 1: each conversation is generated alone, so the words do not depend on which
    # replica ran which call, or on the calls resent after the kill
    options = dict(batch_size=1, max_tokens=24, num_sessions=8, in_flight=8)
    synthesize(synth_cfg(tmp_path, "local", spec, **options))
    cfg = synth_cfg(tmp_path, "ray", spec, executor="ray", **options)
    backend = RayBackend(cfg.asker, replicas=2).start()
    victim = backend.replica_pids()[0]
    killed = threading.Event()

    def kill_mid_run():
        journal = journal_path(cfg.output)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # a few messages in: calls are queued on both replicas
            if journal.exists() and journal.read_text().count("\n") >= 6:
                os.kill(victim, signal.SIGKILL)
                killed.set()
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_mid_run)
    killer.start()
    with backend:
        synthesize(cfg, asker=backend, assistant=backend)
    killer.join()

    assert killed.is_set()
    on_ray = [r["id"] for r in read_out(Path(cfg.output))]
    assert len(on_ray) == len(set(on_ray)) == 8  # every session once
    assert sessions(Path(cfg.output)) == sessions(tmp_path / "local.jsonl")
    replicas = read_manifest(cfg.output)["usage"]["asker"]["replicas"]
    assert replicas[0]["failures"] >= 1 and replicas[1]["failures"] == 0
    assert read_manifest(cfg.output)["counts"]["sessions"] == 8


def test_a_lost_replica_is_started_again_and_takes_calls_again(cluster, tiny_model_dir):
    params = SamplingParams(temperature=0.7, max_tokens=8, seed=1)
    convs = [[{"role": "user", "content": f"question {i}"}] for i in range(4)]
    with RayBackend(BackendConfig(spec=f"hf:{tiny_model_dir}", batch_size=1), replicas=2) as pool:
        os.kill(pool.replica_pids()[0], signal.SIGKILL)
        first = pool.generate(convs, params)  # replica 0's share fails over to replica 1
        lost = pool.usage.replicas[0]["failures"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # Ray starts replica 0 again; then it takes its share
            again = pool.generate(convs, params)
            replica = pool.usage.replicas[0]
            if replica["requests"] > replica["failures"]:
                break
            time.sleep(0.5)
    assert lost >= 1 and replica["set_aside"] == 1 and replica["failures"] == lost  # no call sent to it while down
    assert replica["requests"] > replica["failures"]  # back, and answering
    assert all(c.ok for c in first + again) and [c.text for c in again] == [c.text for c in first]


def test_a_driver_killed_mid_run_resumes_as_with_the_local_executor(cluster, tmp_path, tiny_model_dir, fault_server):
    """``parrot synthesize --executor ray`` in a process of its own, connected to the cluster by
    $RAY_ADDRESS, SIGKILLed while a call is in flight; ``--resume`` finishes the run."""
    script, reached, release = Script(), threading.Event(), threading.Event()

    def responder(body):
        if len(fault_server.requests) >= 7:  # hold a call in flight: the kill lands mid-run
            reached.set()
            release.wait(60)
        return script(body)

    fault_server.responder = responder
    cfg = synth_cfg(tmp_path, "out", f"hf:{tiny_model_dir}", executor="ray", replicas=1)
    argv = ["synthesize", "-o", cfg.output, "--seeds", cfg.seeds, "--num-sessions", "6", "--max-turns", "3"]
    argv += ["--asker", f"hf:{tiny_model_dir}", "--asker-mode", "prompted", "asker.max_tokens=8", "asker.batch_size=2"]
    argv += ["--assistant", "openai:chat", f"assistant.base_url={fault_server.base_url}", "assistant.max_retries=0"]
    argv += ["--executor", "ray", "--replicas", "1"]
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "PARROT_NO_PROGRESS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "parrot", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert reached.wait(120), proc.communicate(timeout=5)[0].decode()[-3000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        release.set()
    out = Path(cfg.output)
    assert len(read_out(out)) < 6 if out.exists() else True
    assert journal_path(out).stat().st_size > 0  # the sessions in flight were journaled

    fault_server.responder = script
    from parrot import cli

    assert cli.main([*argv, "--resume"]) == 0
    ids = [r["id"] for r in read_out(out)]
    assert len(ids) == len(set(ids)) == 6
    assert all(r["meta"]["turns"] >= 1 for r in read_out(out)) and read_manifest(out)["counts"]["sessions"] == 6
    assert read_manifest(out)["complete"] and not journal_path(out).exists()


def test_ctrl_c_stops_a_run_on_gguf_replicas_promptly_and_resume_finishes_it(cluster, tmp_path):
    """SIGINT (Ctrl-C) to ``parrot synthesize --executor ray`` while llama.cpp replicas are
    generating: the command exits within seconds (a clean stop of a busy replica used to wait up to
    30 s for its call), and ``--resume`` finishes the run with every session exactly once."""
    out = tmp_path / "out.jsonl"
    argv = ["synthesize", "-o", str(out), "--seeds", str(write_seeds(tmp_path / "seeds.jsonl"))]
    argv += ["--num-sessions", "3", "--max-turns", "1", "--asker-mode", "prompted", "--asker", "smollm2"]
    # every answer runs to max_tokens (no early end of text): calls are still generating at the signal
    argv += ["--assistant", "smollm2", "assistant.max_tokens=256", "assistant.extra.ignore_eos=true"]
    argv += ["assistant.slots=3", "assistant.threads=1", "asker.slots=1", "asker.threads=1"]
    argv += ["--in-flight", "3", "--executor", "ray", "--replicas", "1"]
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "PARROT_NO_PROGRESS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "parrot", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Ctrl-C reaches the command as at a terminal, even when the tests themselves were started in
        # the background (a shell's `&` starts them with SIGINT ignored, and a child inherits that)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines, running = [], threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if "sessions to run" in line:
                running.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert running.wait(180), "".join(lines)[-3000:]
        time.sleep(2)  # the three calls are on the replica, each a few hundred tokens from its end
        assert proc.poll() is None, "".join(lines)[-3000:]
        signalled = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    assert proc.returncode == 130, "".join(lines)[-3000:]
    assert took < 12, f"Ctrl-C took {took:.1f} s to stop the command"
    assert not read_manifest(out)["complete"]

    from parrot import cli

    assert cli.main([*argv, "--resume"]) == 0
    ids = [r["id"] for r in read_out(out)]
    assert len(ids) == len(set(ids)) == 3
    assert read_manifest(out)["complete"] and read_manifest(out)["counts"]["sessions"] == 3
    assert not journal_path(out).exists()


def test_endpoint_roles_are_shared_and_a_failing_endpoint_is_set_aside(cluster, tmp_path, tiny_model_dir):
    """The asker runs on Ray replicas; the assistant is three servers, one always failing."""
    servers = [FaultServer().start() for _ in range(3)]
    servers[1].add_faults(*["500"] * 200)
    try:
        cfg = synth_cfg(tmp_path, "mixed", f"hf:{tiny_model_dir}", executor="ray", replicas=1)
        cfg.assistant = BackendConfig(
            spec="openai:assistant",
            base_url=[s.base_url for s in servers],
            concurrency=4,
            max_retries=2,
            extra={"endpoint_cooldown": 600.0},
        )
        synthesize(cfg)
    finally:
        for s in servers:
            s.stop()
    records = read_out(Path(cfg.output))
    assert len(records) == 6
    assert all(m["content"].startswith("echo: ") for r in records for m in r["messages"][1::2])
    usage = read_manifest(cfg.output)["usage"]
    endpoints = usage["assistant"]["endpoints"]
    assert endpoints[1]["ok"] == 0 and endpoints[1]["set_aside"] >= 1
    assert endpoints[0]["ok"] + endpoints[2]["ok"] == usage["assistant"]["completions"] > 0
    assert [r["replica"] for r in usage["asker"]["replicas"]] == [0]
    assert "replicas" not in usage["assistant"]


def test_eval_answer_and_judge_on_ray_write_what_the_local_executor_writes(cluster, tmp_path, tiny_model_dir):
    # one question per forward pass, seeded: the words do not depend on which calls met in a batch
    model = BackendConfig(spec=f"hf:{tiny_model_dir}", seed=1, batch_size=1)

    def answers(name, **kw):
        answer(AnswerConfig(output=str(tmp_path / name), bench="mt-bench", limit=4, max_tokens=12, model=model, **kw))
        return {r["question_id"]: r["choices"][0]["turns"] for r in map(json.loads, open(tmp_path / name))}

    def judgments(name, **kw):
        judge_model = dataclasses.replace(model, max_tokens=8, temperature=0.7)  # greedy: this model says nothing
        out = tmp_path / name
        judge(
            JudgeConfig(
                answers=[str(tmp_path / "local.jsonl")], output=str(out), judge=judge_model, parse_retries=0, **kw
            )
        )
        return {(r["question_id"], r["turn"]): r["judgment"] for r in map(json.loads, open(out))}

    local = answers("local.jsonl")
    assert len(local) == 4 and answers("ray.jsonl", executor="ray", replicas=2) == local
    judged = judgments("judged-local.jsonl")
    assert len(judged) == 8 and judgments("judged-ray.jsonl", executor="ray", replicas=2) == judged


def test_a_model_a_replica_cannot_load_is_an_error_naming_it(cluster, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ParrotError, match=r"a replica could not load the model"):
        RayBackend(BackendConfig(spec=f"hf:{broken}"), replicas=1).start()


def test_ray_is_imported_only_when_a_stage_asks_for_it(tmp_path, tiny_model_dir):
    """A local run (and the command line, the pipeline) never imports Ray: the extra is optional."""
    code = (
        "import sys; from parrot import cli; import parrot.pipeline; "
        f"assert cli.main(['eval', 'answer', '-o', {str(tmp_path / 'a.jsonl')!r}, '--bench', 'mt-bench', "
        f"'--limit', '1', '--max-tokens', '4', '--model', 'hf:{tiny_model_dir}']) == 0; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_without_ray_installed_the_error_names_the_extra(monkeypatch, tmp_path, tiny_model_dir):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ParrotError, match=r"pip install 'parrot-chat\[ray\]'"):
        RayBackend(BackendConfig(spec=f"hf:{tiny_model_dir}")).start()


GPU_NODE = {"GPU": 8.0, "CPU": 64.0}


@pytest.mark.parametrize(
    "options, cluster_resources, models, replicas, expected",
    [
        ({"spec": "hf:m"}, GPU_NODE, 1, None, (8, {"num_gpus": 1, "num_cpus": 1})),
        ({"spec": "hf:m"}, GPU_NODE, 2, None, (4, {"num_gpus": 1, "num_cpus": 1})),  # two models share
        ({"spec": "vllm:m", "tensor_parallel_size": 2}, GPU_NODE, 1, None, (4, {"num_gpus": 2, "num_cpus": 1})),
        ({"spec": "hf:m"}, GPU_NODE, 1, 3, (3, {"num_gpus": 1, "num_cpus": 1})),
        ({"spec": "hf:m"}, {"CPU": 16.0}, 1, None, (16, {"num_cpus": 1})),
        ({"spec": "hf:m", "device": "cpu"}, GPU_NODE, 1, None, (64, {"num_cpus": 1})),
        ({"spec": "gguf:m.gguf", "threads": 4}, GPU_NODE, 2, None, (8, {"num_cpus": 4})),  # llama.cpp: CPUs
    ],
)
def test_replicas_default_to_one_per_gpu_or_per_threads_cpus(options, cluster_resources, models, replicas, expected):
    config = BackendConfig(**options)
    assert replica_plan(config, cluster_resources, replicas=replicas, models=models) == expected


def test_a_replica_that_needs_more_gpus_than_the_cluster_has_is_an_error():
    with pytest.raises(ParrotError, match=r"needs 4 GPU\(s\) and the Ray cluster has 2"):
        replica_plan(
            BackendConfig(spec="vllm:m", tensor_parallel_size=4), {"GPU": 2, "CPU": 8}, replicas=None, models=1
        )
    with pytest.raises(ParrotError, match="has 0"):
        replica_plan(BackendConfig(spec="hf:m", device="cuda"), {"CPU": 8}, replicas=None, models=1)
