"""Gather: fetch every feed (see `fetch`), parse with feedparser, normalise into Posts, store
what is new, and record each feed's health."""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import multiprocessing
import os
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from typing import Any
from urllib.parse import urljoin

import feedparser

from pipeline.config import FeedsSection
from pipeline.errors import FeedError
from pipeline.fetch import FeedLimits, Fetched, Outcome, Request, fetch_then
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
    status: str = "ok"  # ok | not_modified (a 304, or the same body as last time) | error
    posts: list[Post] = field(default_factory=list)
    new: int = 0
    error: str | None = None
    warning: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    body_sha256: str | None = None


class BadEntry(Exception):
    """An entry that cannot be a post (no title, a link that is no http(s) URL)."""


Parsed = tuple[list[Post], str | None]
SKIPPED_NAMED = 5  # entries named in a warning; the others are counted


# Parsing and normalising ----------------------------------------------------------------------


def parse(fetched: Fetched, url: str, lang: str, now: datetime) -> Parsed:
    """The posts of a fetched feed, and a warning when the feed is damaged but usable — an
    entry that cannot be a post, or that raises anything, is skipped, and named there."""
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
    posts: list[Post] = []
    skipped: list[str] = []
    for position, entry in enumerate(parsed.entries, start=1):
        try:
            posts.append(to_post(entry, lang, url, now))
        except BadEntry as exc:
            skipped.append(f"skipped {_entry_name(entry, position)}: {exc}")
        except Exception as exc:  # anything else one entry raises costs that entry alone
            skipped.append(f"skipped {_entry_name(entry, position)}: {type(exc).__name__}: {exc}")
    warnings += skipped[:SKIPPED_NAMED]
    if len(skipped) > SKIPPED_NAMED:
        warnings.append(f"and {len(skipped) - SKIPPED_NAMED} more entries skipped")
    return _unique(posts), "; ".join(warnings) or None


def _bozo_reason(parsed: Any) -> str:
    return one_line(str(parsed.get("bozo_exception", "malformed")), 200)


def _entry_name(entry: Any, position: int) -> str:
    """Which entry: its position in the feed, its guid, its title (raw, never parsed again)."""
    parts = [f"entry {position}"]
    for key in ("id", "title"):
        value = " ".join(str(entry.get(key) or "").split())
        if value:
            parts.append(f"{key} {shorten(value, 80)!r}")
    return ", ".join(parts)


def _unique(posts: Iterable[Post]) -> list[Post]:
    seen: dict[str, Post] = {}
    for post in posts:
        seen.setdefault(post.guid, post)
    return list(seen.values())


def to_post(entry: Any, lang: str, feed_url: str, now: datetime) -> Post:
    """One feedparser entry as a Post; BadEntry when it has no title, or a link that is not an
    http(s) URL.

    An entry without a link gets none (`url` ""; see `Post`). Identity: the entry's guid, else
    its canonical link, else a hash of its title and content — two link-less entries are two
    posts.
    """
    title = one_line(_get(entry, "title") or "", TITLE_LIMIT)
    if not title:
        raise BadEntry("no title")
    url = _link(entry, feed_url)
    contents = _get(entry, "content")
    content = (_get(contents[0], "value") or "") if contents else ""
    raw_summary = _get(entry, "summary") or ""
    content_html = sanitize_html(content or raw_summary)
    summary = "" if content and is_excerpt(raw_summary) else plain_text(raw_summary)
    if content and (not summary or is_excerpt(summary)):
        summary = _opening_text(content_html)  # a cut-off excerpt reads worse than the body
    identity = one_line(_get(entry, "id") or "", 500) or url or _content_hash(title, content_html)
    return Post(
        guid=identity,
        lang=lang,
        url=url,
        title=title,
        summary=shorten(summary, SUMMARY_LIMIT),
        published=_published(entry) or now,
        content_html=content_html,
        image=_image(entry, content_html),
        categories=_categories(entry),
        author=one_line(_get(entry, "author") or "", 100),
        feed_url=feed_url,
    )


# An entry is a FeedParserDict, whose own lookup maps old key names at a cost of microseconds
# a call; the keys read here are stored under their own names.
_get = dict.get


