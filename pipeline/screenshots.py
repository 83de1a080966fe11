"""Look at a rendered edition the way a reader's screen shows it: headless Chromium (Debian's
`chromium`), the email as wide as a phone (375 px) or as the email (600 px), in light and in
dark mode (`prefers-color-scheme: dark`, as Apple Mail and most phones ask for it).

`buzz preview --screenshots` saves pictures for a person; the test suite measures the layout
and the colours. Chromium's profile and the measuring pages live in a temporary folder that is
deleted afterwards: the edition folder receives nothing but the pictures.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import UsageError

WIDTHS = (375, 600)
Scheme = Literal["light", "dark", "outlook-dark"]
SCHEMES: tuple[Scheme, ...] = ("light", "dark")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--allow-file-access-from-files", "--hide-scrollbars", "--virtual-time-budget=3000",
)  # fmt: skip
MAX_HEIGHT = 16_000  # px: Chromium's own limit for one picture is about 16,384

# Run in a page holding the email in a frame of the wanted width: the layout's sizes, and
# each visible text (and alt text) with its colour and the first opaque background under it.
# "outlook-dark" marks the body as Outlook.com's dark mode does (data-ogsc, data-ogsb).
_PROBE = """<script>onload=function(){
var d=document.getElementById('f').contentDocument, e=d.documentElement, texts=[];
if (OUTLOOK) { d.body.setAttribute('data-ogsc',''); d.body.setAttribute('data-ogsb',''); }
function bg(n){for(;n&&n.nodeType==1;n=n.parentNode){
 var c=getComputedStyle(n).backgroundColor;if(c&&c!='transparent'&&!/, 0\\)$/.test(c))return c;}
 return getComputedStyle(d.body).backgroundColor;}
function visible(n){var r=n.getBoundingClientRect();return r.width>1&&r.height>1&&
 getComputedStyle(n).visibility!='hidden'&&getComputedStyle(n).opacity!='0';}
var w=d.createTreeWalker(d.body,NodeFilter.SHOW_TEXT),t;
while((t=w.nextNode())){var p=t.parentNode,s=t.data.trim();if(!s||!visible(p))continue;
 var c=getComputedStyle(p);texts.push({text:s,color:c.color,background:bg(p),
 size:parseFloat(c.fontSize),weight:parseInt(c.fontWeight),tag:p.tagName});}
d.querySelectorAll('img[alt]').forEach(function(i){if(!i.alt)return;var c=getComputedStyle(i);
 texts.push({text:i.alt,color:c.color,background:bg(i.parentNode),size:parseFloat(c.fontSize),
 weight:parseInt(c.fontWeight),tag:'IMG'});});
document.getElementById('out').textContent=JSON.stringify({width:e.scrollWidth,
 frame:e.clientWidth,height:e.scrollHeight,lang:e.lang,texts:texts});};</script>"""


@dataclass(frozen=True, slots=True)
class Layout:
    """What Chromium laid out: the content's width and height, the frame's width, the page's
    `lang`, and every visible text with its colours (`rgb(…)` strings) and font size in px."""

    content_width: int
    frame_width: int
    height: int
    lang: str
    texts: list[dict[str, Any]]


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        raise UsageError("chromium is not installed (Debian: apt-get install chromium)")
    return path


def _run(scratch: Path, scheme: Scheme, *arguments: str) -> str:
    """Chromium once, its profile in `scratch`; dark mode for the dark schemes."""
    command = [_chromium(), *FLAGS, f"--user-data-dir={scratch / 'profile'}"]
    if scheme == "dark":
        command.append("--force-dark-mode")
    done = subprocess.run(  # noqa: S603 - our own arguments: the browser, our files
        [*command, *arguments], capture_output=True, text=True, timeout=120, check=False
    )
    return done.stdout


def _layout(scratch: Path, page: Path, width: int, scheme: Scheme) -> Layout:
    probe = _PROBE.replace("OUTLOOK", "true" if scheme == "outlook-dark" else "false")
    frame = scratch / f"frame-{width}-{scheme}.html"
    frame.write_text(
        '<!doctype html><html><head><title>frame</title></head><body style="margin:0">'
        f'<iframe id="f" src="{page.resolve().as_uri()}" '
        f'style="width:{width}px;height:900px;border:0"></iframe><pre id="out"></pre>'
        f"{probe}</body></html>",
        encoding="utf-8",
    )
    dom = _run(scratch, scheme, "--window-size=800,900", "--dump-dom", frame.as_uri())
    found = re.search(r'<pre id="out">(.+?)</pre>', dom, flags=re.S)
    if found is None:
        raise UsageError(f"chromium did not lay out {page.name}: {dom[:200]!r}")
    seen = json.loads(html.unescape(found[1]))
    return Layout(seen["width"], seen["frame"], seen["height"], seen["lang"], seen["texts"])


def measure(folder: Path, lang: str, width: int, scheme: Scheme = "light") -> Layout:
    """How `lang`.html of the edition `folder` lays out in a frame `width` px wide."""
    with tempfile.TemporaryDirectory(prefix="buzz-chromium-") as scratch:
        return _layout(Path(scratch), folder / f"{lang}.html", width, scheme)


def save(folder: Path, langs: tuple[str, ...]) -> list[Path]:
    """`<lang>-<width>.png` and `<lang>-<width>-dark.png` in the edition folder: the whole
    email, footer included, at each width of `WIDTHS`, without a scrollbar."""
    pictures = []
    with tempfile.TemporaryDirectory(prefix="buzz-chromium-") as scratch:
        for lang in langs:
            page = folder / f"{lang}.html"
            for width in WIDTHS:
                height = min(_layout(Path(scratch), page, width, "light").height, MAX_HEIGHT)
                for scheme in SCHEMES:
                    suffix = "" if scheme == "light" else f"-{scheme}"
                    picture = folder / f"{lang}-{width}{suffix}.png"
                    _run(Path(scratch), scheme, f"--window-size={width},{height}",
                         f"--screenshot={picture}", page.resolve().as_uri())  # fmt: skip
                    if picture.exists():
                        pictures.append(picture)
    return pictures
