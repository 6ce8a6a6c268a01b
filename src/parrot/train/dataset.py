"""The rendered training data: Arrow files in a private, throw-away cache beside the output."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from parrot import ParrotError
from parrot.train.config import TrainConfig


@contextlib.contextmanager
def dataset_cache(cfg: TrainConfig):
    """A private, throw-away directory for the Arrow files of the rendered datasets (never stale)."""
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    path = tempfile.mkdtemp(prefix=f".{out.name}.data-", dir=out.parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def stream_dataset(records, features, cache_dir: str, empty_message: str, counts: dict):
    """``datasets.Dataset`` from ``records()`` (a generator function), written to Arrow in ``cache_dir``.

    Memory stays flat however large the input. A ParrotError raised by the generator (a bad
    record) comes out as itself; an empty result is a ParrotError with ``counts``.
    """
    import uuid

    from datasets import Dataset
    from datasets.exceptions import DatasetGenerationError

    def gen():
        yield from records()

    try:
        # A fresh fingerprint: the cache dir is private and thrown away, and hashing the
        # tokenizer inside the generator would only cost time.
        ds = Dataset.from_generator(gen, features=features, cache_dir=cache_dir, fingerprint=uuid.uuid4().hex)
    except DatasetGenerationError as e:
        if isinstance(e.__cause__, ParrotError):
            raise e.__cause__ from None
        raise
    except ValueError:  # datasets cannot build an empty split
        ds = None
    if ds is None or len(ds) == 0:
        raise ParrotError(f"{empty_message} (counts: {counts})")
    return ds
