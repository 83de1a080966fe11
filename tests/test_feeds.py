"""Tests for pipeline.feeds: fetching from a real local HTTP server, parsing, normalising."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import feedparser
import pytest

from pipeline.config import FeedsSection
from pipeline.errors import FeedError
from pipeline.feeds import FeedReport, backfill, first_run_baseline, gather, parse, to_post
from pipeline.fetch import FeedLimits, Fetched, Request, fetch_all
from pipeline.store import Store
from tests.feedserver import Route, serve
from tests.helpers import ROOT, archive, make_post

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LIMITS = FeedLimits(timeout_s=5, max_bytes=1_000_000, user_agent="buzz/test (+https://x.example)")
LIMITS_BIG = FeedLimits(timeout_s=20, max_bytes=10_000_000, user_agent="buzz/test")
EN_FEED = (ROOT / "demo" / "feeds" / "it-buzz-en.xml").read_bytes()
RSS = "application/rss+xml; charset=UTF-8"


def fetch(url: str, etag: str | None = None, modified: str | None = None) -> Fetched | None:
    """One fetch through the real concurrent fetcher; a FeedError is raised."""
    [result] = fetch_all([Request(url, etag, modified)], LIMITS)
    if isinstance(result, FeedError):
        raise result
    return result


def _rss(items: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>t</title>'
        f"<link>https://blog.example.com/</link>{items}</channel></rss>"
    ).encode()


def test_demo_feed_normalises_every_wordpress_field() -> None:
    """guid ?p=ID, canonical link, plain title and summary, image, categories, author, date."""
    posts, warning = parse(Fetched(EN_FEED, RSS), "https://blog.example.com/feed/", "en", NOW)
    assert warning is None
    assert len(posts) == 14
    newest = posts[0]
    assert newest.guid == "https://blog.example.com/?p=4401"
    assert newest.url == "https://blog.example.com/2026/11/live-chat-service-desk/"
    assert newest.published == datetime(2026, 11, 24, 13, 30, tzinfo=UTC)
    assert (
        newest.image
        == "https://blog.example.com/wp-content/uploads/2026/11/live-chat-service-desk.jpg"
    )
    assert newest.author == "Émilie Bouchard"
    assert "IT Buzz" in newest.categories
    assert "<" not in newest.summary
    assert len(newest.summary) <= 300
    assert newest.content_html.startswith("<")


def test_entry_with_crlf_and_header_lines_in_title_and_author_stays_one_line() -> None:
    """Titles and authors are plain one-line text: no header can be smuggled through them."""
    body = _rss(
        "<item><title>Big news&#13;&#10;Bcc: all@example.com</title>"
        "<link>https://blog.example.com/a/</link><guid>g1</guid>"
        "<author>x@y.z (Eve&#13;&#10;To: z@example.com)</author>"
        "<description>&lt;b&gt;Hi&lt;/b&gt; there</description></item>"
    )
    [post], _ = parse(Fetched(body, RSS), "https://blog.example.com/feed/", "en", NOW)
    assert post.title == "Big news Bcc: all@example.com"
    assert "\n" not in post.author
    assert "\r" not in post.author
    assert post.summary == "Hi there"


def test_entries_with_a_non_http_link_or_no_title_are_skipped_and_named() -> None:
    """A link must be http(s) and a post must have a title; the warning names what went."""
    body = _rss(
        "<item><title>js</title><link>javascript:alert(1)</link></item>"
        "<item><title></title><link>https://blog.example.com/b/</link><guid>g2</guid></item>"
        "<item><title>ok</title><link>https://blog.example.com/c/</link></item>"
    )
    posts, warning = parse(Fetched(body, RSS), "u", "en", NOW)
    assert [post.title for post in posts] == ["ok"]
    assert warning is not None
    assert "skipped entry 1, title 'js': link is not an http(s) URL" in warning
    assert "skipped entry 2, id 'g2': no title" in warning


def test_identity_falls_back_to_the_canonical_link() -> None:
    """No guid: the canonical link is the identity."""
    body = _rss(
        "<item><title>t</title><link>https://blog.example.com/c/?utm_source=x</link></item>"
    )
    [post], _ = parse(Fetched(body, RSS), "u", "en", NOW)
    assert post.guid == "https://blog.example.com/c/"


def test_missing_date_gets_first_seen_time() -> None:
    """An undated entry is dated when buzz first sees it."""
    body = _rss("<item><title>t</title><link>https://blog.example.com/c/</link></item>")
    [post], _ = parse(Fetched(body, RSS), "u", "en", NOW)
    assert post.published == NOW


def test_duplicate_guids_keep_the_first_entry() -> None:
    """Two entries with one guid are one post."""
    item = (
        "<item><title>{}</title><link>https://blog.example.com/{}/</link><guid>same</guid></item>"
    )
    posts, _ = parse(
        Fetched(_rss(item.format("a", "a") + item.format("b", "b")), RSS), "u", "en", NOW
    )
    assert [post.title for post in posts] == ["a"]


def test_empty_body_and_html_page_are_errors() -> None:
    """An empty body or an HTML page served as 200 is a fetch error, not an empty feed."""
    with pytest.raises(FeedError, match="empty body"):
        parse(Fetched(b"  ", RSS), "u", "en", NOW)
    with pytest.raises(FeedError):
        parse(Fetched(b"<html><body><h1>Oops</h1></body></html>", "text/html"), "u", "en", NOW)


def test_image_falls_back_to_enclosure_then_first_img() -> None:
    """media:content first, then an image enclosure, then the content's first <img>."""
    entry = feedparser.parse(
        _rss(
            "<item><title>t</title><link>https://blog.example.com/c/</link>"
            '<enclosure url="https://blog.example.com/e.jpg" type="image/jpeg" length="1"/>'
            "</item>"
            "<item><title>u</title><link>https://blog.example.com/d/</link>"
            '<description>&lt;img src="https://blog.example.com/i.png"&gt;</description></item>'
        )
    ).entries
    assert to_post(entry[0], "en", "u", NOW).image == "https://blog.example.com/e.jpg"
    assert to_post(entry[1], "en", "u", NOW).image == "https://blog.example.com/i.png"