def _link(entry: Any, feed_url: str) -> str:
    """The entry's canonical link, resolved against the feed's URL; "" when it has none (a
    guid that feedparser took for a link without being a URL is none)."""
    link = (_get(entry, "link") or "").strip()
    if not link:
        return ""
    if url := canonical_url(link):
        return url
    if _get(entry, "guidislink"):
        return ""
    try:
        url = canonical_url(urljoin(feed_url, link)) if http_url(feed_url) else None
    except ValueError:  # urllib refuses a malformed host ("http://[oops/")
        url = None
    if url is None:
        raise BadEntry(f"link is not an http(s) URL: {shorten(link, 100)!r}")
    return url


def _content_hash(title: str, content_html: str) -> str:
    digest = hashlib.sha256(f"{title}\n{content_html}".encode()).hexdigest()
    return f"sha256:{digest[:32]}"


def _opening_text(clean_html: str) -> str:
    """Enough of the body's text for a summary, without converting a long post whole: a head
    of the HTML, twice as long each time until it holds enough text, or the whole."""
    size = SUMMARY_LIMIT * 2  # HTML is seldom more than half markup
    while size < len(clean_html):
        head = clean_html[: clean_html.rfind(">", 0, size) + 1]  # no tag cut in two
        text = text_of_clean_html(head)
        if len(text) > SUMMARY_LIMIT:
            return text
        size *= 2
    return text_of_clean_html(clean_html)


def _published(entry: Any) -> datetime | None:
    stamp = _get(entry, "published_parsed") or _get(entry, "updated_parsed")
    if not stamp:
        return None
    return datetime.fromtimestamp(calendar.timegm(stamp), tz=UTC)


def _image(entry: Any, content: str) -> str | None:
    for media in _get(entry, "media_content") or ():
        is_image = media.get("medium") == "image" or media.get("type", "").startswith("image/")
        if is_image and (url := http_url(media.get("url"))):
            return url
    for link in _get(entry, "links") or ():
        is_image = link.get("rel") == "enclosure" and link.get("type", "").startswith("image/")
        if is_image and (url := http_url(link.get("href"))):
            return url
    match = _FIRST_IMG.search(content)
    return http_url(match.group(1)) if match else None


