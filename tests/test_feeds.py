"""Tests for pipeline.feeds: fetching from a real local HTTP server, parsing, normalising."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest

from pipeline.config import FeedsSection
from pipeline.errors import FeedError
from pipeline.feeds import first_run_baseline, gather, parse, to_post
from pipeline.fetch import FeedLimits, Fetched, Request, fetch_all
from pipeline.store import Store
from tests.feedserver import Route, serve
from tests.helpers import ROOT, make_post

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LIMITS = FeedLimits(timeout_s=5, max_bytes=1_000_000, user_agent="buzz/test (+https://x.example)")
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


def test_entries_without_http_link_or_title_are_dropped() -> None:
    """A post must be linkable (http/https) and have a title."""
    body = _rss(
        "<item><title>js</title><link>javascript:alert(1)</link></item>"
        "<item><title></title><link>https://blog.example.com/b/</link></item>"
        "<item><title>ok</title><link>https://blog.example.com/c/</link></item>"
    )
    posts, _ = parse(Fetched(body, RSS), "u", "en", NOW)
    assert [post.title for post in posts] == ["ok"]


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
    assert to_post(entry[0], "en", "u", NOW).image == "https://blog.example.com/e.jpg"  # type: ignore[union-attr]
    assert to_post(entry[1], "en", "u", NOW).image == "https://blog.example.com/i.png"  # type: ignore[union-attr]


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
