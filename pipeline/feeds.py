"""Gather: fetch every feed (see `fetch`), parse with feedparser, normalise into Posts, store
what is new, and record each feed's health."""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin

import feedparser

from pipeline.config import FeedsSection
from pipeline.errors import FeedError
from pipeline.fetch import FeedLimits, Fetched, Request, fetch_all, fetch_each
from pipeline.log import log
from pipeline.models import Post
from pipeline.store import FeedState, Store
from pipeline.text import (
    canonical_url,
    http_url,
    is_excerpt,
    one_line,
    plain_text,
    public_url,
    sanitize_html,
    shorten,
    text_of_clean_html,
)

TITLE_LIMIT = 200
SUMMARY_LIMIT = 300
BACKFILL_MAX_PAGES = 50
_FIRST_IMG = re.compile(r"<img\b[^>]*?\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)


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


# Parsing and normalising ----------------------------------------------------------------------


def parse(fetched: Fetched, url: str, lang: str, now: datetime) -> tuple[list[Post], str | None]:
    """The posts of a fetched feed, and a warning when the feed is damaged but usable."""
    if not fetched.body.strip():
        raise FeedError("empty body")
    parsed = feedparser.parse(
        fetched.body,
        # no content-location: feedparser would resolve every link against it, at a cost of a
        # fifth of the parse; to_post resolves the rare relative link itself
        response_headers={"content-type": fetched.content_type},
        sanitize_html=False,  # nh3 sanitizes, with an allow-list of our own
        resolve_relative_uris=False,
    )
    if not parsed.entries:
        if parsed.bozo:
            raise FeedError(f"not a usable feed: {_bozo_reason(parsed)}")
        if not parsed.version:
            raise FeedError("not an RSS or Atom feed")
    warnings = [fetched.warning] if fetched.warning else []
    if parsed.bozo:
        warnings.append(f"damaged feed, entries kept: {_bozo_reason(parsed)}")
    warning = "; ".join(warnings) or None
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
    """One feedparser entry as a Post, or None when it has no title or no http(s) link.

    Identity: the entry's guid, else its canonical link. (An entry without a link cannot be
    linked from a newsletter and is skipped, so no content-hash identity is ever needed.)
    """
    link = entry.get("link") or ""
    url = canonical_url(urljoin(feed_url, link) if http_url(feed_url) else link)
    title = one_line(entry.get("title", ""), TITLE_LIMIT)
    if url is None or not title:
        return None
    content = entry["content"][0].get("value", "") if entry.get("content") else ""
    content_html = sanitize_html(content or entry.get("summary", ""))
    summary = plain_text(entry.get("summary", ""))
    if content and (not summary or is_excerpt(summary)):
        summary = _opening_text(content_html)  # a cut-off excerpt reads worse than the body
    identity = (entry.get("id") or "").strip() or url
    return Post(
        guid=one_line(identity, 500) or url,
        lang=lang,
        url=url,
        title=title,
        summary=shorten(summary, SUMMARY_LIMIT),
        published=_published(entry) or now,
        content_html=content_html,
        image=_image(entry, content_html),
        categories=_categories(entry),
        author=one_line(entry.get("author", ""), 100),
        feed_url=feed_url,
    )


def _opening_text(clean_html: str) -> str:
    """Enough of the body's text for a summary, without converting a long post whole."""
    head = clean_html[: SUMMARY_LIMIT * 8]
    text = text_of_clean_html(head)
    return (
        text
        if len(text) > SUMMARY_LIMIT or len(head) == len(clean_html)
        else (text_of_clean_html(clean_html))
    )


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
    *,
    dry_run: bool = False,
) -> list[FeedReport]:
    """Fetch every (location, lang) concurrently, store what is new, record each feed's health
    (with `dry_run`: fetch and parse only, store nothing).

    One feed's failure is recorded and logged; it never stops the others.
    """
    known = {url: store.feed_state(url) for url, _ in feeds}
    requests = [
        Request(url, state.etag, state.last_modified) if (state := known[url]) else Request(url)
        for url, _ in feeds
    ]
    langs = dict(feeds)
    reports = fetch_each(
        requests,
        limits,
        lambda request, outcome: _report(
            request.location, langs[request.location], outcome, known[request.location], now
        ),
    )
    for report in reports:
        if dry_run:
            _log(report, archived=0)
        else:
            _record(report, known[report.url], first_run, store, now)
    return reports


