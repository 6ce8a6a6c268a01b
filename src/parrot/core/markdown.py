"""The one markdown table and the one way a value is shown in a cell: ``stats.md``, the eval report
and the experiment's report all go through these.

>>> print(table(["model", "score"], [["a|b", cell(6.5)], ["c", cell({"median": 6.0, "min": 5.0, "max": 7.0, "runs": 3})]]))
| model | score |
|---|---|
| a\\|b | 6.50 |
| c | 6.00 [5.00–7.00] |
"""

from __future__ import annotations


def cell(v, digits: int = 2, *, missing: str = "–", signed: bool = False, share: bool = False) -> str:
    """``v`` as a table shows it: None as ``missing``, a bool as yes or no, a number as a share
    (``share``: a percentage) or signed (``signed``), a float with ``digits`` decimals, a statistic
    over judge runs (``{"median", "min", "max", "runs"}``) as its median, and its range where runs differ.

    >>> cell(None), cell(None, missing="n/a"), cell(True), cell(2 / 3), cell(2 / 3, 1), cell(7)
    ('–', 'n/a', 'yes', '0.67', '0.7', '7')
    >>> cell(-0.7, signed=True), cell(0.25, share=True), cell({"median": 5.0, "min": 5.0, "max": 5.0, "runs": 2})
    ('-0.70', '25%', '5.00')
    """
    if v is None:
        return missing
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, dict):
        median = f"{v['median']:.{digits}f}"
        return (
            f"{median} [{v['min']:.{digits}f}–{v['max']:.{digits}f}]"
            if v["runs"] > 1 and v["max"] != v["min"]
            else median
        )
    if share:
        return f"{v:.0%}"
    if signed:
        return f"{v:+.{digits}f}"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def table(headers: list[str], rows: list[list], *, numbers: bool = False) -> str:
    """A markdown table (no newline at its end); a ``|`` in a cell is escaped and a newline is a
    space. ``numbers``: every column but the first is right-aligned."""

    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    rule = "|" + "|".join(["---"] + ["---:" if numbers else "---"] * (len(headers) - 1)) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])
