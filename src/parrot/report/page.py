"""One report, two renderings: markdown (``report.md``) and a self-contained HTML page (``report.html``).

A section is a heading and a list of blocks; a block is one of ``{"p": text}``, ``{"warn": text}``,
``{"list": [text, ...]}``, ``{"table": {"headers": [...], "rows": [[...], ...]}}`` or
``{"img": "file.png", "alt": text, "notes": [text, ...]}``. Text may hold ``**bold**`` and
```code```. The HTML page inlines every image as a base64 PNG data URI and its CSS; it loads
nothing from anywhere, so it opens from a laptop with no server.

>>> print(markdown("T", [{"title": "A", "blocks": [{"table": {"headers": ["x", "y"], "rows": [["1", "a|b"]]}}]}]))
# T
<BLANKLINE>
## A
<BLANKLINE>
| x | y |
|---|---|
| 1 | a\\|b |
<BLANKLINE>
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from parrot.core.markdown import table


def _md_block(block: dict) -> str:
    if "p" in block:
        return block["p"]
    if "warn" in block:
        return f"> **Warning:** {block['warn']}"
    if "list" in block:
        return "\n".join(f"- {item}" for item in block["list"])
    if "table" in block:
        return table(block["table"]["headers"], block["table"]["rows"])
    if "img" in block:
        text = f"![{block.get('alt', '')}]({block['img']})"
        for note in block.get("notes") or []:
            text += f"\n\n*{note}*"
        return text
    raise ValueError(f"unknown block {sorted(block)}")


def markdown(title: str, sections: list[dict], intro: list[dict] = ()) -> str:
    """The report as markdown: a title, then each section's heading and blocks."""
    parts = [f"# {title}"] + [_md_block(b) for b in intro]
    for s in sections:
        parts.append(f"## {s['title']}")
        parts += [_md_block(b) for b in s["blocks"]]
    return "\n\n".join(parts) + "\n"


_INLINE = re.compile(r"\*\*(.+?)\*\*|`([^`]+)`")


def _inline(text: str) -> str:
    """Escaped text with ``**bold**`` and ```code``` as HTML."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos : m.start()]))
        out.append(f"<strong>{html.escape(m[1])}</strong>" if m[1] is not None else f"<code>{html.escape(m[2])}</code>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _html_block(block: dict, images: Path) -> str:
    if "p" in block:
        return f"<p>{_inline(block['p'])}</p>"
    if "warn" in block:
        return f'<p class="warn"><strong>Warning:</strong> {_inline(block["warn"])}</p>'
    if "list" in block:
        return "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block["list"]) + "</ul>"
    if "table" in block:
        t = block["table"]
        head = "".join(f"<th>{_inline(h)}</th>" for h in t["headers"])
        body = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in row) + "</tr>" for row in t["rows"])
        return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    if "img" in block:
        data = base64.b64encode((images / block["img"]).read_bytes()).decode("ascii")
        notes = "".join(f"<figcaption>{_inline(n)}</figcaption>" for n in block.get("notes") or [])
        alt = html.escape(block.get("alt", ""), quote=True)
        return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">{notes}</figure>'
    raise ValueError(f"unknown block {sorted(block)}")


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 70rem; padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { border-bottom: 2px solid #ccc; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
nav ol { columns: 2; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .55rem; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f2f2f2; }
tbody tr:nth-child(even) { background: #fafafa; }
.scroll { overflow-x: auto; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #555; font-style: italic; }
code { background: #f4f4f4; padding: 0 .2rem; border-radius: 3px; }
.warn { background: #fff4e5; border-left: 4px solid #f0a020; padding: .5rem .8rem; }
"""


def _anchor(title: str) -> str:
    """``MT-Bench++`` -> ``mt-bench-pp`` (not ``mt-bench``, the anchor of MT-Bench)."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower().replace("++", " pp")).strip("-")


def html_page(title: str, sections: list[dict], images: str | Path, intro: list[dict] = ()) -> str:
    """The report as one HTML page: CSS inline, every image a base64 data URI (nothing to fetch)."""
    images = Path(images)
    nav = "".join(f'<li><a href="#{_anchor(s["title"])}">{html.escape(s["title"])}</a></li>' for s in sections)
    body = [f"<h1>{html.escape(title)}</h1>"] + [_html_block(b, images) for b in intro]
    body.append(f"<nav><ol>{nav}</ol></nav>")
    for s in sections:
        body.append(f'<section><h2 id="{_anchor(s["title"])}">{html.escape(s["title"])}</h2>')
        body += [_html_block(b, images) for b in s["blocks"]]
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
