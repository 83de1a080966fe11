"""Untrusted feed text made safe: plain text from HTML, sanitized HTML, canonical http(s) URLs."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import nh3

_BLOCK_TAG = re.compile(
    r"<(?=/?(?:p|div|br|li|ul|ol|h[1-6]|tr|td|th|table|blockquote|figure|figcaption|section|"
    r"article|header|footer|pre|hr)\b)",
    re.IGNORECASE,
)
_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_TRACKING = re.compile(r"^(utm_.*|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|_hsenc|_hsmi|yclid)$")
_WP_MORE = re.compile(r"\s*(\[(…|&#8230;|\.\.\.)\]|…|\.\.\.)\s*$")

SAFE_URL_SCHEMES = {"http", "https"}
_CONTENT_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "em", "figcaption", "figure", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "q", "s", "strong", "sub",
    "sup", "table", "tbody", "td", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
_CONTENT_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "width", "height"}}


def plain_text(fragment: str) -> str:
    """Visible text of an HTML fragment (or of plain text): tags dropped, entities decoded,
    whitespace — CR and LF included — collapsed to single spaces."""
    if "<" not in fragment:
        return _SPACE.sub(" ", html.unescape(fragment)).strip()
    spaced = _BLOCK_TAG.sub(" <", fragment)
    stripped = nh3.clean(spaced, tags=set(), clean_content_tags={"script", "style"})
    return _SPACE.sub(" ", html.unescape(stripped)).strip()


def one_line(value: str, limit: int) -> str:
    """Plain text of `value` on one line, at most `limit` characters (cut at a word)."""
    return shorten(plain_text(value), limit)


def is_excerpt(text: str) -> bool:
    """Whether `text` ends like a truncated excerpt ("[…]", "…", "...")."""
    return _WP_MORE.search(text) is not None


def shorten(text: str, limit: int) -> str:
    """`text` cut at a word boundary so that it fits `limit` characters, with an ellipsis
    (an excerpt's own "[…]" becomes "…")."""
    if is_excerpt(text):
        text = _WP_MORE.sub("", text) + "…"
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    sentence_end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    if sentence_end > limit // 2:
        return cut[: sentence_end + 1]
    if " " in cut:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:.-–—") + "…"


def sanitize_html(fragment: str) -> str:
    """Feed HTML reduced to an allow-list: no script, style, iframe, form, event handler,
    nor any URL that is not http(s)."""
    return nh3.clean(
        fragment,
        tags=_CONTENT_TAGS,
        clean_content_tags={"script", "style", "iframe", "form", "noscript", "template"},
        attributes=_CONTENT_ATTRIBUTES,
        url_schemes=SAFE_URL_SCHEMES,
        link_rel="noopener noreferrer",
    )


def http_url(value: str | None) -> str | None:
    """`value` when it is an absolute http(s) URL without control characters, else None."""
    if not value:
        return None
    value = value.strip()
    if _CONTROL.search(value):
        return None
    parts = urlsplit(value)
    if parts.scheme.lower() not in SAFE_URL_SCHEMES or not parts.netloc:
        return None
    return value


def canonical_url(value: str | None) -> str | None:
    """An http(s) URL without its fragment and tracking parameters, host lower-cased."""
    url = http_url(value)
    if url is None:
        return None
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = urlencode([(k, v) for k, v in query if not _TRACKING.match(k)])
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", kept, ""))


_SECRET_PARAM = re.compile(r"key|token|secret|auth|pass|sig|session|code", re.IGNORECASE)
_ADDRESS_LIKE = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")


def public_url(url: str) -> str:
    """`url` fit for logs and reports: no user name or password, and the values of query
    parameters that look like credentials masked."""
    parts = urlsplit(url)
    if not parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    query = urlencode(
        [
            (k, "***" if _SECRET_PARAM.search(k) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
    )
    return urlunsplit((parts.scheme, host, parts.path, query, parts.fragment))


def redact_addresses(text: str, mask: Callable[[str], str]) -> str:
    """`text` with every email address replaced by `mask(address)`."""
    return _ADDRESS_LIKE.sub(lambda match: mask(match.group(0)), text)
