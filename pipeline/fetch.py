"""Fetch feed bytes safely: a hard deadline, byte caps, bounded redirects, conditional GET.

feedparser's own fetcher has no timeout, so buzz fetches with httpx (asyncio, so that the
deadline cancels a request wherever it is — even a server that drips its headers one byte at a
time) and decompresses itself, so that the cap on decompressed bytes holds against a gzip bomb
without ever holding more than the cap in memory.
"""

from __future__ import annotations

import asyncio
import codecs
import re
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import charset_normalizer
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
_XML_SPACE = re.compile(rb"[ \t\r\n]*+")
_DOCTYPE_HEAD = re.compile(rb"""(?:[^"'\[>]++|"[^"]*+"|'[^']*+')*+""")  # name, external id


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
    """`fetch_all`, handing each outcome to `then` as soon as it arrives; returns what `then`
    returned, in order. `then` runs on the event loop: it must be quick (see `fetch_then`)."""

    async def at_once(request: Request, outcome: Outcome) -> T:
        return then(request, outcome)

    return fetch_then(requests, limits, at_once)


def fetch_then(
    requests: Sequence[Request],
    limits: FeedLimits,
    then: Callable[[Request, Outcome], Awaitable[T]],
) -> list[T]:
    """`fetch_each` with a coroutine for `then`, awaited as soon as its outcome arrives, while
    the other fetches go on (so that parsing one feed, elsewhere, overlaps with waiting for
    the others); returns what `then` returned, in order."""
    return asyncio.run(_fetch_each(requests, limits, then))


