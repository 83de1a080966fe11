"""Gather: fetch every feed (bounded, concurrent, conditional), parse, normalise into Posts.

buzz fetches the bytes itself — feedparser's own fetcher has no timeout — with a connect
timeout, a total deadline, a byte cap and a bounded number of redirects, then hands the bytes
and the response headers to feedparser.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import httpx
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from pipeline import __version__
from pipeline.config import FeedsSection
from pipeline.errors import FeedError
from pipeline.log import log
from pipeline.models import Post
from pipeline.store import FeedState, Store
from pipeline.text import (
    canonical_url,
    http_url,
    is_excerpt,
    one_line,
    plain_text,
    sanitize_html,
    shorten,
)

MAX_REDIRECTS = 5
MAX_CONCURRENT_FETCHES = 8
TITLE_LIMIT = 200
SUMMARY_LIMIT = 300
_FIRST_IMG = re.compile(r"<img\b[^>]*?\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FeedLimits:
    """How long and how much one feed may cost."""

    timeout_s: float
    max_bytes: int
    user_agent: str


@dataclass(frozen=True, slots=True)
class Fetched:
    """A feed's body and the response metadata feedparser and the next request need."""

    body: bytes
    content_type: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass(slots=True)
class FeedReport:
    """What happened to one feed in one fetch."""

    url: str
    lang: str
    status: str = "ok"  # ok | not_modified | error
    posts: list[Post] = field(default_factory=list)
    new: int = 0
    error: str | None = None
    warning: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    duration_ms: float = 0.0


def user_agent(contact_url: str) -> str:
    """The User-Agent buzz sends: its name, version and where to reach the sender."""
    return f"buzz/{__version__} (+{contact_url})"


# Fetching -------------------------------------------------------------------------------------


def fetch(
    location: str, limits: FeedLimits, etag: str | None, modified: str | None
) -> Fetched | None:
    """The feed's bytes, or None when the server says it has not changed (304)."""
    if http_url(location) is None:
        return _read_local(Path(location), limits)
    return _fetch_http_with_retries(location, limits, etag, modified)


def _read_local(path: Path, limits: FeedLimits) -> Fetched:
    try:
        with path.open("rb") as handle:
            body = handle.read(limits.max_bytes + 1)
    except OSError as exc:
        raise FeedError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(body) > limits.max_bytes:
        raise FeedError(f"feed is larger than feeds.max_bytes ({limits.max_bytes} bytes)")
    return Fetched(body=body, content_type="application/xml")


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError) or (
        isinstance(exc, _ServerError) and exc.status >= 500
    )


class _ServerError(FeedError):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _fetch_http_with_retries(
    url: str, limits: FeedLimits, etag: str | None, modified: str | None
) -> Fetched | None:
    attempt = retry(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(3) | stop_after_delay(limits.timeout_s),
        wait=wait_exponential_jitter(multiplier=0.5, max=4),
        reraise=True,
    )(_fetch_http)
    try:
        return attempt(url, limits, etag, modified)
    except httpx.TimeoutException:
        raise FeedError(f"timed out after {limits.timeout_s:g} s") from None
    except httpx.TooManyRedirects:
        raise FeedError(f"more than {MAX_REDIRECTS} redirects") from None
    except httpx.HTTPError as exc:
        raise FeedError(f"network error: {exc}") from None


def _fetch_http(
    url: str, limits: FeedLimits, etag: str | None, modified: str | None
) -> Fetched | None:
    headers = {
        "User-Agent": limits.user_agent,
        "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5",
    }
    if etag:
        headers["If-None-Match"] = etag
    if modified:
        headers["If-Modified-Since"] = modified
    deadline = time.monotonic() + limits.timeout_s
    timeout = httpx.Timeout(limits.timeout_s, connect=min(10.0, limits.timeout_s))
    with (
        httpx.Client(
            timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS, headers=headers
        ) as client,
        client.stream("GET", url) as response,
    ):
        if response.status_code == 304:
            return None
        if response.status_code >= 400:
            raise _ServerError(response.status_code)
        declared = int(response.headers.get("content-length") or 0)
        if declared > limits.max_bytes:
            raise FeedError(f"feed is larger than feeds.max_bytes ({limits.max_bytes} bytes)")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limits.max_bytes or response.num_bytes_downloaded > limits.max_bytes:
                raise FeedError(f"feed is larger than feeds.max_bytes ({limits.max_bytes} bytes)")
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout("total deadline exceeded")
            chunks.append(chunk)
        return Fetched(
            body=b"".join(chunks),
            content_type=response.headers.get("content-type", "application/xml"),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
        )


# Parsing and normalising ----------------------------------------------------------------------


def parse(fetched: Fetched, url: str, lang: str, now: datetime) -> tuple[list[Post], str | None]:
    """The posts of a fetched feed, and a warning when the feed is damaged but usable."""
    if not fetched.body.strip():
        raise FeedError("empty body")
    parsed = feedparser.parse(
        fetched.body,
        response_headers={"content-type": fetched.content_type, "content-location": url},
    )
    if not parsed.entries:
        if parsed.bozo:
            raise FeedError(f"not a usable feed: {_bozo_reason(parsed)}")
        if not parsed.version:
            raise FeedError("not an RSS or Atom feed")
    warning = f"damaged feed, entries kept: {_bozo_reason(parsed)}" if parsed.bozo else None
    posts = [post for entry in parsed.entries if (post := to_post(entry, lang, url, now))]
    return _unique(posts), warning


def _bozo_reason(parsed: Any) -> str:
    return one_line(str(parsed.get("bozo_exception", "malformed")), 200)


def _unique(posts: Iterable[Post]) -> list[Post]:
    seen: dict[str, Post] = {}
    for post in posts:
        seen.setdefault(post.guid, post)
    return list(seen.values())


