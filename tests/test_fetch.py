"""Tests for pipeline.fetch and the gather stage against hostile feeds on a real local server.

Each bad input ends in a clear, recorded reason, without a crash, and the good feed fetched
beside it is stored all the same.
"""

from __future__ import annotations

import gzip
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from pipeline.config import FeedsSection
from pipeline.errors import FeedError
from pipeline.feeds import gather, parse
from pipeline.fetch import FeedLimits, Fetched, Request, fetch_all, to_utf8
from pipeline.store import Store
from tests.feedserver import Route, serve
from tests.helpers import ROOT, archive

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
GOOD = (ROOT / "demo" / "feeds" / "it-buzz-en.xml").read_bytes()
RSS = "application/rss+xml; charset=UTF-8"
LIMITS = FeedLimits(timeout_s=2, max_bytes=1_000_000, user_agent="buzz/test")


def _rss(title: str = "Café crème", encoding: str = "UTF-8") -> str:
    return (
        f'<?xml version="1.0" encoding="{encoding}"?><rss version="2.0"><channel><title>t</title>'
        f"<link>https://blog.example.com/</link><item><title>{title}</title>"
        "<link>https://blog.example.com/a/</link><guid>g1</guid>"
        "<pubDate>Tue, 24 Nov 2026 14:30:00 +0000</pubDate></item></channel></rss>"
    )


def _gather_beside_a_good_feed(bad: Route, tmp_path: Path) -> tuple[str | None, Store]:
    """Fetch `bad` and the good demo feed together; return the bad feed's recorded error."""
    store = Store(tmp_path / "state.sqlite")
    routes = {"/good": Route(body=GOOD, headers={"Content-Type": RSS}), "/bad": bad}
    with serve(routes) as server:
        feeds = [(server.url("/good"), "en"), (server.url("/bad"), "en")]
        gather(feeds, LIMITS, FeedsSection(first_run_window_days=36500), store, NOW)
    good, broken = (store.feed_state(url) for url, _ in feeds)
    assert good is not None
    assert good.ok, good.last_error
    assert len(archive(store, "en")) >= 14
    assert broken is not None
    return broken.last_error, store


def _dripping(body: bytes, pause_s: float) -> Callable[[BaseHTTPRequestHandler], None]:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", RSS)
        handler.end_headers()
        try:
            for byte in body:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(pause_s)
        except OSError:
            pass

    return respond


def _silent(handler: BaseHTTPRequestHandler) -> None:
    time.sleep(30)


def _redirect_to_self(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(302)
    handler.send_header("Location", handler.path)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        pytest.param(Route(status=404), "HTTP 404", id="404"),
        pytest.param(Route(status=500), "HTTP 500", id="500"),
        pytest.param(Route(body=b""), "empty body", id="empty-body"),
        pytest.param(
            Route(
                body=b"<html><body><h1>Maintenance</h1></body></html>",
                headers={"Content-Type": "text/html"},
            ),
            "not",
            id="html-page-200",
        ),
        pytest.param(Route(respond=_redirect_to_self), "more than 5 redirects", id="redirect-loop"),
        pytest.param(Route(body=b"x" * 1_500_000), "larger than feeds.max_bytes", id="too-big"),
        pytest.param(Route(respond=_dripping(GOOD, 1.0)), "feeds.timeout_s", id="drip"),
        pytest.param(Route(respond=_silent), "feeds.timeout_s", id="never-answers"),
        pytest.param(
            Route(
                body=gzip.compress(b" " * 50_000_000),
                headers={"Content-Encoding": "gzip", "Content-Type": RSS},
            ),
            "larger than feeds.max_bytes",
            id="gzip-bomb",
        ),
        pytest.param(
            Route(
                body=b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                b"<rss><channel><item><title>&x;</title></item></channel></rss>"
            ),
            "declares entities",
            id="external-entity",
        ),
        pytest.param(
            Route(
                body=b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
                b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><rss>&b;</rss>'
            ),
            "declares entities",
            id="entity-expansion",
        ),
    ],
)
def test_bad_feed_is_recorded_with_its_reason_and_the_good_one_is_kept(
    route: Route, reason: str, tmp_path: Path
) -> None:
    """Every hostile answer becomes a recorded, readable reason; nothing else is lost."""
    started = time.monotonic()
    error, _ = _gather_beside_a_good_feed(route, tmp_path)
    assert error is not None
    assert reason in error
    assert time.monotonic() - started < LIMITS.timeout_s + 3


def test_server_errors_are_retried_then_reported(tmp_path: Path) -> None:
    """A 5xx is retried (3 attempts in all); a 404 is not."""
    limits = FeedLimits(timeout_s=15, max_bytes=1000, user_agent="t")
    with serve({"/five": Route(status=503), "/four": Route(status=404)}) as server:
        results = fetch_all([Request(server.url("/five")), Request(server.url("/four"))], limits)
        paths = [path for path, _ in server.requests]
    assert [str(r) for r in results] == ["HTTP 503", "HTTP 404"]
    assert paths.count("/five") == 3
    assert paths.count("/four") == 1


def test_truncated_xml_keeps_the_entries_it_has_with_a_warning(tmp_path: Path) -> None:
    """A feed cut off mid-item is damaged but usable: its complete entries are kept."""
    truncated = GOOD[: GOOD.index(b"<item>", GOOD.index(b"<item>") + 10) + 200]
    posts, warning = parse(Fetched(truncated, RSS), "u", "en", NOW)
    assert len(posts) >= 1
    assert warning is not None
    assert "damaged feed" in warning


