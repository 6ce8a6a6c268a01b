"""The examples in the package's docstrings run and say what they show. Only those that need a
model or a server are marked ``+SKIP``, where they stand, with the reason beside them."""

import doctest
import importlib
import pkgutil
import subprocess
import sys

import pytest

import parrot

MODULES = sorted(m.name for m in pkgutil.walk_packages(parrot.__path__, "parrot.") if m.name != "parrot.__main__")


@pytest.mark.parametrize("name", ["parrot", *MODULES])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"


def test_every_module_imports_without_vllm():
    """vLLM (an optional extra, for GPU nodes) is imported only when its backend starts: a fresh
    interpreter imports every module without it."""
    code = f"import importlib, sys\nfor name in {MODULES!r}:\n    importlib.import_module(name)\nprint('vllm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