def _report(
    url: str, lang: str, result: Fetched | FeedError | None, state: FeedState | None, now: datetime
) -> FeedReport:
    report = FeedReport(url=url, lang=lang)
    if isinstance(result, FeedError):
        report.status, report.error = "error", str(result)
    elif result is None:
        report.status = "not_modified"
        report.etag, report.last_modified = (
            (state.etag, state.last_modified) if state else (None, None)
        )
    else:
        try:
            report.posts, report.warning = parse(result, url, lang, now)
        except FeedError as exc:
            report.status, report.error = "error", str(exc)
        except Exception as exc:  # a parser bug on hostile input must not stop the other feeds
            report.status, report.error = "error", f"unexpected {type(exc).__name__}: {exc}"
        report.etag, report.last_modified = result.etag, result.last_modified
        if result.moved_to:
            log.warning(
                "feed_moved", url=public_url(url), lang=lang, moved_to=public_url(result.moved_to)
            )
    return report


def _record(
    report: FeedReport,
    state: FeedState | None,
    first_run: FeedsSection,
    store: Store,
    now: datetime,
) -> None:
    if report.status == "error":
        store.record_feed_failure(report.url, report.lang, report.error or "", now)
        _log(report, archived=0)
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
    _log(report, archived=len(baseline))


def _log(report: FeedReport, archived: int) -> None:
    fields = {"url": public_url(report.url), "lang": report.lang}
    if report.status == "error":
        log.warning("feed_failed", **fields, error=report.error)
        return
    if report.warning:
        log.warning("feed_damaged", **fields, warning=report.warning)
    log.info(
        "feed_fetched",
        **fields,
        status=report.status,
        entries=len(report.posts),
        new=report.new,
        archived=archived,
    )


def unavailable_languages(reports: Iterable[FeedReport], langs: Iterable[str]) -> list[str]:
    """The languages among `langs` whose every feed failed in this fetch."""
    failing: dict[str, bool] = {}
    for report in reports:
        failing[report.lang] = failing.get(report.lang, True) and report.status == "error"
    return [lang for lang in langs if failing.get(lang, False)]


# Backfill -------------------------------------------------------------------------------------


@dataclass(slots=True)
class BackfillReport:
    """What seeding the archive from one feed's older pages found."""

    url: str
    lang: str
    pages: int = 0
    added: int = 0
    stopped: str = ""


def backfill(
    feeds: list[tuple[str, str]],
    limits: FeedLimits,
    store: Store,
    now: datetime,
    max_pages: int = BACKFILL_MAX_PAGES,
) -> list[BackfillReport]:
    """Seed the archive from WordPress feed pages (`?paged=2`, 3, …) of each http(s) feed,
    until a 404, an empty page, a page with nothing unseen, or `max_pages`. Everything found
    is archived as already published: backfill feeds related articles, never a newsletter."""
    reports = [BackfillReport(url, lang) for url, lang in feeds if http_url(url)]
    seen: dict[str, set[str]] = {report.url: set() for report in reports}
    active = list(reports)
    for page in range(2, max_pages + 2):
        if not active:
            break
        results = fetch_all([Request(_paged(r.url, page)) for r in active], limits)
        for report, result in zip(list(active), results, strict=True):
            posts, stop = _page_posts(report, result, now)
            fresh = [post for post in posts if post.guid not in seen[report.url]]
            if not stop and not fresh:
                stop = "no unseen entries"
            if stop:
                report.stopped = stop
                active.remove(report)
                continue
            seen[report.url].update(post.guid for post in fresh)
            report.pages += 1
            report.added += store.save_posts(fresh, {post.guid for post in fresh}, now)
    for report in active:
        report.stopped = f"page limit ({max_pages})"
    for report in reports:
        log.info(
            "feed_backfilled",
            url=public_url(report.url),
            lang=report.lang,
            pages=report.pages,
            added=report.added,
            stopped=report.stopped,
        )
    return reports


def _paged(url: str, page: int) -> str:
    return f"{url}{'&' if '?' in url else '?'}paged={page}"


def _page_posts(
    report: BackfillReport, result: Fetched | FeedError | None, now: datetime
) -> tuple[list[Post], str]:
    if isinstance(result, FeedError):
        return [], "end of pages" if str(result) == "HTTP 404" else str(result)
    if result is None:
        return [], "not modified"
    try:
        posts, _ = parse(result, report.url, report.lang, now)
    except FeedError as exc:
        return [], str(exc)
    return posts, "" if posts else "empty page"
