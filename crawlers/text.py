"""Cleaning text and timestamps into the shape the record schema expects."""

from __future__ import annotations

import hashlib
import html
import itertools
import re
from datetime import UTC, date, datetime
from typing import Any

_URL = re.compile(r"https?://[^\s<>\"')\]]+", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w/])@([A-Za-z0-9_.\-]+(?:@[A-Za-z0-9.\-]+\.[A-Za-z]{2,})?)")
_SPACES = re.compile(r"[ \t\u00a0]+")
_NEWLINES = re.compile(r"\s*\n\s*")
_LOOKS_HTML = re.compile(r"<(?:/?[a-zA-Z][a-zA-Z0-9]*)(?:\s[^<>]*)?/?>")


# Regular expressions rather than an HTML parser: post bodies are small, well-formed
# fragments, and html.parser costs ~10x more per post (see bench/crawl.py).
_SKIP = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_BLOCK = re.compile(r"</?(?:p|br|div|li|ul|ol|blockquote|h[1-6]|tr|pre)\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
_ANCHOR = re.compile(r"<a\s([^>]*)>", re.IGNORECASE)
_ATTR = re.compile(r"""([\w:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""")
# Mastodon marks mention and hashtag links; those are not shared URLs.
_NOT_SHARED = frozenset({"mention", "hashtag", "u-url"})


def _hrefs(markup: str) -> list[str]:
    hrefs = []
    for attributes in _ANCHOR.findall(markup):
        attrs = {m[0].lower(): m[1] or m[2] or m[3] for m in _ATTR.findall(attributes)}
        href = attrs.get("href")
        if href and not _NOT_SHARED & set(attrs.get("class", "").split()):
            hrefs.append(html.unescape(href))
    return hrefs


def _tidy(text: str) -> str:
    text = _SPACES.sub(" ", text)
    return _NEWLINES.sub("\n", text).strip()


def html_to_text(markup: str) -> tuple[str, list[str]]:
    """Strip HTML to readable text and unescape entities.

    Returns:
        The text (block elements become line breaks) and the links' hrefs.
    """
    if not _LOOKS_HTML.search(markup):
        # Plain text may still carry entities ("&amp;"), and is far cheaper this way.
        return _tidy(html.unescape(markup)), []
    hrefs = _hrefs(markup) if "<a" in markup or "<A" in markup else []
    text = _TAG.sub("", _BLOCK.sub("\n", _SKIP.sub("", markup)))
    return _tidy(html.unescape(text)), hrefs


def extract_urls(text: str, extra: list[str] | None = None) -> list[str]:
    """URLs in text plus extra known ones, deduplicated in order."""
    found = [u.rstrip(".,;:!?") for u in _URL.findall(text)]
    seen: dict[str, None] = {}
    for url in [*(extra or []), *found]:
        if url.startswith(("http://", "https://")):
            seen.setdefault(url, None)
    return list(seen)


def extract_mentions(text: str, extra: list[str] | None = None) -> list[str]:
    """``@handles`` in text plus extra known ones, as ``@handle``, deduplicated."""
    seen: dict[str, None] = {}
    for name in [*(extra or []), *_MENTION.findall(text)]:
        name = name.strip().rstrip(".")
        if name:
            seen.setdefault("@" + name.lstrip("@"), None)
    return list(seen)


_langid: Any = None
_NOT_LETTER = re.compile(r"[\W\d_]+")
MIN_LANG_CHARS = 25


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of the text's language, or ``None`` when it is too short to tell."""
    global _langid
    letters = _URL.sub("", text)
    if len(_NOT_LETTER.sub("", letters)) < MIN_LANG_CHARS or len(letters.split()) < 4:
        return None
    if _langid is None:
        # Import on first use: the model takes a moment to load.
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        _langid = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    lang, prob = _langid.classify(letters)
    return str(lang) if prob >= 0.5 else None


def parse_timestamp(value: Any) -> datetime | None:
    """Parse a timestamp from an API into tz-aware UTC.

    Accepts ISO 8601 strings (``Z`` or an offset; naive means UTC, which is
    what Lemmy and schema.org dates without a zone mean), bare dates, Unix
    seconds, and ``datetime``/``date`` objects.

    Returns:
        The UTC datetime, or ``None`` for a missing or unparseable value.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{9,11}(\.\d+)?", text):
            return datetime.fromtimestamp(float(text), UTC)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            from email.utils import parsedate_to_datetime

            try:
                parsed = parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                return None
    else:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def stable_id(*parts: Any) -> str:
    """A short stable id for records the source gives no id for."""
    return hashlib.sha1("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:16]


_NORMALISE = re.compile(r"https?://\S+|@[\w.\-@]+|[^\w\s]")
_REPOST_PREFIX = re.compile(r"^\s*(rt|repost|reposted|via)\b[:\s]*", re.IGNORECASE)


def shingle_key(text: str) -> str:
    """The text reduced to what survives a repost: no links, mentions, case or punctuation."""
    text = _REPOST_PREFIX.sub("", text)
    return " ".join(_NORMALISE.sub(" ", text.lower()).split())


def shingles(key: str) -> set[str]:
    """Word 2-shingles of a normalised text (the unit near-duplicate checks compare)."""
    words = key.split()
    if len(words) < 2:
        return set(words)
    return {f"{a} {b}" for a, b in itertools.pairwise(words)}


def shingle_hashes(key: str) -> set[int]:
    """:func:`shingles` as Python hashes of the word pairs: what the duplicate check keeps.

    Hashing the ``(word, word)`` tuples is cheaper than building a string per
    pair, and integer sets intersect faster and take less memory than string
    sets. Two different pairs colliding in 64 bits is negligible. Like
    :func:`minhash_bands`, the values only compare within one process.
    """
    words = key.split()
    if len(words) < 2:
        return {hash((w,)) for w in words}
    return set(map(hash, itertools.pairwise(words)))


BOTTOM_K = 3


def minhash_bands(grams: set[str]) -> list[int]:
    """A bottom-k sketch: the k smallest shingle hashes. Near-identical sets share at least one.

    Cheaper than k independent MinHash permutations (one hash per shingle and a
    sort, all in C), and only used to find candidates, which are then checked
    with :func:`jaccard`. Uses Python's ``hash``, so sketches compare only
    within one process (all the per-run duplicate check needs).
    """
    return sorted(map(hash, grams))[:BOTTOM_K]


def bottom_k(hashes: set[int]) -> list[int]:
    """:func:`minhash_bands` of a :func:`shingle_hashes` set (already hashes: no second hash)."""
    return sorted(hashes)[:BOTTOM_K]


def jaccard(a: set[Any], b: set[Any]) -> float:
    """Overlap of two shingle sets, 0..1."""
    if not a and not b:
        return 1.0
    # |a | b| = |a| + |b| - |a & b|: one set operation instead of two.
    common = len(a & b)
    return common / (len(a) + len(b) - common)
