"""Shared test setup: offline, CPU only; fixtures live in tests/fixtures/ by topic."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PARROT_NO_PROGRESS", "1")

pytest_plugins = ["fixtures.models", "fixtures.servers"]
