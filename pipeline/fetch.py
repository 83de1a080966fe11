"""Fetch feed bytes safely: a hard deadline, byte caps, bounded redirects, conditional GET.

feedparser's own fetcher has no timeout, so buzz fetches with httpx (asyncio, so that the
deadline cancels a request wherever it is — even a server that drips its headers one byte at a
time) and decompresses itself, so that the cap on decompressed bytes holds against a gzip bomb
without ever holding more than the cap in memory.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from pipeline import __version__
from pipeline.errors import FeedError
from pipeline.text import http_url

MAX_REDIRECTS = 5
MAX_CONCURRENT_FETCHES = 32
ATTEMPTS = 3
CONNECT_TIMEOUT_S = 10.0
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
_CHARSET = re.compile(rb"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
_XML_DECLARED = re.compile(rb"^(\s*<\?xml[^>]*?encoding\s*=\s*[\"'])([\w.:-]+)([\"'])", re.I)
_ENTITY_DECLARATION = re.compile(rb"<!ENTITY", re.IGNORECASE)
_ROOT_START = re.compile(rb"<(?![?!])")


@dataclass(frozen=True, slots=True)
class FeedLimits:
    """How long and how much one feed may cost."""

    timeout_s: float
    max_bytes: int
    user_agent: str


@dataclass(frozen=True, slots=True)
class Fetched:
    """A feed's body (UTF-8 unless declared otherwise) and what the next request needs."""

    body: bytes
    content_type: str
    etag: str | None = None
    last_modified: str | None = None
    warning: str | None = None
    moved_to: str | None = None


Outcome = Fetched | FeedError | None
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Request:
    """One feed to fetch, with the validators of its last good fetch."""

    location: str
    etag: str | None = None
    last_modified: str | None = None


def user_agent(contact_url: str) -> str:
    """The User-Agent buzz sends: its name, version and where to reach the sender."""
    return f"buzz/{__version__} (+{contact_url})"


def fetch_all(requests: Sequence[Request], limits: FeedLimits) -> list[Outcome]:
    """Fetch every request concurrently (bounded); for each: the bytes, None (not modified),
    or the FeedError that says why not. Never raises for one feed's failure."""
    return fetch_each(requests, limits, lambda _, outcome: outcome)


def fetch_each(
    requests: Sequence[Request], limits: FeedLimits, then: Callable[[Request, Outcome], T]
) -> list[T]:
    """`fetch_all`, handing each outcome to `then` as soon as it arrives (so that parsing one
    feed overlaps with waiting for the others); returns what `then` returned, in order."""
    return asyncio.run(_fetch_each(requests, limits, then))


async def _fetch_each(
    requests: Sequence[Request], limits: FeedLimits, then: Callable[[Request, Outcome], T]
) -> list[T]:
    slots = asyncio.Semaphore(MAX_CONCURRENT_FETCHES)
    timeout = httpx.Timeout(limits.timeout_s, connect=min(CONNECT_TIMEOUT_S, limits.timeout_s))
    headers = {
        "User-Agent": limits.user_agent,
        "Accept": ACCEPT,
        "Accept-Encoding": "gzip, deflate",
    }
    async with httpx.AsyncClient(
        timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS, headers=headers
    ) as client:

        async def one(request: Request) -> T:
            async with slots:
                try:
                    outcome: Outcome = await _fetch_one(client, request, limits)
                except FeedError as exc:
                    outcome = FeedError(str(exc))  # without the traceback, which holds the body
            return then(request, outcome)

        return list(await asyncio.gather(*(one(request) for request in requests)))


async def _fetch_one(
    client: httpx.AsyncClient, request: Request, limits: FeedLimits
) -> Fetched | None:
    if http_url(request.location) is None:
        return _read_local(Path(request.location), limits)
    retrying = AsyncRetrying(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(ATTEMPTS) | stop_before_delay(limits.timeout_s),
        wait=wait_exponential_jitter(multiplier=0.5, max=4),
        reraise=True,
    )
    try:
        async with asyncio.timeout(limits.timeout_s):
            async for attempt in retrying:
                with attempt:
                    return await _get(client, request, limits)
    except TimeoutError:
        earlier = retrying.statistics.get("attempt_number", 1) > 1
        raise FeedError(
            f"no complete answer within feeds.timeout_s ({limits.timeout_s:g} s)"
            + (" after transient errors" if earlier else "")
        ) from None
    except httpx.TooManyRedirects:
        raise FeedError(f"more than {MAX_REDIRECTS} redirects (a redirect loop?)") from None
    except httpx.UnsupportedProtocol:
        raise FeedError("redirected to a URL that is not http(s)") from None
    except _HttpStatus as exc:
        raise FeedError(str(exc)) from None
    except httpx.HTTPError as exc:
        raise FeedError(f"network error: {type(exc).__name__}: {exc}".rstrip(": ")) from None
    raise AssertionError("unreachable: the retry loop returns or raises")


class _HttpStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _transient(exc: BaseException) -> bool:
    """Retry network failures and server errors; never a client error or a bad body."""
    if isinstance(exc, _HttpStatus):
        return exc.status >= 500
    return isinstance(exc, httpx.TransportError) and not isinstance(exc, httpx.UnsupportedProtocol)


