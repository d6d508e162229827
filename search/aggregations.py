"""The scorecard's aggregations: what each one answers, and the shape both stores give it.

``Store.aggregate(name, query=..., brand=..., since=..., until=...)`` computes these inside
the store (Elasticsearch aggregations; SQL ``GROUP BY`` and FTS5 vocabulary tables on
SQLite), never by reading every post into Python. Each backend only gathers raw rows; the
functions here turn them into the result, a JSON-able ``dict``, so the two stores cannot
disagree on shape, order, rounding or tie-breaking:

* ``timeline``: posts per bucket x touchpoint x moment (:func:`choose_interval` picks the
  bucket width from the period); only buckets with posts are listed.
* ``moment_share``: per touchpoint, volume and the shares of misery and magic, for the
  period and for the previous period of the same length.
* ``top_authors``: the authors with the widest reach (most followers on any of their posts)
  and those with the most complaints (:data:`COMPLAINT_QUERY`).
* ``standout_terms``: per touchpoint, the words of the post text that stand out in its
  misery posts against every post of the period (:func:`g2_2x2`).
* ``volume``: posts per source x language.

The filters are the same for all: ``query`` (the :mod:`search.query` language, blank for
every post), ``brand``, and ``created_at`` in ``[since, until)``. ``timeline`` and
``moment_share`` need a period: without ``since`` it is the :data:`DEFAULT_PERIOD` before
``until`` (default: now). The others cover all time unless given one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from moments.errors import UsageError

#: Every aggregation, by the name ``moments search --agg NAME`` takes, with what it answers.
AGGREGATIONS: dict[str, str] = {
    "timeline": "posts per time bucket x touchpoint x moment (hourly up to 3 days, daily up to 90, weekly beyond)",
    "moment_share": "per touchpoint: volume, misery share and magic share, beside the previous period of that length",
    "top_authors": "authors with the widest reach (followers) and with the most complaints (negative or misery posts)",
    "standout_terms": "per touchpoint: words that stand out in its misery posts against every post of the period",
    "volume": "posts per source x language",
}

#: The period of ``timeline`` and ``moment_share`` when no ``since`` is given.
DEFAULT_PERIOD = timedelta(days=7)
#: Periods up to this long are bucketed per hour; up to :data:`DAILY_UP_TO` per day; longer ones per week.
HOURLY_UP_TO = timedelta(days=3)
DAILY_UP_TO = timedelta(days=90)
#: Authors in each list of ``top_authors``.
TOP_AUTHORS = 10
#: Terms per touchpoint in ``standout_terms``.
TOP_TERMS = 10
#: A term must be in at least this many misery posts of a touchpoint to stand out (Elasticsearch's default too).
MIN_TERM_DOCS = 3
#: What counts as a complaint in ``top_authors`` (misery posts are negative by construction; this says it anyway).
COMPLAINT_QUERY = "sentiment:negative OR moment:misery"
#: The free-text field ``standout_terms`` reads (Elasticsearch ``significant_text`` takes one field).
STANDOUT_FIELD = "text"

#: Words too common to say anything (English function words, and social-media filler); never a standout term.
STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against all almost also am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each
    even ever every few for from further get gets got had hadn't has hasn't have haven't having he he'd he'll he's her
    here here's hers herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself just
    let's like me more most much must mustn't my myself no nor not now of off on once one only or other ought our ours
    ourselves out over own really same shan't she she'd she'll she's should shouldn't so some such than that that's
    the their theirs them themselves then there there's these they they'd they'll they're they've this those through
    to too under until up upon us very was wasn't we we'd we'll we're we've were weren't what what's when when's where
    where's which while who who's whom why why's will with won't would wouldn't you you'd you'll you're you've your
    yours yourself yourselves yet via still already since though although however etc ok okay oh yes yeah lol lmao
    omg pls please thanks thank rt amp im ive dont cant wont didnt doesnt isnt wasnt arent thats theres youre hey hi
    u ur gonna wanna gotta go going went gone come came make made say said know think today yesterday tomorrow
    day days time back way well new good great bad
    """.split()  # noqa: SIM905 - a word list reads better as text
)