def _categories(entry: Any) -> tuple[str, ...]:
    names = (
        one_line(_get(tag, "term") or _get(tag, "label") or "", 80)
        for tag in _get(entry, "tags") or ()
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


# Parsing apart --------------------------------------------------------------------------------
# feedparser and nh3 hold the GIL while they work and cannot be interrupted: each feed is parsed
# in a process of its own, forked from a server that has imported buzz once, and killed at its
# deadline. A few milliseconds a feed buy a hostile feed's failure costing nothing to the others.

PARSE_WORKERS = os.cpu_count() or 1
_PROCESSES: ForkServerContext | SpawnContext = (
    multiprocessing.get_context("forkserver")
    if "forkserver" in multiprocessing.get_all_start_methods()
    else multiprocessing.get_context("spawn")  # where there is no fork (Windows)
)
if isinstance(_PROCESSES, ForkServerContext):
    _PROCESSES.set_forkserver_preload(["__main__", "pipeline.feeds"])  # main: imported once

Parsing = Callable[[Fetched, str, str], Awaitable[Parsed | FeedError]]


def parse_apart(fetched: Fetched, url: str, lang: str, now: datetime, deadline_s: float) -> Parsed:
    """`parse` in a process of its own, killed after `deadline_s` (counted from its start);
    every failure, the process's own included, is a FeedError."""
    receiver, sender = _PROCESSES.Pipe(duplex=False)
    worker = _PROCESSES.Process(
        target=_parse_for_parent, args=(sender, fetched, url, lang, now), daemon=True
    )
    worker.start()
    sender.close()
    try:
        if not receiver.poll(deadline_s):
            raise FeedError(f"parsing took longer than feeds.timeout_s ({deadline_s:g} s)")
        result: Parsed | str = receiver.recv()
    except EOFError:
        worker.join()
        raise FeedError(f"the parser process died (exit code {worker.exitcode})") from None
    finally:
        receiver.close()
        worker.kill()
        worker.join()
    if isinstance(result, str):
        raise FeedError(result)
    return result


def _parse_for_parent(
    sender: Connection, fetched: Fetched, url: str, lang: str, now: datetime
) -> None:
    """In the worker: `parse`, and send the parent the result, or why not as a string."""
    result: Parsed | str
    try:
        result = parse(fetched, url, lang, now)
    except FeedError as exc:
        result = str(exc)
    except Exception as exc:  # a parser bug on hostile input is this feed's failure alone
        result = f"unexpected {type(exc).__name__}: {exc}"
    sender.send(result)
    sender.close()


def _parser(limits: FeedLimits, now: datetime) -> Parsing:
    """A coroutine that parses a fetched feed apart, at most PARSE_WORKERS at a time, each
    under its own deadline (`limits.timeout_s`, from the start of its parse)."""
    slots = asyncio.Semaphore(PARSE_WORKERS)

    async def parsing(fetched: Fetched, url: str, lang: str) -> Parsed | FeedError:
        async with slots:
            try:
                return await asyncio.to_thread(
                    parse_apart, fetched, url, lang, now, limits.timeout_s
                )
            except FeedError as exc:
                return exc

    return parsing


# One fetch of every feed ----------------------------------------------------------------------


def gather(
    feeds: list[tuple[str, str]],
    limits: FeedLimits,
    first_run: FeedsSection,
    store: Store,
    now: datetime,
) -> list[FeedReport]:
    """Fetch every (location, lang) concurrently, store what is new, record each feed's health.

    Each feed is parsed as soon as it arrives, apart (see `parse_apart`), unless its body is
    the very one parsed last time. One feed's failure is recorded and logged; it never stops
    the others.
    """
    known = {url: store.feed_state(url) for url, _ in feeds}
    requests = [
        Request(url, state.etag, state.last_modified) if (state := known[url]) else Request(url)
        for url, _ in feeds
    ]
    langs = dict(feeds)
    parsing = _parser(limits, now)

    async def report(request: Request, outcome: Outcome) -> FeedReport:
        url = request.location
        return await _report(url, langs[url], outcome, known[url], parsing)

    reports = fetch_then(requests, limits, report)
    for done in reports:
        _record(done, known[done.url], first_run, store, now)
    return reports


async def _report(
    url: str, lang: str, result: Outcome, state: FeedState | None, parsing: Parsing
) -> FeedReport:
    report = FeedReport(url=url, lang=lang)
    if isinstance(result, FeedError):
        report.status, report.error = "error", str(result)
        return report
    if result is None:
        report.status = "not_modified"
        if state is not None:
            report.etag, report.last_modified = state.etag, state.last_modified
        return report
    report.etag, report.last_modified = result.etag, result.last_modified
    digest = hashlib.sha256(result.body).hexdigest()
    if state is not None and state.body_sha256 == digest:
        report.status = "not_modified"  # the same bytes as last time: nothing to parse again
        return report
    if result.moved_to:
        log.warning(
            "feed_moved", url=public_url(url), lang=lang, moved_to=public_url(result.moved_to)
        )
    parsed = await parsing(result, url, lang)
    if isinstance(parsed, FeedError):
        report.status, report.error = "error", str(parsed)
    else:
        report.posts, report.warning = parsed
        report.body_sha256 = digest
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
    baseline = {post.guid for post in report.posts if not post.url}  # link-less: archive only
    if state is None or state.first_fetched_at is None:
        baseline |= first_run_baseline(
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
        body_sha256=report.body_sha256,
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
    parsing = _parser(limits, now)
    for page in range(2, max_pages + 2):
        if not active:
            break
        pages = {_paged(r.url, page): r for r in active}

        async def parsed(request: Request, outcome: Outcome) -> Parsed | FeedError | None:
            if not isinstance(outcome, Fetched):
                return outcome
            report = pages[request.location]  # noqa: B023 (awaited within this iteration)
            return await parsing(outcome, report.url, report.lang)

        results = fetch_then([Request(location) for location in pages], limits, parsed)
        for report, result in zip(list(active), results, strict=True):
            posts, stop = _page_posts(result)
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


def _page_posts(result: Parsed | FeedError | None) -> tuple[list[Post], str]:
    if isinstance(result, FeedError):
        return [], "end of pages" if result.http_status == 404 else str(result)
    if result is None:
        return [], "not modified"
    posts, _ = result
    return posts, "" if posts else "empty page"
