"""Quality gates on the demo's rendered newsletters, with real tools: SpamAssassin scores each
language's sample message, headless Chromium lays each language out at phone and desktop
widths. Both come from Debian packages (`make test` / `.ci/run` install them)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline import screenshots


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make system-deps` (Debian) installs it")
    return path


@pytest.fixture(scope="module")
def edition(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's edition folder, built once for this module."""
    import os
    import shutil as sh
    import sys

    from tests.helpers import ROOT

    folder = tmp_path_factory.mktemp("quality")
    sh.copy(ROOT / "buzz.toml", folder / "buzz.toml")
    sh.copytree(ROOT / "demo", folder / "demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUZZ_")}
    for command in (["fetch"], ["build"]):
        subprocess.run([sys.executable, "-m", "pipeline", *command], cwd=folder, env=env,
                       check=True, capture_output=True)  # fmt: skip
    [built] = (folder / "var" / "out" / "editions").iterdir()
    return built


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_spamassassin_scores_each_sample_message_at_most_1(edition: Path, lang: str) -> None:
    """`spamassassin -t -L` (local tests only) on the sample message: score ≤ 1.0."""
    report = subprocess.run(
        [_tool("spamassassin"), "-t", "-L"],
        input=(edition / f"{lang}.eml").read_bytes(),
        capture_output=True,
        timeout=120,
        check=False,
    ).stdout.decode(errors="replace")
    score = float(re.search(r"X-Spam-Status: \w+, score=(-?[\d.]+)", report).group(1))  # type: ignore[union-attr]
    assert score <= 1.0, report[-2000:]


@pytest.mark.parametrize("lang", ["en", "fr"])
@pytest.mark.parametrize("width", [375, 600])
def test_chromium_lays_out_each_language_without_horizontal_overflow(
    edition: Path, lang: str, width: int
) -> None:
    """In a frame as wide as a phone (375 px) or the email (600 px), nothing is wider."""
    _tool("chromium")
    layout = screenshots.measure(edition, lang, width)
    assert layout.content_width <= layout.frame_width == width, f"{lang} at {width}px: {layout}"
    assert layout.lang == f"{lang}-CA"


def test_preview_saves_whole_screenshots_and_nothing_else(edition: Path) -> None:
    """`buzz preview --screenshots` saves each language at 375 and 600 px, light and dark:
    PNGs exactly as wide as the width and as tall as the whole email (footer included, no
    scrollbar), and adds nothing else to the edition folder."""
    import os
    import struct
    import sys

    _tool("chromium")
    before = {path.name for path in edition.iterdir()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUZZ_")}
    subprocess.run([sys.executable, "-m", "pipeline", "preview", "--screenshots"],
                   cwd=edition.parent.parent.parent.parent, env=env, check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    pictures = {f"{lang}-{width}{dark}.png" for lang in ("en", "fr") for width in (375, 600)
                for dark in ("", "-dark")}  # fmt: skip
    assert {path.name for path in edition.iterdir()} - before == pictures | {"preview.html"}
    for name in sorted(pictures):
        lang, width = name.split("-")[0], int(name.split("-")[1].removesuffix(".png"))
        data = (edition / name).read_bytes()
        assert data.startswith(b"\x89PNG"), name
        size = struct.unpack(">II", data[16:24])  # the IHDR chunk: width, height
        assert size == (width, screenshots.measure(edition, lang, width).height), name
    light, dark = (edition / "en-600.png").read_bytes(), (edition / "en-600-dark.png").read_bytes()
    assert light != dark


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_images_have_alt_and_links_have_text(edition: Path, lang: str) -> None:
    """Accessibility basics: every <img> has an alt (empty for a decorative one); every link
    has words."""
    page = (edition / f"{lang}.html").read_text()
    images = re.findall(r"<img\b[^>]*>", page)
    assert images
    assert all(re.search(r'alt="[^"]*"', image) for image in images)
    links = re.findall(r"<a\b[^>]*>(.*?)</a>", page, flags=re.S)
    texts = [  # a link's name: its words, else the alt text of its image
        re.sub(r"<[^>]+>", "", link).strip() or " ".join(re.findall(r'alt="([^"]+)"', link))
        for link in links
    ]
    assert all(texts), "a link without text"
    assert not any(text.lower() in ("click here", "cliquez ici", "here", "ici") for text in texts)


def test_templates_use_only_tags_and_attributes_mjml_knows(tmp_path: Path) -> None:
    """The official MJML validator (Node's `mjml`, bench/node) finds nothing to say about
    either language's MJML (mjml-python itself validates nothing)."""
    import json

    from pipeline.render import render
    from tests.helpers import ROOT
    from tests.test_render import SENDER, _edition

    node_dir = ROOT / "bench" / "node"
    if not (node_dir / "node_modules" / "mjml").exists():
        pytest.fail("Node's mjml is not installed: `make system-deps` installs it")
    files = []
    for lang, name in (("en", "IT Buzz"), ("fr", "Le buzz IT")):
        source = tmp_path / f"{lang}.mjml"
        source.write_text(render(_edition(), lang, name, SENDER, "it-buzz").mjml_source)
        files.append(str(source))
    out = subprocess.run([_tool("node"), str(node_dir / "compile.js"), "1", *files],
                         capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    results = json.loads(out.stdout)
    assert {file: result["errors"] for file, result in results.items()} == {f: [] for f in files}
