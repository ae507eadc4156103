"""A one-file HTML page of duplicate groups: counts, then the largest groups as thumbnails.

Images are inlined as data URIs (PNG/JPEG bytes as stored; other formats re-encoded as
PNG), so the page can be opened or attached anywhere without the run folder.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

_MIME = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"),
         (b"RIFF", "image/webp"))


@dataclass(frozen=True)
class Member:
    sample_id: str
    caption: str  # e.g. "test · kept" or "d=0.004"
    image: str  # data URI
    kept: bool = False


@dataclass(frozen=True)
class Section:
    title: str
    note: str
    groups: Sequence[Sequence[Member]] = field(default_factory=list)
    total_groups: int = 0


def image_uri(data: bytes | None, path: str | None = None) -> str:
    """A data URI of stored image bytes (or of the file at ``path`` when there are none)."""
    if data is None:
        data = Path(path).read_bytes() if path else b""
    mime = next((m for magic, m in _MIME if data.startswith(magic)), None)
    if mime is None:
        from PIL import Image

        buf = io.BytesIO()
        with Image.open(io.BytesIO(data)) as im:
            im.convert("RGB").save(buf, format="PNG")
        data, mime = buf.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def render_report(title: str, summary: Mapping[str, object], sections: Sequence[Section]) -> str:
    """The HTML page: a summary table, then each section's groups as rows of thumbnails."""
    esc = html.escape
    rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in summary.items())
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
        "table.sum th{text-align:left;padding-right:1em;font-weight:600}"
        ".group{display:flex;flex-wrap:wrap;gap:.5em;margin:.4em 0 1em;padding:.4em;border:1px solid #ddd}"
        ".m{width:104px;font-size:11px;word-break:break-all}.m img{width:96px;height:96px;"
        "image-rendering:pixelated;object-fit:contain;border:3px solid #eee}.m.kept img{border-color:#4C72B0}"
        "</style></head><body>",
        f"<h1>{esc(title)}</h1><table class='sum'>{rows}</table>",
    ]
    for section in sections:
        shown = len(section.groups)
        parts.append(f"<h2>{esc(section.title)}</h2><p>{esc(section.note)}"
                     + (f" Showing {shown} of {section.total_groups} groups." if section.total_groups else
                        " None found.") + "</p>")
        for group in section.groups:
            cells = "".join(
                f"<div class='m{' kept' if m.kept else ''}'><img src='{m.image}' alt='{esc(m.sample_id)}'>"
                f"<div>{esc(m.sample_id)}</div><div>{esc(m.caption)}</div></div>" for m in group)
            parts.append(f"<div class='group'>{cells}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
