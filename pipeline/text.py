"""Untrusted feed text made safe: plain text from HTML, sanitized HTML, canonical http(s) URLs."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

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
_CLEAN_TAG = re.compile(r'<[^>"]*+(?:"[^"]*+"[^>"]*+)*+>')  # nh3 quotes every attribute value

SAFE_URL_SCHEMES = {"http", "https"}
_CONTENT_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "em", "figcaption", "figure", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "q", "s", "strong", "sub",
    "sup", "table", "tbody", "td", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
_CONTENT_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "width", "height"}}
_CONTENT_ONLY = nh3.Cleaner(  # built once (nh3.clean builds one a call: a third of its cost)
    tags=_CONTENT_TAGS,
    clean_content_tags={"script", "style", "iframe", "form", "noscript", "template"},
    attributes=_CONTENT_ATTRIBUTES,
    url_schemes=SAFE_URL_SCHEMES,
    link_rel="noopener noreferrer",
)
_TEXT_ONLY = nh3.Cleaner(tags=set(), clean_content_tags={"script", "style"})


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


MAX_DEPTH = 64
_W = "\t\n\f\r "  # HTML's whitespace (not Unicode's: U+00A0 belongs to a name or a value)
_TAG = re.compile(
    rf"<(/?)([A-Za-z][^{_W}/>]*+)"  # the tag name, ended where the HTML tokenizer ends it
    rf"(?:[{_W}/]++|[^{_W}/>][^{_W}/>=]*+"  # separators, or an attribute name …
    rf"(?:[{_W}]*+=[{_W}]*+(?:\"[^\"]*+\"|'[^']*+'|[^{_W}>]*+))?+)*+>"  # … and its value
)
_COMMENT_END = re.compile(r"--!?>")
_VOID_TAGS = {
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "image", "img",
    "input", "keygen", "link", "meta", "param", "source", "track", "wbr",
}  # fmt: skip


def cap_depth(fragment: str, max_depth: int = MAX_DEPTH) -> str:
    """`fragment` with its elements nested at most `max_depth` deep, in one linear pass.

    The tags of deeper elements are dropped (their text is kept); a `<` that starts no
    complete tag is escaped; comments and declarations are dropped; every element is closed
    explicitly, innermost first. Tags are delimited as the HTML tokenizer delimits them, so an
    HTML parser reading the result builds a tree no deeper than about `max_depth`, and the
    sanitizer — whose cost grows with the square of the depth — stays linear in the size.
    """
    tags = fragment.count("<")
    if tags <= max_depth or tags - fragment.count("</") <= max_depth:
        return fragment  # fewer opening tags than the cap: nothing nests deeper
    out: list[str] = []
    stack: list[tuple[str, bool]] = []  # (name, emitted), innermost last
    open_by_name: dict[str, int] = {}
    depth = 0  # emitted elements on the stack
    position, size = 0, len(fragment)
    while position < size:
        bracket = fragment.find("<", position)
        if bracket < 0:
            out.append(fragment[position:])
            break
        out.append(fragment[position:bracket])
        tag = _TAG.match(fragment, bracket)
        if tag is None:
            position = _past_non_tag(fragment, bracket, out)
            continue
        position = tag.end()
        name = tag.group(2).lower()
        if tag.group(1):  # an end tag closes its element and those inside it, or nothing
            while open_by_name.get(name):
                top, emitted = stack.pop()
                open_by_name[top] -= 1
                if emitted:
                    depth -= 1
                    out.append(f"</{top}>")
                if top == name:
                    break
        elif name in _VOID_TAGS:
            out.append(tag.group(0))
        else:
            emitted = depth < max_depth
            stack.append((name, emitted))
            open_by_name[name] = open_by_name.get(name, 0) + 1
            if emitted:
                depth += 1
                out.append(tag.group(0))
    out.extend(f"</{name}>" for name, emitted in reversed(stack) if emitted)
    return "".join(out)


def _past_non_tag(fragment: str, bracket: int, out: list[str]) -> int:
    """Where the text resumes after a `<` that starts no complete tag: after a comment or a
    declaration (dropped), else after the `<` (escaped). At the end when nothing ends it."""
    if fragment.startswith("<!--", bracket):
        for empty in ("<!-->", "<!--->"):
            if fragment.startswith(empty, bracket):
                return bracket + len(empty)
        end = _COMMENT_END.search(fragment, bracket + 4)
        return end.end() if end else len(fragment)
    if fragment.startswith(("<!", "<?", "</"), bracket):
        close = fragment.find(">", bracket + 2)
        return close + 1 if close >= 0 else len(fragment)
    follower = fragment[bracket + 1 : bracket + 2]
    if follower.isascii() and follower.isalpha():  # a tag the fragment ends inside of
        out.append(fragment[bracket:].replace("<", "&lt;"))
        return len(fragment)
    out.append("&lt;")
    return bracket + 1


def plain_text(fragment: str) -> str:
    """Visible text of an HTML fragment (or of plain text): tags dropped, entities decoded,
    whitespace collapsed (see `collapse_spaces`)."""
    if "<" not in fragment:
        return collapse_spaces(html.unescape(fragment))
    stripped = _TEXT_ONLY.clean(_BLOCK_TAG.sub(" <", cap_depth(fragment)))
    return collapse_spaces(html.unescape(stripped))


def text_of_clean_html(clean: str) -> str:
    """`plain_text` for HTML that `sanitize_html` produced — well-formed, so a regular
    expression strips it faster than a second parse."""
    text = _CLEAN_TAG.sub("", _BLOCK_TAG.sub(" <", clean))
    return collapse_spaces(html.unescape(text) if "&" in text else text)


def one_line(value: str, limit: int) -> str:
    """Plain text of `value` on one line, at most `limit` characters (cut at a word)."""
    return shorten(plain_text(value), limit)


def is_excerpt(text: str) -> bool:
    """Whether `text` ends like a truncated excerpt ("[…]", "…", "...")."""
    return text.rstrip().endswith(_EXCERPT_ENDS)


# Words whose period is no sentence end, nor a place to stop a cut, in English and French
# (compared in lower case), and titles written before a name ("M. Tremblay", "Mme Roy").
_ABBREVIATIONS = frozenset({
    "vs.", "v.", "e.g.", "i.e.", "etc.", "cf.", "approx.", "incl.", "no.", "nos.", "vol.", "fig.",
    "ch.", "ed.", "eds.", "al.", "st.", "ste.", "inc.", "ltd.", "co.", "corp.", "dept.", "est.",
    "jr.", "sr.", "mr.", "mrs.", "ms.", "dr.", "pr.", "prof.", "mt.", "ave.", "blvd.", "p.",
    "ex.", "env.", "av.", "bd.", "boul.", "chap.", "éd.", "ibid.", "mm.", "mme.", "mmes.",
    "mlle.", "mlles.", "n°.", "jan.", "feb.", "févr.", "mar.", "apr.", "avr.", "aug.",
    "sept.", "oct.", "nov.", "dec.", "déc."
})  # fmt: skip
_TITLES = frozenset({"M.", "MM.", "Mme", "Mmes", "Mlle", "Mlles", "Me", "Mr", "Mrs", "Ms", "Dr",
                     "Pr", "St", "Ste", "Sr", "Jr"})  # fmt: skip
_SENTENCE_END = re.compile(r"[.!?…](?=\s)")


def _is_abbreviation(word: str) -> bool:
    """Whether `word` (a run without spaces) is an abbreviation or an initial ("J.")."""
    word = word.lstrip("([{«“‘\"'").rstrip(",;:)]}»”’\"'")
    if word in _TITLES or (len(word) == 2 and word[0].isupper() and word[1] == "."):
        return True
    return word.lower() in _ABBREVIATIONS


def shorten(text: str, limit: int) -> str:
    """`text` cut so that it fits `limit` characters: at the last sentence end in its second
    half, else at a word boundary with an ellipsis (an excerpt's own "[…]" becomes "…").
    Neither cut falls just after an abbreviation ("vs.", "e.g.", "M.", "p. ex."…)."""
    text = text.rstrip()
    for end in _EXCERPT_ENDS:
        if text.endswith(end):
            text = text.removesuffix(end).rstrip() + "…"
            break
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    for found in reversed(list(_SENTENCE_END.finditer(text, 0, limit))):
        if found.start() <= limit // 2:
            break
        if text[found.start()] != "." or not _is_abbreviation(cut[: found.end()].split()[-1]):
            return text[: found.end()]
    words = cut.split(" ")
    if len(words) > 1:
        words.pop()  # the last word may be cut in the middle
        while len(words) > 1 and _is_abbreviation(words[-1]):
            words.pop()
    return " ".join(words).rstrip(" ,;:.-–—") + "…"


def sanitize_html(fragment: str) -> str:
    """Feed HTML reduced to an allow-list: no script, style, iframe, form, event handler,
    nor any URL that is not http(s); nested at most MAX_DEPTH deep (see `cap_depth`)."""
    return _CONTENT_ONLY.clean(cap_depth(fragment))


def http_url(value: str | None) -> str | None:
    """`value` when it is a well-formed absolute http(s) URL without control characters, else
    None."""
    found = _http_parts(value)
    return found[0] if found else None


def canonical_url(value: str | None) -> str | None:
    """An http(s) URL without its fragment and tracking parameters, host lower-cased."""
    found = _http_parts(value)
    if found is None:
        return None
    _, parts = found
    query = parse_qsl(parts.query, keep_blank_values=True) if parts.query else []
    kept = urlencode([(k, v) for k, v in query if not _TRACKING.match(k)])
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", kept, ""))


def _http_parts(value: str | None) -> tuple[str, SplitResult] | None:
    """`value` stripped, and its parts, when it is a well-formed absolute http(s) URL without
    control characters."""
    if not value:
        return None
    value = value.strip()
    if _CONTROL.search(value):
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (urllib checks the port, and the brackets of an IPv6 host)
    except ValueError:
        return None
    if parts.scheme.lower() not in SAFE_URL_SCHEMES or not parts.netloc:
        return None
    return value, parts


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


# French typography. A no-break space (U+00A0; a narrow one already there is kept) before
# : ; ! ? and % ‰ $ € £ and units after a number ("10 Go", "5 km", "10 $"), inside « ».
# URLs, e-mail addresses and `code` are left as they are; times like 10:30 have no space.
_FRENCH_UNTOUCHED = re.compile(
    r"`[^`]*`|\b(?:https?|mailto|ftp):\S+|www\.\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
)
_FRENCH_BEFORE = re.compile(r"(?<=[\w»)\]’\"$%€£‰…])[ \u00a0\u202f]?([:;!?]+)(?=\s|$)")
_FRENCH_UNITS = re.compile(
    r"(?<![\w.,-])(\d+(?:[.,]\d+)?)[ \u00a0\u202f]?"
    r"(%|‰|\$|€|£|(?:[kKMGT]i?o|[kMGT]b(?:it)?/s|[kMG]?Hz|[kMG]?W|km|cm|mm|kg|mg|min|ms|h|s|°C)(?!\w))"
)
_FRENCH_QUOTES = (re.compile(r"«[ \u00a0\u202f]?"), re.compile(r"[ \u00a0\u202f]?»"))
_NO_BREAK = ("\u00a0", "\u202f")


def _no_break(match: re.Match[str], before: int) -> str:
    """The no-break space to put at `before` in `match`: the one already there, else U+00A0."""
    space = match.string[before : before + 1]
    return space if space in _NO_BREAK else "\u00a0"


def _french_rules(text: str) -> str:
    text = _FRENCH_BEFORE.sub(lambda m: _no_break(m, m.start()) + m[1], text)
    text = _FRENCH_UNITS.sub(lambda m: m[1] + _no_break(m, m.end(1)) + m[2], text)
    opening, closing = _FRENCH_QUOTES
    text = opening.sub(lambda m: "«" + _no_break(m, m.start() + 1), text)
    return closing.sub(lambda m: _no_break(m, m.start()) + "»", text)


def french_spacing(text: str) -> str:
    """French typography (see above) applied to `text`, outside URLs, addresses and code;
    applying it twice changes nothing."""
    kept = list(_FRENCH_UNTOUCHED.finditer(text))
    if not kept:
        return _french_rules(text)
    pieces, start = [], 0
    for found in kept:
        pieces += [_french_rules(text[start : found.start()]), found[0]]
        start = found.end()
    return "".join([*pieces, _french_rules(text[start:])])


def _unchanged(text: str) -> str:
    return text


# Each catalog (templates/strings/<lang>.toml) names its language's rules: `typography = "…"`.
TYPOGRAPHY: dict[str, Callable[[str], str]] = {"plain": _unchanged, "french": french_spacing}


def with_utm(url: str, source: str, campaign: str, content: str) -> str:
    """`url` with UTM parameters for an email link, never overwriting those already present."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {key for key, _ in query}
    wanted = [("utm_source", source), ("utm_medium", "email"), ("utm_campaign", campaign),
              ("utm_content", content)]  # fmt: skip
    query += [(key, value) for key, value in wanted if key not in present]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