def to_post(entry: Any, lang: str, feed_url: str, now: datetime) -> Post | None:
    """One feedparser entry as a Post, or None when it has no title or no http(s) link."""
    url = canonical_url(entry.get("link"))
    title = one_line(entry.get("title", ""), TITLE_LIMIT)
    if url is None or not title:
        return None
    content = entry["content"][0].get("value", "") if entry.get("content") else ""
    summary_html = entry.get("summary", "")
    if not summary_html or (content and is_excerpt(plain_text(summary_html))):
        summary_html = content or summary_html  # a cut-off excerpt reads worse than the body
    identity = (entry.get("id") or "").strip() or url
    return Post(
        guid=one_line(identity, 500) or _content_hash(title, summary_html),
        lang=lang,
        url=url,
        title=title,
        summary=shorten(plain_text(summary_html), SUMMARY_LIMIT),
        published=_published(entry) or now,
        content_html=sanitize_html(content or summary_html),
        image=_image(entry, content or summary_html),
        categories=_categories(entry),
        author=one_line(entry.get("author", ""), 100),
        feed_url=feed_url,
    )


def _content_hash(title: str, body: str) -> str:
    return "sha256:" + hashlib.sha256(f"{title}\n{body}".encode()).hexdigest()


def _published(entry: Any) -> datetime | None:
    stamp = entry.get("published_parsed") or entry.get("updated_parsed")
    if not stamp:
        return None
    return datetime.fromtimestamp(calendar.timegm(stamp), tz=UTC)


def _image(entry: Any, content: str) -> str | None:
    for media in entry.get("media_content", []):
        is_image = media.get("medium") == "image" or media.get("type", "").startswith("image/")
        if is_image and (url := http_url(media.get("url"))):
            return url
    for link in entry.get("links", []):
        is_image = link.get("rel") == "enclosure" and link.get("type", "").startswith("image/")
        if is_image and (url := http_url(link.get("href"))):
            return url
    match = _FIRST_IMG.search(content)
    return http_url(match.group(1)) if match else None


def _categories(entry: Any) -> tuple[str, ...]:
    names = (
        one_line(tag.get("term") or tag.get("label") or "", 80) for tag in entry.get("tags", [])
    )
    return tuple(dict.fromkeys(name for name in names if name))


def first_run_baseline(
    posts: Iterable[Post], now: datetime, window_days: int, max_posts: int
) -> set[str]:
    """Guids to archive as already published when a feed is fetched for the first time:
    posts older than the window and, when `max_posts` is set, all but the newest few."""
    ordered = sorted(posts, key=lambda post: post.published, reverse=True)
    horizon = now - timedelta(days=window_days)
    keep = {post.guid for post in ordered if post.published >= horizon}
    if max_posts:
        keep &= {post.guid for post in ordered[:max_posts]}
    return {post.guid for post in ordered} - keep


# One fetch of every feed ----------------------------------------------------------------------


def gather(
    feeds: list[tuple[str, str]],
    limits: FeedLimits,
    first_run: FeedsSection,
    store: Store,
    now: datetime,
) -> list[FeedReport]:
    """Fetch every (url, lang) concurrently, store what is new, record each feed's health.

    One feed's failure is recorded and logged; it never stops the others.
    """
    known = {url: store.feed_state(url) for url, _ in feeds}

    def work(feed: tuple[str, str]) -> FeedReport:
        url, lang = feed
        state = known[url]
        started = time.perf_counter()
        report = _fetch_and_parse(url, lang, limits, state, now)
        report.duration_ms = round((time.perf_counter() - started) * 1000, 1)
        return report

    with ThreadPoolExecutor(max_workers=MAX_CONCURRENT_FETCHES) as pool:
        reports = list(pool.map(work, feeds))
    for report in reports:
        _record(report, known[report.url], first_run, store, now)
    return reports


def _fetch_and_parse(
    url: str, lang: str, limits: FeedLimits, state: FeedState | None, now: datetime
) -> FeedReport:
    report = FeedReport(url=url, lang=lang)
    if state is not None:
        report.etag, report.last_modified = state.etag, state.last_modified
    try:
        fetched = fetch(url, limits, report.etag, report.last_modified)
        if fetched is None:
            report.status = "not_modified"
            return report
        report.posts, report.warning = parse(fetched, url, lang, now)
        report.etag, report.last_modified = fetched.etag, fetched.last_modified
    except FeedError as exc:
        report.status, report.error = "error", str(exc)
    except Exception as exc:  # a parser bug on hostile input must not stop the other feeds
        report.status, report.error = "error", f"unexpected {type(exc).__name__}: {exc}"
    return report


def _record(
    report: FeedReport,
    state: FeedState | None,
    first_run: FeedsSection,
    store: Store,
    now: datetime,
) -> None:
    fields = {"url": report.url, "lang": report.lang, "duration_ms": report.duration_ms}
    if report.status == "error":
        store.record_feed_failure(report.url, report.lang, report.error or "", now)
        log.warning("feed_failed", **fields, error=report.error)
        return
    baseline: set[str] = set()
    if state is None or state.first_fetched_at is None:
        baseline = first_run_baseline(
            report.posts, now, first_run.first_run_window_days, first_run.first_run_max_posts
        )
    report.new = store.save_posts(report.posts, baseline, now)
    store.record_feed_success(
        report.url,
        report.lang,
        etag=report.etag,
        last_modified=report.last_modified,
        entries=None if report.status == "not_modified" else len(report.posts),
        now=now,
    )
    if report.warning:
        log.warning("feed_damaged", **fields, warning=report.warning)
    log.info(
        "feed_fetched",
        **fields,
        status=report.status,
        entries=len(report.posts),
        new=report.new,
        archived=len(baseline),
    )