def test_first_run_baseline_keeps_only_the_window_and_the_newest_few() -> None:
    """On a feed's first fetch, old posts are archived; max_posts caps what stays new."""
    posts = [make_post(f"p{i}", published=NOW - timedelta(days=i)) for i in range(10)]
    assert first_run_baseline(posts, NOW, 7, 0) == {"p8", "p9"}
    assert first_run_baseline(posts, NOW, 7, 3) == {f"p{i}" for i in range(3, 10)}


def test_fetch_sends_user_agent_and_conditional_headers_and_honours_304() -> None:
    """ETag and Last-Modified are sent back; a 304 is 'not modified'."""
    routes = {"/feed": Route(body=EN_FEED, headers={"Content-Type": RSS, "ETag": '"v1"'})}
    with serve(routes) as server:
        first = fetch(server.url("/feed"))
        assert first is not None
        assert first.etag == '"v1"'
        server.routes["/feed"] = Route(status=304)
        assert fetch(server.url("/feed"), '"v1"', "Tue, 24 Nov 2026 13:41:52 GMT") is None
        _, headers = server.requests[-1]
    assert headers["If-None-Match"] == '"v1"'
    assert headers["If-Modified-Since"] == "Tue, 24 Nov 2026 13:41:52 GMT"
    assert headers["User-Agent"] == LIMITS.user_agent


def test_http_errors_and_oversized_feeds_are_clear_errors() -> None:
    """A 404 and a body over the cap end in a FeedError naming the reason."""
    with serve({"/big": Route(body=b"x" * 2_000_000)}) as server:
        with pytest.raises(FeedError, match="HTTP 404"):
            fetch(server.url("/missing"))
        with pytest.raises(FeedError, match=r"larger than feeds\.max_bytes"):
            fetch(server.url("/big"))


def test_gather_records_each_feed_and_one_failure_does_not_stop_the_others(
    tmp_path: Path,
) -> None:
    """A failing feed is recorded with its reason; the good one is stored."""
    store = Store(tmp_path / "state.sqlite")
    with serve({"/en": Route(body=EN_FEED, headers={"Content-Type": RSS})}) as server:
        feeds = [(server.url("/en"), "en"), (server.url("/gone"), "en")]
        reports = gather(feeds, LIMITS, FeedsSection(), store, NOW)
    assert [r.status for r in reports] == ["ok", "error"]
    assert reports[0].new == 14
    good, bad = (store.feed_state(url) for url, _ in feeds)
    assert good is not None
    assert good.ok
    assert good.entries == 14
    assert bad is not None
    assert not bad.ok
    assert bad.last_error == "HTTP 404"
    assert bad.consecutive_failures == 1
    # default first-run window: 7 days before NOW keeps only the posts of the last week
    assert [p.guid for p in store.unsent_posts("en", NOW)] == ["https://blog.example.com/?p=4401"]


