"""What this package's stages wrote, read back: a synthesize run's manifest (:func:`run_info`), a
session's ``meta`` (:func:`session_info`); a filter run's is :func:`parrot.filter.stage.filter_run`. The stages
that measure them (stats' simulator measures, the report) read them through these alone, so that a
field renamed where it is written fails the tests of these readers (tests/test_readers.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from parrot.core.manifest import read_manifest

#: The manifest's count of the sessions that ended with no complete turn (not written), by reason.
FAILED = "sessions_failed:"


@dataclass(frozen=True)
class SynthesisRun:
    """A synthesize run's settings and its unwritten sessions, from its manifest."""

    max_turns: int | None  # answers per session at most
    topic_seeded: bool  # sessions start from topics: the simulator wrote question 1
    asker_spec: str | None
    asker_mode: str | None  # trained or prompted
    unwritten: dict[str, int]  # sessions with no complete turn, by end reason


def run_info(path: str | Path) -> SynthesisRun:
    """What the manifest beside the synthesize output ``path`` says (nothing known without one)."""
    manifest = read_manifest(path) or {}
    config, counts = manifest.get("config") or {}, manifest.get("counts") or {}
    return SynthesisRun(
        max_turns=config.get("max_turns"),
        topic_seeded=bool(config.get("topics") and not config.get("seeds")),
        asker_spec=(config.get("asker") or {}).get("spec"),
        asker_mode=config.get("asker_mode"),
        unwritten={k.removeprefix(FAILED): v for k, v in counts.items() if k.startswith(FAILED) and v},
    )


@dataclass(frozen=True)
class SessionInfo:
    """What a synthesized session's ``meta`` says of how it went."""

    end_reason: str  # stop_marker, max_turns, a degenerate question's reason, a failed call; or unknown
    seed_kind: str | None  # question or topic
    asker: dict | None  # {"spec", "mode"} of the simulator that asked


def session_info(record: dict) -> SessionInfo:
    meta = record.get("meta") or {}
    asker = meta.get("asker")
    return SessionInfo(
        end_reason=meta.get("end_reason") or "unknown",
        seed_kind=(meta.get("seed") or {}).get("kind"),
        asker={"spec": asker.get("spec"), "mode": asker.get("mode")} if isinstance(asker, dict) else None,
    )