async def _get(client: httpx.AsyncClient, request: Request, limits: FeedLimits) -> Fetched | None:
    headers = {}
    if request.etag:
        headers["If-None-Match"] = request.etag
    if request.last_modified:
        headers["If-Modified-Since"] = request.last_modified
    async with client.stream("GET", request.location, headers=headers) as response:
        if response.status_code == 304:
            return None
        if response.status_code >= 400:
            raise _HttpStatus(response.status_code)
        if response.status_code != 200:
            raise FeedError(f"unexpected HTTP {response.status_code}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_bytes:
            raise _too_big(limits)
        decoder = _Decoder(response.headers.get("content-encoding", ""), limits)
        async for chunk in response.aiter_raw():
            decoder.feed(chunk)
        body = decoder.finish()
        moved = [r for r in response.history if r.status_code in (301, 308)]
        content_type = response.headers.get("content-type", "application/xml")
        utf8, warning = to_utf8(body, content_type)
        return Fetched(
            body=utf8,
            content_type=_with_utf8(content_type),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            warning=warning,
            moved_to=str(response.url) if moved else None,
        )


def _too_big(limits: FeedLimits) -> FeedError:
    return FeedError(f"feed is larger than feeds.max_bytes ({limits.max_bytes} bytes)")


class _Decoder:
    """Content-Encoding undone incrementally, never producing more than the cap."""

    def __init__(self, encoding: str, limits: FeedLimits) -> None:
        encoding = encoding.strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise FeedError(f"unsupported Content-Encoding {encoding!r}")
        # wbits 47 reads a gzip or a zlib header; raw deflate is not a thing servers send.
        self._zlib = zlib.decompressobj(47) if encoding not in ("", "identity") else None
        self._limits = limits
        self._parts: list[bytes] = []
        self._size = 0
        self._raw = 0

    def feed(self, chunk: bytes) -> None:
        self._raw += len(chunk)
        if self._raw > self._limits.max_bytes:
            raise _too_big(self._limits)
        if self._zlib is None:
            self._keep(chunk)
            return
        data = chunk
        try:
            while data:
                room = self._limits.max_bytes - self._size + 1
                self._keep(self._zlib.decompress(data, room))
                data = self._zlib.unconsumed_tail
        except zlib.error as exc:
            raise FeedError(f"corrupt compressed body: {exc}") from None

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limits.max_bytes:
            raise _too_big(self._limits)
        self._parts.append(data)

    def finish(self) -> bytes:
        if self._zlib is not None:
            self._keep(self._zlib.flush(self._limits.max_bytes - self._size + 1))
        return b"".join(self._parts)


def _read_local(path: Path, limits: FeedLimits) -> Fetched:
    try:
        with path.open("rb") as handle:
            body = handle.read(limits.max_bytes + 1)
    except OSError as exc:
        raise FeedError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(body) > limits.max_bytes:
        raise _too_big(limits)
    utf8, warning = to_utf8(body, "application/xml")
    return Fetched(body=utf8, content_type="application/xml; charset=utf-8", warning=warning)


# Character sets -------------------------------------------------------------------------------


def to_utf8(body: bytes, content_type: str) -> tuple[bytes, str | None]:
    """The body as UTF-8 (see `_transcode`), after refusing entity declarations."""
    utf8, warning = _transcode(body, content_type)
    refuse_entities(utf8)
    return utf8, warning


def _transcode(body: bytes, content_type: str) -> tuple[bytes, str | None]:
    """The body re-encoded as UTF-8, its XML declaration saying so, and a warning when the
    declared charset was wrong or missing.

    Bytes that decode as UTF-8 are UTF-8, whatever the headers claim: a page of real
    ISO-8859-1 text with accents is practically never valid UTF-8, while UTF-8 served under a
    Latin-1 label is a common misconfiguration that would otherwise turn "Café" into "CafÃ©".
    """
    http_charset = _charset(_CHARSET.search(content_type.encode("latin-1", "replace")))
    xml_charset = _charset(_XML_DECLARED.search(body[:512]), group=2)
    declared = http_charset or xml_charset
    if body.startswith((b"\xff\xfe", b"\xfe\xff")) or declared in (
        "utf-16",
        "utf-16le",
        "utf-16be",
    ):
        text = _decode(body, "utf-16")
        return _declare_utf8(text), None
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        charset = declared if declared not in (None, "utf-8", "utf8") else "cp1252"
        text = _decode(body, charset)
        warning = None if declared == charset else f"body is not valid UTF-8; read as {charset}"
        return _declare_utf8(text), warning
    lying = declared not in (None, "utf-8", "utf8", "us-ascii", "ascii") and not body.isascii()
    warning = f"declared charset {declared} but the body is UTF-8; read as UTF-8" if lying else None
    return _declare_utf8(text), warning


def refuse_entities(body: bytes) -> None:
    """Refuse XML that declares entities: the door to external-entity reads and to
    exponential entity expansion. Feeds have no need of them."""
    start = _ROOT_START.search(body)
    prolog = body[: start.start()] if start else body
    if _ENTITY_DECLARATION.search(prolog):
        raise FeedError("XML declares entities (<!ENTITY>): refused")


def _charset(match: re.Match[bytes] | None, group: int = 1) -> str | None:
    return match.group(group).decode("ascii").lower() if match else None


def _decode(body: bytes, charset: str) -> str:
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        raise FeedError(f"unknown charset {charset!r}") from None


def _declare_utf8(text: str) -> bytes:
    data = text.lstrip("\ufeff").encode("utf-8")
    return _XML_DECLARED.sub(rb"\1utf-8\3", data, count=1)


def _with_utf8(content_type: str) -> str:
    media_type = content_type.split(";", 1)[0].strip() or "application/xml"
    return f"{media_type}; charset=utf-8"