async def _fetch_each(
    requests: Sequence[Request],
    limits: FeedLimits,
    then: Callable[[Request, Outcome], Awaitable[T]],
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
                    # without the traceback, which holds the body
                    outcome = FeedError(str(exc), http_status=exc.http_status)
            return await then(request, outcome)

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
        raise FeedError(str(exc), http_status=exc.status) from None
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

_BOMS = (  # UTF-32 before UTF-16: FF FE 00 00 is UTF-32's
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)
_UNICODE_LABELS = {
    "utf-8", "utf8", "utf-16", "utf16", "utf-16le", "utf-16be", "utf-32", "utf32", "utf-32le",
    "utf-32be", "ucs-2", "ucs-4", "iso-10646-ucs-2", "iso-10646-ucs-4", "unicode",
}  # fmt: skip
# Labels read as a superset, as browsers do: Latin-1 and ASCII documents are windows-1252.
_SUPERSETS = {"iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin1": "cp1252",
              "latin-1": "cp1252", "l1": "cp1252", "us-ascii": "cp1252", "ascii": "cp1252",
              "gb2312": "gb18030", "gbk": "gb18030", "shift_jis": "cp932", "sjis": "cp932",
              "x-sjis": "cp932", "euc-kr": "cp949", "ks_c_5601-1987": "cp949"}  # fmt: skip
_FALLBACK = "cp1252"  # the web's reading of a document that declares nothing usable


def to_utf8(body: bytes, content_type: str) -> tuple[bytes, str | None]:
    """The body as UTF-8, its XML declaration saying so (see `decode`), after refusing entity
    declarations (see `refuse_entities`)."""
    utf8, warning = _as_utf8(body, content_type)
    refuse_entities(utf8)
    return _XML_DECLARED.sub(rb"\1utf-8\3", utf8, count=1), warning


def _as_utf8(body: bytes, content_type: str) -> tuple[bytes, str | None]:
    """The body in UTF-8, and a warning when its declared charset was wrong or missing.

    In order: a byte-order mark; the pattern of zero bytes of UTF-16 or UTF-32 without one
    (an XML document starts with "<" or a space); bytes that are valid UTF-8, which are UTF-8
    whatever the labels claim (a page of legacy-encoded text with accents is practically never
    valid UTF-8, while UTF-8 served as Latin-1 is a common misconfiguration that would turn
    "Café" into "CafÃ©"); the charsets declared in the Content-Type and in the XML declaration
    that decode the body (the likelier of two that both do, when they disagree); else the
    likeliest charset detected (charset-normalizer), windows-1252 when nothing is likelier.
    """
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return _recode(body[len(bom) :], codec), None
    if sniffed := _sniff_wide(body[:4]):
        return _recode(body, sniffed), None
    http_label = _label(_CHARSET.search(content_type.encode("latin-1", "replace")))
    xml_label = _label(_XML_DECLARED.search(body[:1024]), group=2)
    declared = http_label or xml_label
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        lying = declared not in (None, "utf-8", "utf8") and not body.isascii()
        return body, (f"declared charset {declared} but the body is UTF-8; read as UTF-8"
                      if lying else None)  # fmt: skip
    decoding = (_decodes(body, label) for label in (http_label, xml_label))
    fitting = list(dict.fromkeys(found for found in decoding if found))
    if len(fitting) == 1:
        return _recode(body, fitting[0]), None
    if len(fitting) > 1:
        return _recode(body, _likeliest(body, fitting) or fitting[0]), None
    detected = _likeliest(body, None) or _FALLBACK
    said = f"declared as {declared}" if declared else "declares no charset"
    return _recode(body, detected), f"body is not valid UTF-8 and {said}; read as {detected}"


def _sniff_wide(head: bytes) -> str | None:
    """UTF-16 or UTF-32 without a byte-order mark, told by where the zero bytes of the first
    (ASCII) character fall; or EBCDIC's "<?xm"."""
    if len(head) < 4:
        return None
    zeros = (head[0] == 0, head[1] == 0, head[2] == 0, head[3] == 0)
    return {
        (True, True, True, False): "utf-32-be",
        (False, True, True, True): "utf-32-le",
        (True, False, True, False): "utf-16-be",
        (False, True, False, True): "utf-16-le",
    }.get(zeros) or ("cp037" if head == b"\x4c\x6f\xa7\x94" else None)


def _label(match: re.Match[bytes] | None, group: int = 1) -> str | None:
    return match.group(group).decode("ascii").lower() if match else None


def _decodes(body: bytes, label: str | None) -> str | None:
    """The codec `label` names when it is an ASCII-compatible one that decodes `body`."""
    if label is None or label in _UNICODE_LABELS:
        return None
    codec = _SUPERSETS.get(label, label)
    try:
        body.decode(codec)
    except (LookupError, UnicodeDecodeError):
        return None
    return codec


def _likeliest(body: bytes, among: list[str] | None) -> str | None:
    """The charset in which `body` reads most like text, among `among` (any when None);
    windows-1252 when it reads as well as the best."""
    matches = charset_normalizer.from_bytes(body, cp_isolation=among)
    best = matches.best()
    if best is None:
        return None
    for match in matches:
        if match.encoding == _FALLBACK and (match.chaos, -match.coherence) <= (
            best.chaos,
            -best.coherence,
        ):
            return _FALLBACK
    return str(best.encoding)


def _recode(body: bytes, codec: str) -> bytes:
    return body.decode(codec, errors="replace").lstrip("\ufeff").encode("utf-8")


def refuse_entities(body: bytes) -> None:
    """Refuse XML whose document type declares entities: the door to external-entity reads
    and to exponential entity expansion. Feeds have no need of them.

    The prolog is read as an XML parser reads it (`body` is UTF-8): whitespace, the XML
    declaration, processing instructions and comments are stepped over, so that none of them
    hides the DOCTYPE; and once a DOCTYPE opens an internal subset, an `<!ENTITY` anywhere
    after it is refused (quoted strings and comments inside the subset cannot hide one).
    """
    position = 0
    while True:
        position = _end_of(_XML_SPACE, body, position)
        for opening, closing in ((b"<?", b"?>"), (b"<!--", b"-->")):
            if body.startswith(opening, position):
                end = body.find(closing, position + len(opening))
                if end < 0:
                    return  # not well-formed: no XML parser reads further
                position = end + len(closing)
                break
        else:
            break
    head = body[position : position + 9].upper()
    if head.startswith(b"<!ENTITY"):
        raise FeedError("XML declares entities (<!ENTITY>): refused")
    if head == b"<!DOCTYPE":
        subset = _end_of(_DOCTYPE_HEAD, body, position + 9)
        if body.startswith(b"[", subset) and _ENTITY_DECLARATION.search(body, subset):
            raise FeedError("XML declares entities (<!ENTITY>): refused")


def _end_of(pattern: re.Pattern[bytes], body: bytes, position: int) -> int:
    """Where `pattern`, which may match nothing, ends when matched at `position`."""
    match = pattern.match(body, position)
    return match.end() if match else position


def _with_utf8(content_type: str) -> str:
    media_type = content_type.split(";", 1)[0].strip() or "application/xml"
    return f"{media_type}; charset=utf-8"