def test_relative_links_resolve_against_the_feed_url() -> None:
    """A relative <link> becomes absolute, on the feed's own site."""
    body = _rss("<item><title>t</title><link>/2026/11/post/</link><guid>g</guid></item>")
    [post], _ = parse(Fetched(body, RSS), "https://blog.example.com/feed/", "en", NOW)
    assert post.url == "https://blog.example.com/2026/11/post/"


# Bad entries, link-less entries (issue 11) -----------------------------------------------------

BAD_AND_GOOD = _rss(
    "<item><title>Broken link</title><link>http://[oops/</link><guid>g1</guid></item>"
    "<item><title>From the future</title><link>https://blog.example.com/f/</link>"
    "<guid>g2</guid><dc:date xmlns:dc='http://purl.org/dc/elements/1.1/'>"
    "9999-12-31T23:59:59-12:00</dc:date></item>"
    "<item><title>Fine</title><link>https://blog.example.com/fine/</link><guid>g3</guid></item>"
)


def test_one_bad_entry_is_skipped_with_a_warning_naming_it_and_the_rest_is_kept() -> None:
    """A malformed URL and a date out of range each cost their own entry, named, no more."""
    posts, warning = parse(Fetched(BAD_AND_GOOD, RSS), "https://blog.example.com/feed/", "en", NOW)
    assert [post.guid for post in posts] == ["g3"]
    assert warning is not None
    assert "skipped entry 1, id 'g1', title 'Broken link': link is not an http(s) URL" in warning
    assert "skipped entry 2, id 'g2', title 'From the future': ValueError" in warning


def test_many_skipped_entries_are_counted_beyond_the_first_few() -> None:
    """The warning names five skipped entries and counts the others."""
    items = "".join(f"<item><title>t{n}</title><link>ftp://x/{n}</link></item>" for n in range(8))
    posts, warning = parse(Fetched(_rss(items), RSS), "u", "en", NOW)
    assert posts == []
    assert warning is not None
    assert warning.count("skipped entry") == 5
    assert warning.endswith("and 3 more entries skipped")


LINKLESS = _rss(
    "<item><title>Notice</title><description>The office is closed.</description></item>"
    "<item><title>Notice</title><description>The office is open.</description></item>"
    "<item><title>Status</title><guid>status-7</guid><description>All good.</description></item>"
    "<item><title>Linked</title><link>https://blog.example.com/linked/</link></item>"
)


def test_entries_without_a_link_have_none_and_are_told_apart() -> None:
    """No link: url "" (never the feed's own URL); identity is the guid (a guid that is not a
    URL is no link), else a hash of title and content, so two such entries stay two."""
    posts, warning = parse(Fetched(LINKLESS, RSS), "https://blog.example.com/feed/", "en", NOW)
    assert warning is None
    assert [post.url for post in posts] == ["", "", "", "https://blog.example.com/linked/"]
    first, second, status, _ = posts
    assert first.guid.startswith("sha256:")
    assert second.guid.startswith("sha256:")
    assert first.guid != second.guid
    assert status.guid == "status-7"
    again, _ = parse(Fetched(LINKLESS, RSS), "https://blog.example.com/feed/", "en", NOW)
    assert [post.guid for post in again] == [post.guid for post in posts]


def test_linkless_posts_are_archived_never_stories_and_never_merged(tmp_path: Path) -> None:
    """Stored all three, as archive only: none is unsent, and none replaced another."""
    store = Store(tmp_path / "state.sqlite")
    with serve({"/feed": Route(body=LINKLESS, headers={"Content-Type": RSS})}) as server:
        [report] = gather([(server.url("/feed"), "en")], LIMITS, FeedsSection(), store, NOW)
    assert report.status == "ok"
    assert report.new == 4
    stored = {post.title + post.summary: post.url for post in archive(store, "en")}
    assert len(stored) == 4
    assert [post.title for post in store.unsent_posts("en", NOW)] == ["Linked"]


# Parsing apart, under deadlines (issue 11) -----------------------------------------------------


def _deep_feed(depth: int) -> bytes:
    nested = "<div>" * depth + "the bottom" + "</div>" * depth
    return _rss(
        "<item><title>Deep</title><link>https://blog.example.com/deep/</link><guid>deep</guid>"
        f"<description><![CDATA[{nested}]]></description></item>"
    )


def _healthy(n: int) -> bytes:
    return EN_FEED.replace(b"https://blog.example.com/", f"https://site{n}.example/".encode())


