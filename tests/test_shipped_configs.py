"""The pipeline configs ship inside the package (``parrot/configs``), as torchtune's do: ``--config NAME``
works from any directory, with or without a clone, and a path still works. One test builds the wheel,
installs it into a fresh virtualenv and plans every config by name there, from an empty folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from parrot.cli import main
from parrot.pipeline.configs import config_file, shipped

ROOT = Path(__file__).resolve().parents[1]
IN_TREE = sorted(p.stem for p in (ROOT / "src" / "parrot" / "configs").glob("*.yaml"))


def test_every_config_in_the_tree_is_shipped_by_name():
    assert {"demo", "single-gpu", "paper"} <= set(shipped()) and sorted(shipped()) == IN_TREE
    assert not (ROOT / "configs").exists()  # one copy only


def test_a_name_plans_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["pipeline", "--config", "demo", "--plan"]) == 0
    assert "synth_parrot" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())  # planning writes nothing


def test_a_path_still_works(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine.yaml"
    mine.write_text('steps:\n  extra_stats: {stage: stats, data: ["{parrot}"]}\n')
    assert config_file(str(mine)) == mine
    assert main(["pipeline", "--config", str(mine), "--plan"]) == 0
    assert "extra_stats" in capsys.readouterr().out


def test_neither_a_name_nor_a_file_is_an_error_listing_the_names(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["pipeline", "--config", "dmeo", "--plan"]) == 2
    err = capsys.readouterr().err
    assert "--config dmeo: no such file, and not the name of a shipped config" in err
    assert all(name in err for name in shipped()) and "--list-configs" in err


def test_list_configs_names_each_with_its_header_line(capsys):
    assert main(["pipeline", "--list-configs"]) == 0
    out = capsys.readouterr().out
    for name in shipped():
        assert any(line.startswith(f"{name} ") for line in out.splitlines())
    assert "The paper's setting (Sun et al., ACL 2024)" in out and str(shipped()["demo"].parent) in out


def _wheel(tmp_path: Path) -> Path:
    """The project's wheel, built offline from a copy of the tree (an in-tree build would leave
    build/ and egg-info behind) with the running interpreter's setuptools."""
    src = tmp_path / "tree"
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp_path, src], check=True)
    return next(tmp_path.glob("parrot_chat-*.whl"))


def test_the_wheel_installed_in_a_fresh_virtualenv_plans_every_config_by_name(tmp_path):
    wheel = _wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    # the dependencies (torch, trl...) from the interpreter running the tests, after the venv's own
    # site-packages: the wheel's parrot comes first, whatever that interpreter has installed
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "--python", python]
    subprocess.run([*pip, "install", "--no-deps", "--no-index", wheel], check=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    where = subprocess.check_output(
        [python, "-c", "import parrot; print(parrot.__file__)"], cwd=empty, env=env, text=True
    )
    assert Path(where.strip()).is_relative_to(venv), f"parrot imported from {where}, not from the new virtualenv"
    parrot = venv / "bin" / "parrot"
    listed = subprocess.run([parrot, "pipeline", "--list-configs"], cwd=empty, env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()[: len(IN_TREE)]] == IN_TREE
    # every config planned by name, side by side (each start-up imports TRL: seconds of CPU)
    runs = {
        name: subprocess.Popen(
            [parrot, "pipeline", "--config", name, "--plan"],
            cwd=empty,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in IN_TREE
    }
    for name, run in runs.items():
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, f"parrot pipeline --config {name} --plan: {err}"
        assert "report" in out and "step" in out, out
    assert not any(p for p in empty.iterdir()), "planning wrote into the folder it ran from"
