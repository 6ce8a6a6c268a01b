"""The README and docs/ stay true: every `parrot ...` command in their code blocks parses, and
every YAML example that names its command (``# X.yaml — parrot CMD --config X.yaml ...``) builds
that command's config. Nothing runs; a renamed flag, a removed key or a wrong value in the docs
fails here with the file and line of the example."""

import re
import shlex
from pathlib import Path

import pytest

from parrot import ParrotError
from parrot.cli import parse_args
from parrot.core.cmdline import config_from_args

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```[a-z]*\n(.*?)```", re.S)
COMMAND = re.compile(r"^(?:\$ )?(?:[A-Z_]+=\S+ )*(?:\.venv/bin/)?parrot (?P<args>.*)$")
YAML_HEAD = re.compile(r"^# (?P<file>\S+\.yaml)\s+[—-]+\s+parrot (?P<args>.*)$")


def examples():
    """(where, kind, argv or YAML text) for each command line and named YAML file in the docs."""
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for block in BLOCK.finditer(text):
            first = text.count("\n", 0, block.start(1)) + 1
            lines = block.group(1).splitlines()
            head = YAML_HEAD.match(lines[0]) if lines else None
            where = f"{path.relative_to(ROOT)}:{first}"
            if head:
                yield where, "yaml", (head["file"], head["args"], "\n".join(lines[1:]))
                continue
            joined, start = "", first
            for i, line in enumerate(lines):
                if not joined:
                    start = first + i
                joined += line[:-1] + " " if line.endswith("\\") else line
                if line.endswith("\\"):
                    continue
                command = COMMAND.match(re.sub(r"\s+#.*$", "", joined.strip()))
                if command and "..." not in command["args"]:  # "..." marks an elided example
                    yield f"{path.relative_to(ROOT)}:{start}", "command", command["args"]
                joined = ""


def build(argv: list[str]):
    """What `parrot` builds from ``argv`` before it runs anything."""
    try:
        args = parse_args(argv)
    except SystemExit:
        raise AssertionError(f"argparse refused {argv}") from None
    cfg_cls = args._command.config
    return cfg_cls, config_from_args(cfg_cls, args, extra_field=args._command.unknown_keys)


EXAMPLES = list(examples())


def test_the_docs_have_examples_to_check():
    kinds = [kind for _, kind, _ in EXAMPLES]
    assert kinds.count("command") >= 40 and kinds.count("yaml") >= 2


@pytest.mark.parametrize("where,kind,example", EXAMPLES, ids=[w for w, _, _ in EXAMPLES])
def test_documented_example_parses(where, kind, example, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if kind == "yaml":
        name, args, body = example
        (tmp_path / name).write_text(body + "\n")
        example = args
    argv = shlex.split(example)
    if "--help" in argv:
        return
    try:
        cfg_cls, cfg = build(argv)
    except (ParrotError, AssertionError) as e:
        pytest.fail(f"{where}: `parrot {example}` does not parse: {e} {capsys.readouterr().err.strip()}")
    assert type(cfg) is cfg_cls