def _gather_five_healthy_beside(
    bad: bytes, limits: FeedLimits, tmp_path: Path
) -> tuple[list[FeedReport], Store, float]:
    store = Store(tmp_path / "state.sqlite")
    routes = {f"/ok{n}": Route(body=_healthy(n), headers={"Content-Type": RSS}) for n in range(5)}
    routes["/bad"] = Route(body=bad, headers={"Content-Type": RSS})
    with serve(routes) as server:
        feeds = [(server.url("/bad"), "en")] + [(server.url(f"/ok{n}"), "en") for n in range(5)]
        started = time.monotonic()
        reports = gather(feeds, limits, FeedsSection(first_run_window_days=36500), store, NOW)
        elapsed = time.monotonic() - started
    return reports, store, elapsed


def test_a_100000_deep_feed_beside_five_healthy_ones_costs_them_nothing(tmp_path: Path) -> None:
    """The five are stored within their deadlines; the deep one is stored too (its markup
    capped), or fails alone with its reason."""
    limits = LIMITS_BIG
    reports, store, elapsed = _gather_five_healthy_beside(_deep_feed(100_000), limits, tmp_path)
    deep, *healthy = reports
    assert [r.status for r in healthy] == ["ok"] * 5
    assert all(r.new == 14 for r in healthy)
    assert len(archive(store, "en")) >= 70
    assert deep.status == "ok" or "feeds.timeout_s" in (deep.error or "")
    assert elapsed < 2 * limits.timeout_s + 5


def test_a_feed_slow_to_parse_fails_alone_at_its_deadline(tmp_path: Path) -> None:
    """A feed whose parse outlasts feeds.timeout_s is killed and recorded with that reason;
    the five others are stored."""
    slow = _rss("<item><title>t</title></item>" * 150_000)  # seconds of feedparser
    limits = FeedLimits(timeout_s=1, max_bytes=10_000_000, user_agent="buzz/test")
    reports, store, elapsed = _gather_five_healthy_beside(slow, limits, tmp_path)
    slow_report, *healthy = reports
    assert [r.status for r in healthy] == ["ok"] * 5
    assert slow_report.status == "error"
    assert slow_report.error == "parsing took longer than feeds.timeout_s (1 s)"
    state = store.feed_state(slow_report.url)
    assert state is not None
    assert state.last_error == slow_report.error
    assert elapsed < 15


def test_an_unchanged_body_is_not_parsed_again_even_when_the_server_ignores_etags(
    tmp_path: Path,
) -> None:
    """Same bytes as last time (a 200 despite If-None-Match): not parsed, reported as not
    modified, the entry count kept; a changed body is parsed."""
    store = Store(tmp_path / "state.sqlite")
    route = Route(body=EN_FEED, headers={"Content-Type": RSS, "ETag": '"v1"'})
    with serve({"/feed": route}) as server:
        feeds = [(server.url("/feed"), "en")]
        [first] = gather(feeds, LIMITS, FeedsSection(), store, NOW)
        [second] = gather(feeds, LIMITS, FeedsSection(), store, NOW)
        _, headers = server.requests[-1]
        route.body = EN_FEED.replace(b"Live Chat at the Service Desk", b"Live Chat, Renamed")
        [third] = gather(feeds, LIMITS, FeedsSection(), store, NOW)
    assert headers["If-None-Match"] == '"v1"'
    assert (first.status, second.status, third.status) == ("ok", "not_modified", "ok")
    assert second.posts == []
    state = store.feed_state(feeds[0][0])
    assert state is not None
    assert state.entries == 14
    assert any("Live Chat, Renamed" in post.title for post in archive(store, "en"))


def test_backfill_reads_older_pages_until_the_server_says_404(tmp_path: Path) -> None:
    """`?paged=2`, `3`… are archived (never sendable) until a page answers 404."""

    def older_pages(handler: BaseHTTPRequestHandler) -> None:
        page = int(handler.path.rpartition("paged=")[2] or 1)
        item = (
            f"<item><title>Old {page}</title><link>https://blog.example.com/old-{page}/</link>"
            f"<guid>https://blog.example.com/?p={page}</guid>"
            "<pubDate>Mon, 02 Mar 2026 10:00:00 +0000</pubDate></item>"
        )
        body = _rss(item) if page <= 3 else b"gone"
        handler.send_response(200 if page <= 3 else 404)
        handler.send_header("Content-Type", RSS)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    store = Store(tmp_path / "state.sqlite")
    with serve({"/feed/": Route(respond=older_pages)}) as server:
        [report] = backfill([(server.url("/feed/"), "en")], LIMITS, store, NOW)
    assert (report.pages, report.added, report.stopped) == (2, 2, "end of pages")
    assert store.post("https://blog.example.com/?p=3") is not None
    assert store.unsent_posts("en", NOW) == []