def check_name(name: str) -> str:
    """``name`` if it is an aggregation.

    Raises:
        UsageError: It is not (exit 2), listing the names.
    """
    if name not in AGGREGATIONS:
        raise UsageError(f"unknown aggregation {name!r}; aggregations: {', '.join(AGGREGATIONS)}")
    return name


def utc_millis(value: datetime) -> datetime:
    """Aware UTC (naive is UTC), cut to the millisecond, as both stores compare dates."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def period(since: datetime | None, until: datetime | None, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The ``[since, until)`` of a period aggregation: ``until`` defaults to now, ``since`` to a week before.

    Raises:
        UsageError: ``since`` is not before ``until``.
    """
    end = utc_millis(until if until is not None else (now or datetime.now(UTC)))
    start = utc_millis(since) if since is not None else end - DEFAULT_PERIOD
    if start >= end:
        raise UsageError(f"the period must start before it ends: {start.isoformat()} >= {end.isoformat()}")
    return start, end


def iso(value: datetime) -> str:
    """An instant as ISO 8601 UTC to the millisecond (``2026-11-01T08:00:00.000Z``), as results show it."""
    value = utc_millis(value)
    return f"{value.year:04d}-{value:%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


# ------------------------------------------------------------------------------ timeline


@dataclass(frozen=True)
class Interval:
    """A bucket width for ``timeline``: buckets start at ``offset_ms + k * width_ms`` since the Unix epoch, in UTC.

    Fixed widths, never calendar ones, so both stores cut identical buckets (Elasticsearch
    ``fixed_interval`` plus ``offset``; SQLite integer arithmetic on milliseconds).
    """

    name: str
    width_ms: int
    offset_ms: int = 0

    def start(self, millis: int) -> int:
        """The start (ms since the epoch) of the bucket holding ``millis``."""
        return (millis - self.offset_ms) // self.width_ms * self.width_ms + self.offset_ms


_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
HOUR = Interval("hour", _HOUR_MS)
DAY = Interval("day", _DAY_MS)
#: Weeks start on Monday 00:00 UTC: the epoch was a Thursday, so weeks are offset by four days.
WEEK = Interval("week", 7 * _DAY_MS, offset_ms=4 * _DAY_MS)


def choose_interval(since: datetime, until: datetime) -> Interval:
    """Hourly for periods up to 3 days, daily up to 90 days, weekly beyond."""
    length = until - since
    if length <= HOURLY_UP_TO:
        return HOUR
    if length <= DAILY_UP_TO:
        return DAY
    return WEEK


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_millis(millis: int) -> datetime:
    """Milliseconds since the epoch as an aware UTC datetime."""
    return _EPOCH + timedelta(milliseconds=millis)


def timeline_result(
    rows: Iterable[tuple[int, str, str, int]], *, since: datetime, until: datetime, interval: Interval
) -> dict[str, Any]:
    """``timeline`` from ``(bucket start ms, touchpoint, moment, count)`` rows, by start, touchpoint, moment."""
    buckets = sorted((start, touchpoint, moment, count) for start, touchpoint, moment, count in rows if count)
    return {
        "name": "timeline",
        "since": iso(since),
        "until": iso(until),
        "interval": interval.name,
        "buckets": [
            {"start": iso(from_millis(start)), "touchpoint": touchpoint, "moment": moment, "count": count}
            for start, touchpoint, moment, count in buckets
        ],
    }


# ------------------------------------------------------------------------------ moment_share


def _period_shares(moments: Mapping[str, int]) -> dict[str, Any]:
    volume = sum(moments.values())
    misery, magic = moments.get("misery", 0), moments.get("magic", 0)
    return {
        "volume": volume,
        "misery": misery,
        "magic": magic,
        "misery_share": round(misery / volume, 6) if volume else 0.0,
        "magic_share": round(magic / volume, 6) if volume else 0.0,
    }


