"""Golden files: outputs that a change of how the code is organised may not change.

``tests/data/golden/NAME`` holds an output as the code made it before such a change (issue 25's
split of the report), with what differs from run to run masked: the folder it was made in
(``<tmp>``) and the report's date (``<date>``). ``PARROT_GOLDEN=write`` writes them anew, for a
change that means to change the output."""

from __future__ import annotations

import os
import re
from pathlib import Path

GOLDEN = Path(__file__).parent / "data" / "golden"


def masked(text: str, folder) -> str:
    text = text.replace(str(folder), "<tmp>")
    return re.sub(r"on \d{4}-\d\d-\d\d \d\d:\d\d\.", "on <date>.", text)


def assert_golden(name: str, path, folder) -> None:
    """``path`` holds, masked, what ``tests/data/golden/NAME`` holds."""
    text = masked(Path(path).read_text(encoding="utf-8"), folder)
    if os.environ.get("PARROT_GOLDEN") == "write":
        (GOLDEN / name).write_text(text, encoding="utf-8")
    assert text == (GOLDEN / name).read_text(encoding="utf-8"), f"{path} differs from tests/data/golden/{name}"
