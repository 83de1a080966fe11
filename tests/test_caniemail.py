"""The rendered HTML of both languages checked against the caniemail data (npm
`@jsx-email/doiuse-email`, bench/node/caniemail.js) for Gmail, Outlook (Windows, macOS,
Outlook.com, iOS, Android), Apple Mail (macOS, iOS), Yahoo and Samsung Email: nothing is
unsupported beyond the short list below, each entry with why it is harmless."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.test_quality import _tool, edition  # noqa: F401 - the demo edition, built once

NODE_DIR = ROOT / "bench" / "node"
_HEAD_CSS = {"gmail.mobile-webmail", "outlook.windows", "outlook.outlook-com"}
# feature (as caniemail names it) → the clients where it may be unsupported, and why
ALLOWED: dict[str, set[str]] = {
    # MJML's <style> blocks (its resets, the 480 px column breakpoint) and buzz's dark-mode
    # rules: Gmail's mobile webmail drops every <style>, Outlook for Windows reads no @media
    # and few selectors. The inline styles and MJML's <!--[if mso]> tables lay the email out
    # without them (light colours, desktop columns that shrink to the screen).
    "Type selector": _HEAD_CSS,
    "ID selector": _HEAD_CSS,
    "Class selector": _HEAD_CSS,
    "Descendant combinator": _HEAD_CSS,
    "Chaining selectors": _HEAD_CSS,
    "Attribute selector": _HEAD_CSS,  # [data-ogsc]: only Outlook.com adds it, and reads it
    "@media": _HEAD_CSS,
    # MJML writes a <body>; these clients replace it by a <div>. MJML's wrapper <div> inside
    # carries the page's colour and language again.
    "<body> element": {
        "outlook.macos",
        "outlook.ios",
        "outlook.android",
        "yahoo.ios",
        "yahoo.android",
    },
    # MJML's resets (body word-spacing, image outline, image table border-spacing) and its
    # long-word wrapping in text cells: without them the client's defaults, which look the same.
    "word-spacing": {"outlook.windows", "yahoo.android"},
    "outline": {"outlook.windows"},
    "border-spacing": {"outlook.windows", "outlook.macos"},
    "word-break": {"yahoo.desktop-webmail", "yahoo.ios", "yahoo.android"},
    # Rounded corners (story images, the button): square in Outlook for Windows.
    "border-radius": {"outlook.windows"},
    # MJML's preheader hiding: display:none, opacity:0 and overflow:hidden are backed by
    # max-height:0, max-width:0, font-size:1px and line-height:1px.
    "display:none": {"gmail.mobile-webmail"},
    "opacity": {
        "gmail.mobile-webmail",
        "outlook.windows",
        "yahoo.desktop-webmail",
        "yahoo.ios",
        "yahoo.android",
    },
    "overflow": {"outlook.windows", "outlook.android", "yahoo.android"},
    # buzz's "Read more: <title>" names (and MJML's own on its wrapper): Yahoo drops the
    # attribute, and a screen reader reads the visible "Read more" instead.
    "aria-label attribute": {"yahoo.desktop-webmail", "yahoo.ios", "yahoo.android"},
}
_FINDING = re.compile(r"^`(.+)` is not supported by `(.+)`$")
# caniemail matches some names by substring: `text-transform` could be reported as
# `transform` (CSS transforms). buzz uses no transform: such a finding is that false positive.
_REAL_TRANSFORM = re.compile(r"(?<![\w-])transform\s*:")


def _findings(errors: list[str], page: str) -> set[tuple[str, str]]:
    found = set()
    for error in errors:
        match = _FINDING.match(error)
        assert match is not None, f"an answer of unknown shape: {error}"
        feature, client = match.groups()
        if feature == "transform" and not _REAL_TRANSFORM.search(page):
            continue  # the text-transform false positive (see above)
        found.add((feature, client))
    return found


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_only_known_harmless_features_are_unsupported_anywhere(
    edition: Path,  # noqa: F811
    lang: str,
) -> None:
    """Every feature caniemail reports unsupported by a client is in ALLOWED for that client;
    and the check did run (it reports MJML's own harmless features)."""
    if not (NODE_DIR / "node_modules" / "@jsx-email" / "doiuse-email").exists():
        pytest.fail("@jsx-email/doiuse-email is not installed: `make system-deps` installs it")
    page = edition / f"{lang}.html"
    out = subprocess.run([_tool("node"), str(NODE_DIR / "caniemail.js"), str(page)],
                         capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    result = json.loads(out.stdout)[str(page)]
    found = _findings(result["errors"], page.read_text())
    assert ("<body> element", "outlook.ios") in found
    unexplained = sorted((f, c) for f, c in found if c not in ALLOWED.get(f, set()))
    assert unexplained == []


def test_the_transform_false_positive_is_told_from_a_real_transform() -> None:
    """A `transform` finding is dropped only when the page has no transform of its own."""
    error = ["`transform` is not supported by `outlook.windows`"]
    assert _findings(error, '<p style="text-transform:uppercase">') == set()
    assert _findings(error, '<p style="transform: rotate(2deg)">') == {
        ("transform", "outlook.windows")
    }
