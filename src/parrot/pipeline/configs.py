"""The pipeline configs shipped inside the package (``parrot/configs/*.yaml``), as torchtune ships its
recipes' configs: ``parrot pipeline --config demo`` runs one by name from any directory, with or
without a clone; ``--config FILE`` still reads any file; ``--list-configs`` names them, each with
the first line of its header comment.

>>> sorted(shipped())[:1], config_file("demo").name
(['demo'], 'demo.yaml')
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from parrot import ParrotError


def shipped() -> dict[str, Path]:
    """``{name: path}`` of every config the package ships, by name (its file name without ``.yaml``)."""
    folder = Path(str(resources.files("parrot").joinpath("configs")))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def description(path: Path) -> str:
    """The first line of a config's header comment: what it is for.

    >>> description(shipped()["paper"])
    "The paper's setting (Sun et al., ACL 2024): LLaMA-2-13B, Parrot-40K, ChatGPT, a GPT-4 judge."
    """
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.removeprefix("#").strip()
        if not line.startswith("#"):
            break
        if text:
            return text.removesuffix(":")
    return "(no header comment)"


def config_file(value: str) -> Path:
    """The file ``--config VALUE`` names: a shipped config by name (``demo``), else a file (``my.yaml``).
    Neither is an error that lists the names."""
    configs = shipped()
    if value in configs:
        return configs[value]
    path = Path(value)
    if path.is_file():
        return path
    raise ParrotError(
        f"--config {value}: no such file, and not the name of a shipped config "
        f"({', '.join(configs)}; `parrot pipeline --list-configs` says what each is for)"
    )


def configs_table() -> str:
    """What ``parrot pipeline --list-configs`` prints: each shipped config's name and description."""
    configs = shipped()
    width = max(map(len, configs), default=0)
    lines = [f"{name.ljust(width)}  {description(path)}" for name, path in configs.items()]
    folder = next(iter(configs.values())).parent if configs else "?"
    return "\n".join(
        [
            *lines,
            "",
            "Run one by name: parrot pipeline --config NAME (--plan first shows its steps). To change one, copy",
            f"its file from {folder} and pass the copy: parrot pipeline --config FILE.",
        ]
    )
