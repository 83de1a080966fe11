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

import feedparser
import pytest

from pipeline.config import FeedsSection
from pipeline.errors import FeedError
from pipeline.feeds import gather, parse
from pipeline.fetch import FeedLimits, Fetched, Request, fetch_all, to_utf8
from pipeline.store import Store
from pipeline.text import shorten
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


# Character sets and entity declarations (issue 11) ---------------------------------------------

RU = "Новости из мира технологий: служба поддержки запускает онлайн-чат для всех сотрудников."
JA = "日本語のニュース記事です。新しいサービスデスクのチャット機能が今週から利用できます。"
FR = "Café crème : la sécurité du réseau évolue, êtes-vous prêts à déployer la mise à jour ?"


def _doc(title: str, encoding: str | None) -> str:
    declaration = f' encoding="{encoding}"' if encoding else ""
    return _rss(title).replace(' encoding="UTF-8"', declaration)


def _no_bom(text: str, codec: str) -> bytes:
    return text.encode(codec)  # the -le / -be codecs write no byte-order mark


ENCODINGS = [  # (body, Content-Type, title, whether feedparser itself reads it right)
    pytest.param(_no_bom(_doc(FR, "UTF-16"), "utf-16-le"), "application/xml", FR, True,
                 id="utf16le-no-bom"),
    pytest.param(_no_bom(_doc(FR, "UTF-16"), "utf-16-be"), "application/xml", FR, True,
                 id="utf16be-no-bom"),
    pytest.param(_no_bom(_doc(JA, "UTF-32"), "utf-32-le"), "application/xml", JA, True,
                 id="utf32le-no-bom"),
    pytest.param(_no_bom(_doc(JA, "UTF-32"), "utf-32-be"), "application/xml", JA, True,
                 id="utf32be-no-bom"),
    pytest.param(_no_bom(_doc(RU, None).split("?>", 1)[1], "utf-16-le"), "application/xml", RU,
                 False, id="utf16le-no-bom-no-declaration"),
    pytest.param(_doc(JA, "EUC-JP").encode("euc-jp"), "application/xml", JA, True,
                 id="euc-jp-declared-in-xml"),
    pytest.param(_doc(RU, "KOI8-R").encode("koi8-r"), "application/rss+xml", RU, True,
                 id="koi8-r-declared-in-xml"),
    pytest.param(_doc(RU, None).encode("koi8-r"), "application/xml", RU, False,
                 id="koi8-r-undeclared"),
    pytest.param(_doc(JA, None).encode("euc-jp"), "application/xml", JA, False,
                 id="euc-jp-undeclared"),
    pytest.param(_doc(RU, "windows-1251").encode("koi8-r"), "application/xml; charset=KOI8-R",
                 RU, True, id="http-charset-right-xml-wrong"),
    pytest.param(_doc(RU, "KOI8-R").encode("koi8-r"), "application/xml; charset=windows-1251",
                 RU, False, id="http-charset-wrong-xml-right"),
    pytest.param(_doc(FR, "UTF-8").encode("utf-8"), "application/xml; charset=UTF-16", FR,
                 False, id="utf8-labelled-utf16"),
    pytest.param(_doc(FR, "UTF-8").encode("utf-8"), "text/xml", FR, True,
                 id="utf8-as-text-xml-without-charset"),
    pytest.param(_doc(FR, "ISO-8859-1").encode("utf-8"), "text/xml; charset=ISO-8859-1", FR,
                 True, id="utf8-labelled-latin1"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "content_type", "title", "feedparser_reads_it"), ENCODINGS)
def test_every_encoding_reads_at_least_as_well_as_feedparser_on_the_original_bytes(
    body: bytes, content_type: str, title: str, feedparser_reads_it: bool
) -> None:
    """buzz's title is right in every case; feedparser, given the same bytes and header, gets
    the same title wherever it gets it right at all."""
    utf8, _ = to_utf8(body, content_type)
    [post], _ = parse(Fetched(utf8, "application/xml; charset=utf-8"), "u", "en", NOW)
    theirs = feedparser.parse(body, response_headers={"content-type": content_type})
    their_title = theirs.entries[0].title if theirs.entries else None
    assert post.title == shorten(title, 200)
    assert (their_title == title) is feedparser_reads_it


ENTITY = '<!DOCTYPE rss [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
ROOT_WITH_ENTITY = "<rss><channel><item><title>&x;</title></item></channel></rss>"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(f"<!-- <a> -->{ENTITY}{ROOT_WITH_ENTITY}".encode(), id="comment-first"),
        pytest.param(f"<?xml-stylesheet href='<a>'?>{ENTITY}{ROOT_WITH_ENTITY}".encode(),
                     id="processing-instruction-first"),
        pytest.param(f'<?xml version="1.0"?>\n\n \t{ENTITY}{ROOT_WITH_ENTITY}'.encode(),
                     id="whitespace-first"),
        pytest.param(f"\ufeff{ENTITY}{ROOT_WITH_ENTITY}".encode(), id="byte-order-mark"),
        pytest.param(f'<?xml version="1.0" encoding="UTF-16"?>{ENTITY}{ROOT_WITH_ENTITY}'
                     .encode("utf-16"), id="utf16"),
        pytest.param(_no_bom(f"{ENTITY}{ROOT_WITH_ENTITY}", "utf-16-be"), id="utf16-no-bom"),
        pytest.param(f'<!DOCTYPE rss SYSTEM "]><a>" [<!ATTLIST a b CDATA "]>"><!ENTITY x "y">]>'
                     f"{ROOT_WITH_ENTITY}".encode(), id="quoted-brackets"),
        pytest.param(f"<!doctype rss [<!entity x 'y'>]>{ROOT_WITH_ENTITY}".encode(),
                     id="lower-case"),
    ],
)  # fmt: skip
def test_entity_declarations_are_refused_whatever_comes_before_them(body: bytes) -> None:
    """No comment, processing instruction, whitespace, byte-order mark, UTF-16 encoding nor
    quoted string lets a DOCTYPE's entity declarations through."""
    with pytest.raises(FeedError, match="declares entities"):
        to_utf8(body, "application/xml")


def test_a_doctype_without_entities_and_entity_talk_in_posts_are_accepted() -> None:
    """A DOCTYPE that declares no entity, and an escaped `<!ENTITY` in a post, are fine."""
    body = _rss("&amp;lt;!ENTITY x&amp;gt; explained").replace(
        "?>", '?><!-- c --><!DOCTYPE rss SYSTEM "rss.dtd">', 1
    )
    utf8, _ = to_utf8(body.encode(), RSS)
    [post], _ = parse(Fetched(utf8, RSS), "u", "en", NOW)
    assert post.title == "<!ENTITY x> explained"
