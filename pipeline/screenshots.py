"""Look at a rendered edition the way a reader's screen shows it: headless Chromium (Debian's
`chromium`), the email in a frame as wide as a phone (375 px) or the email (600 px).

`buzz preview --screenshots` saves pictures for a person; the test suite measures the layout.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from pipeline.errors import UsageError

WIDTHS = (375, 600)
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--allow-file-access-from-files", "--virtual-time-budget=3000",
)  # fmt: skip
_PROBE = (
    "<script>onload=function(){var d=document.getElementById('f').contentDocument;"
    "document.title='W'+d.documentElement.scrollWidth+'x'+d.documentElement.clientWidth"
    "+'L'+d.documentElement.lang;};</script>"
)


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        raise UsageError("chromium is not installed (Debian: apt-get install chromium)")
    return path


def _frame(folder: Path, lang: str, width: int, script: str = "") -> Path:
    page = folder / f".frame-{lang}-{width}.html"
    page.write_text(
        '<!doctype html><html><head><title>frame</title></head><body style="margin:0">'
        f'<iframe id="f" src="{lang}.html" style="width:{width}px;height:2400px;border:0">'
        f"</iframe>{script}</body></html>",
        encoding="utf-8",
    )
    return page


def _run(folder: Path, *arguments: str) -> str:
    profile = folder / ".chromium"
    command = [_chromium(), *FLAGS, f"--user-data-dir={profile}", *arguments]
    done = subprocess.run(  # noqa: S603 - our own arguments: the browser, our files
        command, capture_output=True, text=True, timeout=120, check=False
    )
    return done.stdout


def save(folder: Path, langs: tuple[str, ...]) -> list[Path]:
    """`<lang>-375.png` and `<lang>-600.png` in the edition folder."""
    pictures = []
    for lang in langs:
        for width in WIDTHS:
            picture = folder / f"{lang}-{width}.png"
            frame = _frame(folder, lang, width)
            _run(folder, f"--window-size={width + 40},2400", f"--screenshot={picture}",
                 frame.as_uri())  # fmt: skip
            if picture.exists():
                pictures.append(picture)
    return pictures


def measure(folder: Path, lang: str, width: int) -> tuple[int, int, str]:
    """(content width, frame width, the page's `lang`) of `lang`.html in a `width` frame."""
    dom = _run(folder, "--window-size=800,900", "--dump-dom",
               _frame(folder, lang, width, _PROBE).as_uri())  # fmt: skip
    found = re.search(r"<title>W(\d+)x(\d+)L([\w-]*)</title>", dom)
    if found is None:
        raise UsageError(f"chromium did not lay out {lang}.html: {dom[:200]!r}")
    return int(found[1]), int(found[2]), found[3]
