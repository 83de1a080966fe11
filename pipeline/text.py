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
_KEPT_SPACES = {"\u00a0": "\ufdd0", "\u202f": "\ufdd1"}  # no-break spaces, and noncharacters
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_TRACKING = re.compile(r"^(utm_.*|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|_hsenc|_hsmi|yclid)$")
_EXCERPT_ENDS = ("[…]", "[&#8230;]", "[...]", "…", "...")
_CLEAN_TAG = re.compile(r'<(?:[^>"]|"[^"]*")*>')  # nh3 output quotes every attribute value

SAFE_URL_SCHEMES = {"http", "https"}
_CONTENT_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "em", "figcaption", "figure", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "q", "s", "strong", "sub",
    "sup", "table", "tbody", "td", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
_CONTENT_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "width", "height"}}


def collapse_spaces(text: str) -> str:
    """Runs of whitespace — CR and LF included — as one space, ends trimmed; the no-break
    spaces of French typography (U+00A0, U+202F) are kept as they are."""
    guarded = any(space in text for space in _KEPT_SPACES)
    if guarded:
        for space, guard in _KEPT_SPACES.items():
            text = text.replace(space, guard)
    text = " ".join(text.split())
    if guarded:
        for space, guard in _KEPT_SPACES.items():
            text = text.replace(guard, space)
    return text


def plain_text(fragment: str) -> str:
    """Visible text of an HTML fragment (or of plain text): tags dropped, entities decoded,
    whitespace collapsed (see `collapse_spaces`)."""
    if "<" not in fragment:
        return collapse_spaces(html.unescape(fragment))
    spaced = _BLOCK_TAG.sub(" <", fragment)
    stripped = nh3.clean(spaced, tags=set(), clean_content_tags={"script", "style"})
    return collapse_spaces(html.unescape(stripped))


def text_of_clean_html(clean: str) -> str:
    """`plain_text` for HTML that `sanitize_html` produced — well-formed, so a regular
    expression strips it faster than a second parse."""
    text = _CLEAN_TAG.sub("", _BLOCK_TAG.sub(" <", clean))
    return collapse_spaces(html.unescape(text))


def one_line(value: str, limit: int) -> str:
    """Plain text of `value` on one line, at most `limit` characters (cut at a word)."""
    return shorten(plain_text(value), limit)


def is_excerpt(text: str) -> bool:
    """Whether `text` ends like a truncated excerpt ("[…]", "…", "...")."""
    return text.rstrip().endswith(_EXCERPT_ENDS)


def shorten(text: str, limit: int) -> str:
    """`text` cut at a word boundary so that it fits `limit` characters, with an ellipsis
    (an excerpt's own "[…]" becomes "…")."""
    text = text.rstrip()
    for end in _EXCERPT_ENDS:
        if text.endswith(end):
            text = text.removesuffix(end).rstrip() + "…"
            break
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


_FRENCH_BEFORE = re.compile(r"(?<=[\w»)\]’\"$%€])[ \u00a0\u202f]?([:;!?]+)(?=\s|$)")
_FRENCH_QUOTES = (re.compile(r"«[ \u00a0\u202f]?"), re.compile(r"[ \u00a0\u202f]?»"))


def french_spacing(text: str) -> str:
    """French typography: a no-break space before : ; ! ? and inside « » (added where a feed
    left a plain space or none; times like 10:00 and URLs untouched)."""
    text = _FRENCH_BEFORE.sub(lambda m: "\u00a0" + m.group(1), text)
    opening, closing = _FRENCH_QUOTES
    return closing.sub("\u00a0»", opening.sub("«\u00a0", text))


def with_utm(url: str, source: str, campaign: str, content: str) -> str:
    """`url` with UTM parameters for an email link, never overwriting those already present."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {key for key, _ in query}
    wanted = [("utm_source", source), ("utm_medium", "email"), ("utm_campaign", campaign),
              ("utm_content", content)]  # fmt: skip
    query += [(key, value) for key, value in wanted if key not in present]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
