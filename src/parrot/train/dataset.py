"""The rendered training data: Arrow files in a private, throw-away cache beside the output."""

from __future__ import annotations

import contextlib
import glob
import logging
import shutil
from pathlib import Path

from parrot import ParrotError
from parrot.core.outputs import process_rank
from parrot.train.config import TrainConfig

log = logging.getLogger("parrot.train")


def cache_path(output: str | Path, rank: int) -> Path:
    """The dataset cache of process ``rank`` for ``output``: ``.OUT.data-RANK`` beside it."""
    out = Path(output)
    return out.with_name(f".{out.name}.data-{rank}")


@contextlib.contextmanager
def dataset_cache(cfg: TrainConfig):
    """A private, throw-away directory for the Arrow files of the rendered datasets, removed when
    the block ends.

    A run killed before it could remove it leaves it (as big as the rendered data), so its name is
    fixed by the output and the process's rank: the next run on the output, which holds the
    output's lock, empties it as it starts. Each process handles its own, so ranks started together
    never touch another's; rank 0 also removes the caches of ranks that no longer run and those of
    older Parrots (``.OUT.data-XXXXXXXX``).
    """
    rank, world = process_rank()
    path = cache_path(cfg.output, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        remove_stale_caches(cfg.output, keep={cache_path(cfg.output, r) for r in range(1, world)})
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    try:
        yield str(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_caches(output: str | Path, keep: set[Path]) -> None:
    """Remove the dataset caches of ``output`` left by runs that were killed, except ``keep``."""
    out = Path(output)
    for path in sorted(out.parent.glob(f".{glob.escape(out.name)}.data-*")):
        if path not in keep and path.is_dir():
            log.info("%s: the dataset cache of a run that was stopped: removed", path)
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