def moment_share_result(
    current: Mapping[str, Mapping[str, int]],
    previous: Mapping[str, Mapping[str, int]],
    *,
    since: datetime,
    until: datetime,
) -> dict[str, Any]:
    """``moment_share`` from ``{touchpoint: {moment: posts}}`` of the period and of the one before.

    Volume is the classified posts of the touchpoint (every one has a moment); shares are
    fractions of it (0 for no posts), rounded to 6 places. Busiest touchpoint first.
    """
    previous_since = since - (until - since)
    names = sorted(set(current) | set(previous))
    shares = {t: (_period_shares(current.get(t, {})), _period_shares(previous.get(t, {}))) for t in names}
    names.sort(key=lambda t: (-shares[t][0]["volume"], -shares[t][1]["volume"], t))
    rows = [{"touchpoint": t, "current": shares[t][0], "previous": shares[t][1]} for t in names]

    def total(counts: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
        summed: dict[str, int] = {}
        for moments in counts.values():
            for moment, n in moments.items():
                summed[moment] = summed.get(moment, 0) + n
        return _period_shares(summed)

    return {
        "name": "moment_share",
        "since": iso(since),
        "until": iso(until),
        "previous_since": iso(previous_since),
        "previous_until": iso(since),
        "total": {"current": total(current), "previous": total(previous)},
        "touchpoints": rows,
    }


# ------------------------------------------------------------------------------ top_authors


def top_authors_result(
    by_reach: Iterable[tuple[str, int, int]], by_complaints: Iterable[tuple[str, int, int | None]]
) -> dict[str, Any]:
    """``top_authors`` from ``(handle, max followers, posts)`` and ``(handle, complaints, max followers)`` rows.

    Ranked by followers (then posts, then handle) and by complaints (then handle); at most
    :data:`TOP_AUTHORS` each. An author is a handle (posts without one are left out).
    """
    reach: list[tuple[str, int, int]] = sorted(by_reach, key=lambda row: (-row[1], -row[2], row[0]))[:TOP_AUTHORS]
    complaints: list[tuple[str, int, int | None]] = sorted(by_complaints, key=lambda row: (-row[1], row[0]))
    complaints = complaints[:TOP_AUTHORS]
    return {
        "name": "top_authors",
        "by_reach": [{"handle": h, "followers": f, "posts": n} for h, f, n in reach],
        "by_complaints": [{"handle": h, "complaints": n, "followers": f} for h, n, f in complaints],
    }


# ------------------------------------------------------------------------------ standout_terms


def _xlogx_ratio(observed: float, expected: float) -> float:
    return observed * math.log(observed / expected) if observed > 0 else 0.0


def log_likelihood(a: int, b: int, c: int, d: int) -> float:
    """Dunning's G² for a term seen ``a`` times in a target of size ``c`` and ``b`` times in a reference of size ``d``.

    ``G² = 2 · (a · ln(a / E1) + b · ln(b / E2))`` with ``E1 = c · (a + b) / (c + d)``
    and ``E2 = d · (a + b) / (c + d)``, the counts expected if the term were as common
    in both (Dunning 1993, "Accurate methods for the statistics of surprise and
    coincidence"; Rayson & Garside 2000). Unlike a plain frequency ratio it does not
    blow up on rare terms, and unlike chi² it stays accurate for the small counts of
    a short period. 0 when either corpus is empty.
    """
    if c <= 0 or d <= 0 or a + b <= 0:
        return 0.0
    e1 = c * (a + b) / (c + d)
    e2 = d * (a + b) / (c + d)
    return 2.0 * (_xlogx_ratio(a, e1) + _xlogx_ratio(b, e2))


def g2_2x2(a: int, b: int, c: int, d: int) -> float:
    """Dunning's G² of the 2x2 table *has the term* x *is in the target*, counted in documents.

    ``a`` of the ``c`` target posts contain the term, and ``b`` of the ``d`` other posts.
    ``G² = 2 Σ O · ln(O / E)`` over the four cells (with and without the term, in and out of
    the target), ``E`` being what independence expects. It equals ``2 · N · MI`` (mutual
    information in nats, ``N = c + d``), which is why Elasticsearch's ``mutual_information``
    heuristic ranks the candidates of ``significant_text`` in the same order; both stores then
    score them with this function. 0 when either side is empty.
    """
    n = c + d
    if c <= 0 or d <= 0 or a + b <= 0 or a + b >= n:
        return 0.0
    with_term, without_term = a + b, n - a - b
    cells = ((a, with_term, c), (b, with_term, d), (c - a, without_term, c), (d - b, without_term, d))
    return 2.0 * sum(_xlogx_ratio(o, row * col / n) for o, row, col in cells)


def keep_term(term: str) -> bool:
    """Whether a term may stand out: two letters or more, only letters, not a :data:`STOPWORDS` word.

    Numbers, and tokens the two tokenizers split differently (``don't``, ``3.5``, ``a_b``),
    are left out, so both stores weigh the same words.
    """
    return len(term) >= 2 and term.isalpha() and term not in STOPWORDS


def es_term_exclusion() -> str:
    """A Lucene regular expression for ``significant_text``'s ``exclude``: what :func:`keep_term` drops, mostly.

    It only narrows the candidates; :func:`keep_term` is applied to what comes back as well.
    """
    words = "|".join(sorted(w for w in STOPWORDS if w.isalpha()))
    return f".|({words})|.*[0-9._':,;·].*"


@dataclass(frozen=True)
class TermCount:
    """One candidate term of one touchpoint: ``docs`` of its misery posts have it, ``background_docs`` of all posts."""

    term: str
    docs: int
    background_docs: int


def standout_terms_result(
    candidates: Mapping[str, Iterable[TermCount]],
    misery_posts: Mapping[str, int],
    background_posts: int,
    *,
    top: int = TOP_TERMS,
    min_docs: int = MIN_TERM_DOCS,
) -> dict[str, Any]:
    """``standout_terms`` from candidate counts per touchpoint.

    The background is every post matching the filters (the target, a touchpoint's misery
    posts, is part of it). A term stands out when it is in at least ``min_docs`` target
    posts, is relatively more common there than in the rest of the background, and passes
    :func:`keep_term`; terms rank by :func:`g2_2x2` (then by posts, then alphabetically).
    """
    touchpoints: dict[str, list[dict[str, Any]]] = {}
    for touchpoint in sorted(misery_posts):
        c = misery_posts[touchpoint]
        d = background_posts - c
        scored: list[tuple[float, int, str, int]] = []
        for count in candidates.get(touchpoint, ()):
            a, b = count.docs, count.background_docs - count.docs
            if a < min_docs or not keep_term(count.term) or d <= 0 or a / c <= b / d:
                continue
            scored.append((round(g2_2x2(a, b, c, d), 3), a, count.term, count.background_docs))
        scored.sort(key=lambda s: (-s[0], -s[1], s[2]))
        touchpoints[touchpoint] = [
            {"term": term, "misery_posts": a, "background_posts": bg, "g2": g2} for g2, a, term, bg in scored[:top]
        ]
    return {
        "name": "standout_terms",
        "field": STANDOUT_FIELD,
        "background_posts": background_posts,
        "misery_posts": dict(sorted(misery_posts.items())),
        "touchpoints": touchpoints,
    }


# ------------------------------------------------------------------------------ volume


def volume_result(rows: Iterable[tuple[str, str | None, int]]) -> dict[str, Any]:
    """``volume`` from ``(source, lang, posts)`` rows (``lang`` ``None``: not known), busiest first."""
    buckets = sorted(rows, key=lambda row: (-row[2], row[0], row[1] or ""))
    return {
        "name": "volume",
        "total": sum(n for _, _, n in buckets),
        "buckets": [{"source": source, "lang": lang, "posts": n} for source, lang, n in buckets if n],
    }