def test_gzip_bomb_never_holds_more_than_the_cap(tmp_path: Path) -> None:
    """Decompression stops at the cap: peak memory stays near the cap, not the bomb's size."""
    bomb = gzip.compress(b"\0" * 200_000_000)
    limits = FeedLimits(timeout_s=10, max_bytes=2_000_000, user_agent="t")
    route = Route(body=bomb, headers={"Content-Encoding": "gzip"})
    with serve({"/bomb": route}) as server:
        tracemalloc.start()
        [result] = fetch_all([Request(server.url("/bomb"))], limits)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert isinstance(result, FeedError)
    assert peak < 4 * limits.max_bytes


def test_gzip_feed_is_decompressed() -> None:
    """A well-formed gzip-encoded feed reads normally."""
    route = Route(
        body=gzip.compress(GOOD), headers={"Content-Encoding": "gzip", "Content-Type": RSS}
    )
    with serve({"/feed": route}) as server:
        [result] = fetch_all([Request(server.url("/feed"))], LIMITS)
    assert isinstance(result, Fetched)
    assert result.body == to_utf8(GOOD, RSS)[0]
    assert b"Live Chat at the Service Desk" in result.body


@pytest.mark.parametrize(
    ("body", "content_type", "warned"),
    [
        pytest.param(_rss().encode("utf-8"), "application/rss+xml; charset=ISO-8859-1", True,
                     id="utf8-labelled-latin1"),
        pytest.param(_rss(encoding="ISO-8859-1").encode("utf-8"), "application/xml", True,
                     id="utf8-declared-latin1-in-xml"),
        pytest.param(_rss(encoding="ISO-8859-1").encode("latin-1"), "application/xml", False,
                     id="real-latin1"),
        pytest.param(_rss().encode("latin-1"), "application/xml", True, id="latin1-no-charset"),
        pytest.param(_rss(encoding="UTF-16").encode("utf-16"), "application/xml", False,
                     id="utf16"),
    ],
)  # fmt: skip
def test_wrong_or_missing_charsets_read_correctly(
    body: bytes, content_type: str, warned: bool
) -> None:
    """Whatever the labels say, "Café crème" comes out as "Café crème"."""
    utf8, warning = to_utf8(body, content_type)
    [post], _ = parse(Fetched(utf8, "application/xml; charset=utf-8"), "u", "en", NOW)
    assert post.title == "Café crème"
    assert (warning is not None) == warned


def test_scripts_in_content_never_reach_the_store(tmp_path: Path) -> None:
    """Active content in a feed is stripped before the post is stored."""
    item = (
        "<item><title>t</title><link>https://blog.example.com/x/</link><guid>x</guid>"
        "<description><![CDATA[<p onmouseover='steal()'>Hi<script>steal()</script>"
        '<a href="javascript:steal()">x</a><iframe src="https://evil.example/"></iframe></p>]]>'
        "</description></item>"
    )
    body = _rss().replace("</channel>", item + "</channel>").encode()
    error, store = _gather_beside_a_good_feed(
        Route(body=body, headers={"Content-Type": RSS}), tmp_path
    )
    assert error is None
    [post] = [p for p in archive(store, "en") if p.url == "https://blog.example.com/x/"]
    for bad in ("steal", "script", "iframe", "onmouseover", "javascript"):
        assert bad not in post.content_html


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(
            '<?xml version="1.0"?><!DOCTYPE rss PUBLIC'
            ' "-//Netscape Communications//DTD RSS 0.91//EN"'
            ' "http://my.netscape.com/publish/formats/rss-0.91.dtd"><rss version="0.91"><channel>'
            "<title>t</title><link>https://blog.example.com/</link><description>d</description>"
            "<language>en</language><item><title>T</title><link>https://blog.example.com/a/</link>"
            "</item></channel></rss>", id="rss-0.91"),
        pytest.param(
            '<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
            ' xmlns="http://purl.org/rss/1.0/"><channel rdf:about="https://blog.example.com/">'
            "<title>t</title><link>https://blog.example.com/</link></channel>"
            '<item rdf:about="https://blog.example.com/a/"><title>T</title>'
            "<link>https://blog.example.com/a/</link></item></rdf:RDF>", id="rss-1.0"),
        pytest.param(
            '<?xml version="1.0"?><feed version="0.3" xmlns="http://purl.org/atom/ns#">'
            "<title>t</title><entry><title>T</title>"
            '<link rel="alternate" type="text/html" href="https://blog.example.com/a/"/>'
            "<id>tag:a</id><issued>2026-11-24T14:30:00Z</issued></entry></feed>", id="atom-0.3"),
        pytest.param(
            '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
            "<entry><title>T</title><link href=\"https://blog.example.com/a/\"/><id>tag:a</id>"
            "<updated>2026-11-24T14:30:00Z</updated><summary>S</summary></entry></feed>",
            id="atom-1.0"),
    ],
)  # fmt: skip
def test_every_feed_format_parses(document: str) -> None:
    """RSS 0.91, RSS 1.0, Atom 0.3 and Atom 1.0 give the same post."""
    [post], warning = parse(Fetched(document.encode(), "application/xml"), "u", "en", NOW)
    assert warning is None
    assert post.title == "T"
    assert post.url == "https://blog.example.com/a/"
