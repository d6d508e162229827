"""The brand manager's scorecard: per touchpoint, how often customers meet misery and magic, and why.

:func:`build_scorecard` reads a :class:`~search.store.Store` for one period and the
previous period of the same length and returns a :class:`Scorecard`, a tree of plain
frozen dataclasses. Rendering is someone else's job (:mod:`triage.report` writes the
self-contained HTML file; the triage web app renders the same tree as a page), so
nothing here knows about HTML.

Per touchpoint it holds:

* **volume**: classified posts of that touchpoint created in the period;
* **misery share** and **magic share**: the fraction of that volume whose moment is
  misery (magic);
* **net moment score**: magic share minus misery share, in ``[-1, 1]`` (the report
  shows it in points, x100), so a touchpoint is compared on the balance of its
  moments, not on how loud it is;
* the same for the **previous period** (``[since - length, since)``) and the
  **trend** (the change of the net score, in points, and of the volume);
* the **top misery themes**: terms that stand out in the touchpoint's misery posts
  against every other post of the period (:func:`misery_themes`, a log-likelihood
  ratio), so the manager reads *what* goes wrong, not only *how much*;
* the **best moments of magic**: the magic posts with the highest
  ``P(positive) x (1 + engagement)``, to share with the staff who made them;
* a **time series** of misery and magic counts (daily; hourly for periods up to
  three days) for the chart.

Counts are made by the store, never from fetched posts, so they are exact whatever
the size of the period: the ``moment_share`` aggregation (:mod:`search.aggregations`)
gives both periods' counts per touchpoint, ``moment_counts`` the time series. Themes and best
posts need the text, so they read posts through ``recent_posts`` with caps
(:data:`MISERY_POSTS_PER_TOUCHPOINT`, :data:`REFERENCE_POSTS`, :data:`MAGIC_POSTS`);
a :class:`SampleNote` says when a cap was reached, and the report says so.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from models.taxonomy import DEFAULT_TAXONOMY
from moments.records import Post, utc_now
from search.aggregations import STOPWORDS, log_likelihood  # moved down into search: triage imports search
from search.store import Store

#: At most this many misery posts per touchpoint feed its themes (the newest ones).
MISERY_POSTS_PER_TOUCHPOINT = 5_000
#: At most this many negative posts are read to find the misery ones.
NEGATIVE_POSTS_READ = 50_000
#: At most this many posts of the period (any moment) form the reference corpus of the themes.
REFERENCE_POSTS = 20_000
#: At most this many positive posts are read to find the best moments of magic.
MAGIC_POSTS = 20_000
#: A term must appear in at least this many misery posts of a touchpoint to be a theme.
MIN_TERM_COUNT = 3
#: A theme's G² must reach this: 10.83 is p < 0.001 for one degree of freedom, strict because thousands of terms
#: are tested at once, and a chance one should not headline a report.
MIN_G2 = 10.83
#: Periods up to this long get an hourly time series; longer ones a daily one.
HOURLY_UP_TO = timedelta(days=3)

_LABELS: dict[str, str] = {tp.id: tp.label for tp in DEFAULT_TAXONOMY}


def touchpoint_label(touchpoint: str) -> str:
    """The human label of a touchpoint id (a brand's custom id reads as words)."""
    return _LABELS.get(touchpoint) or touchpoint.replace("_", " ").strip().capitalize() or "?"


# ------------------------------------------------------------------------------ the tree


@dataclass(frozen=True)
class PeriodCounts:
    """Classified posts of one touchpoint (or all of them) in one period, by moment."""

    volume: int
    misery: int
    magic: int

    @property
    def misery_share(self) -> float:
        """Misery posts / volume (0 for an empty period)."""
        return self.misery / self.volume if self.volume else 0.0

    @property
    def magic_share(self) -> float:
        """Magic posts / volume (0 for an empty period)."""
        return self.magic / self.volume if self.volume else 0.0

    @property
    def net_score(self) -> float:
        """Magic share minus misery share, in ``[-1, 1]``: the balance of moments, whatever the volume."""
        return self.magic_share - self.misery_share

    def __add__(self, other: PeriodCounts) -> PeriodCounts:
        return PeriodCounts(self.volume + other.volume, self.misery + other.misery, self.magic + other.magic)


@dataclass(frozen=True)
class Trend:
    """The current period against the previous one of the same length.

    Attributes:
        net_delta: Change of the net moment score (``current - previous``, in ``[-2, 2]``);
            ``None`` when either period has no posts (a change from nothing means nothing).
        volume_delta: Change of the volume, in posts.
        volume_ratio: ``current / previous - 1`` (``+0.25`` is 25 % more posts);
            ``None`` when the previous period had none.
    """

    net_delta: float | None
    volume_delta: int
    volume_ratio: float | None

    @classmethod
    def between(cls, current: PeriodCounts, previous: PeriodCounts) -> Trend:
        """The trend from ``previous`` to ``current``."""
        net = current.net_score - previous.net_score if current.volume and previous.volume else None
        ratio = current.volume / previous.volume - 1 if previous.volume else None
        return cls(net_delta=net, volume_delta=current.volume - previous.volume, volume_ratio=ratio)


@dataclass(frozen=True)
class Theme:
    """A term that stands out in a touchpoint's misery posts.

    Attributes:
        term: A word or a two-word phrase, lower case.
        count: Misery posts of the touchpoint that contain it.
        reference_count: Other posts of the period that contain it.
        g2: Dunning's log-likelihood ratio G² (higher: less likely to be chance;
            above 10.83 is p < 0.001 for one degree of freedom).
    """

    term: str
    count: int
    reference_count: int
    g2: float


@dataclass(frozen=True)
class MagicPost:
    """One moment of magic worth showing the staff who made it.

    Text, names and the URL are the customer's, unfiltered: every renderer escapes
    them, and links only to ``http(s)`` URLs.
    """

    post_id: str
    source: str
    url: str | None
    author_handle: str | None
    author_name: str | None
    text: str
    created_at: datetime
    positive: float
    engagement: int

    @property
    def score(self) -> float:
        """How it ranks: P(positive) x (1 + engagement), so a liked post wins and a quiet one still counts."""
        return self.positive * (1 + self.engagement)


@dataclass(frozen=True)
class TouchpointScore:
    """One touchpoint's row of the scorecard, with its themes, best posts and time series."""

    touchpoint: str
    label: str
    current: PeriodCounts
    previous: PeriodCounts
    trend: Trend
    themes: tuple[Theme, ...] = ()
    best_magic: tuple[MagicPost, ...] = ()
    #: ``{"misery": [(bucket start, count), ...], "magic": [...]}``, every bucket of the period, zeros included.
    #: Without a brand, a post naming two brands counts in both (the store counts per brand); the counts above do not.
    series: Mapping[str, tuple[tuple[datetime, int], ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class SampleNote:
    """How much text the themes and best posts were computed from, and whether a cap cut it.

    A renderer shows :meth:`lines` beside the themes, so nobody reads a sample as the whole.
    """

    misery_posts: int
    misery_capped: tuple[str, ...]
    negative_read_capped: bool
    reference_posts: int
    reference_capped: bool
    magic_posts: int
    magic_capped: bool

    def lines(self) -> list[str]:
        """Plain sentences about the sample (empty when nothing was capped)."""
        lines: list[str] = []
        if self.misery_capped:
            names = ", ".join(touchpoint_label(t) for t in self.misery_capped)
            lines.append(
                f"Themes of {names} come from the newest {MISERY_POSTS_PER_TOUCHPOINT:,} misery posts of the period."
            )
        if self.negative_read_capped:
            lines.append(f"Only the newest {NEGATIVE_POSTS_READ:,} negative posts of the period were read for themes.")
        if self.reference_capped:
            lines.append(f"Themes are compared against the newest {REFERENCE_POSTS:,} posts of the period.")
        if self.magic_capped:
            lines.append(f"Best moments are chosen from the newest {MAGIC_POSTS:,} positive posts of the period.")
        return lines


@dataclass(frozen=True)
class Scorecard:
    """Everything the scorecard shows for one brand (or all) and one period ``[since, until)``.

    Attributes:
        brand: The brand, or ``None`` for every brand.
        since, until: The period, UTC, ``until`` exclusive.
        previous_since, previous_until: The period before, of the same length.
        generated_at: When this was computed.
        posts: Every post of the period, classified or not.
        previous_posts: The same for the previous period.
        total: Classified posts of the period over every touchpoint.
        previous_total: The same for the previous period.
        touchpoints: One row per touchpoint with posts in either period, busiest first.
        bucket: The width of the time series buckets (an hour or a day).
        sample: What the themes and best posts were computed from.
    """

    brand: str | None
    since: datetime
    until: datetime
    previous_since: datetime
    previous_until: datetime
    generated_at: datetime
    posts: int
    previous_posts: int
    total: PeriodCounts
    previous_total: PeriodCounts
    touchpoints: tuple[TouchpointScore, ...]
    bucket: timedelta
    sample: SampleNote

    @property
    def trend(self) -> Trend:
        """The trend of every touchpoint together."""
        return Trend.between(self.total, self.previous_total)

    @property
    def series(self) -> dict[str, list[tuple[datetime, int]]]:
        """Misery and magic per bucket over every touchpoint (for the overview chart)."""
        summed: dict[str, list[tuple[datetime, int]]] = {}
        for moment in ("misery", "magic"):
            totals: dict[datetime, int] = {}
            for row in self.touchpoints:
                for at, n in row.series.get(moment, ()):
                    totals[at] = totals.get(at, 0) + n
            summed[moment] = sorted(totals.items())
        return summed


# ------------------------------------------------------------------------------ building it


def _utc(value: datetime) -> datetime:
    """Aware UTC (a naive datetime is taken as UTC), cut to the millisecond as the stores compare."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _query_time(value: datetime) -> str:
    """A query-language timestamp naming exactly one millisecond (so ``>=`` and ``<`` bound at it)."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _period_query(since: datetime, until: datetime, *conditions: str) -> str:
    window = f"created_at:>={_query_time(since)} AND created_at:<{_query_time(until)}"
    return " AND ".join((*conditions, window))


def series_bucket(since: datetime, until: datetime) -> timedelta:
    """An hour for periods up to :data:`HOURLY_UP_TO`, else a day (buckets start at UTC midnight)."""
    return timedelta(hours=1) if until - since <= HOURLY_UP_TO else timedelta(days=1)


def _bucket_starts(since: datetime, until: datetime, bucket: timedelta) -> list[datetime]:
    """Every bucket start overlapping ``[since, until)``, aligned to the Unix epoch as the stores align them."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    start = epoch + ((since - epoch) // bucket) * bucket
    starts: list[datetime] = []
    while start < until:
        starts.append(start)
        start += bucket
    return starts


def _series(
    store: Store, since: datetime, until: datetime, bucket: timedelta, brand: str | None
) -> dict[str, dict[str, tuple[tuple[datetime, int], ...]]]:
    """Misery and magic per bucket and touchpoint in ``[since, until)``, every bucket listed (zeros too).

    Two ``moment_counts`` aggregations, read through the store's moment/time index. They
    count per brand, so without a brand a post naming two brands counts in both: the
    series only draw the shape; the counts come from ``moment_share`` (:func:`_counts`).
    """
    starts = _bucket_starts(since, until, bucket)
    per_moment: dict[str, dict[str, Counter[datetime]]] = {}
    for moment in ("misery", "magic"):
        by_key = store.moment_counts(since=since, until=until, moment=moment, bucket=bucket, brand=brand)
        for (_, touchpoint), buckets in by_key.items():
            summed = per_moment.setdefault(touchpoint, {}).setdefault(moment, Counter())
            for at, n in buckets.items():
                summed[at.astimezone(UTC)] += n
    return {
        touchpoint: {
            moment: tuple((at, moments.get(moment, Counter()).get(at, 0)) for at in starts)
            for moment in ("misery", "magic")
        }
        for touchpoint, moments in per_moment.items()
    }


def _counts(
    store: Store, since: datetime, until: datetime, brand: str | None
) -> tuple[dict[str, PeriodCounts], dict[str, PeriodCounts]]:
    """Volume, misery and magic per touchpoint, for the period and the previous one: one store aggregation.

    ``moment_share`` (:mod:`search.aggregations`) counts each classified post once,
    whatever number of brands it names, in the store (SQL ``GROUP BY``, Elasticsearch
    composite aggregations), so the counts are exact whatever the size of the period.
    """
    shares = store.aggregate("moment_share", brand=brand, since=since, until=until)

    def period(label: str) -> dict[str, PeriodCounts]:
        return {
            row["touchpoint"]: PeriodCounts(row[label]["volume"], row[label]["misery"], row[label]["magic"])
            for row in shares["touchpoints"]
            if row[label]["volume"]
        }

    return period("current"), period("previous")


def build_scorecard(
    store: Store,
    *,
    since: datetime,
    until: datetime,
    brand: str | None = None,
    top_terms: int = 8,
    best_magic: int = 5,
    now: datetime | None = None,
) -> Scorecard:
    """The scorecard of ``[since, until)`` against the previous period of the same length.

    Args:
        store: Where the classified posts are.
        since: Start of the period, inclusive (a naive datetime is UTC).
        until: End of the period, exclusive.
        brand: Only posts naming this brand; ``None``: every brand.
        top_terms: Misery themes per touchpoint.
        best_magic: Best moments of magic per touchpoint.
        now: The generation time shown in the report (default: now).

    Raises:
        ValueError: ``since`` is not before ``until``.
    """
    since, until = _utc(since), _utc(until)
    if since >= until:
        raise ValueError(f"the period must start before it ends: {since.isoformat()} >= {until.isoformat()}")
    previous_since, previous_until = since - (until - since), since
    brand = brand or None

    bucket = series_bucket(since, until)
    current_counts, previous_counts = _counts(store, since, until, brand)
    series = _series(store, since, until, bucket, brand)
    zero = PeriodCounts(0, 0, 0)
    counted = [
        (touchpoint, current_counts.get(touchpoint, zero), previous_counts.get(touchpoint, zero))
        for touchpoint in set(current_counts) | set(previous_counts)
    ]
    counted.sort(key=lambda row: (-row[1].volume, -row[2].volume, row[0]))
    empty_series = {m: tuple((at, 0) for at in _bucket_starts(since, until, bucket)) for m in ("misery", "magic")}

    themes, sample_misery = _themes_by_touchpoint(store, since, until, brand, top_terms)
    magic, magic_read, magic_capped = _best_magic(store, since, until, brand, best_magic)

    rows = tuple(
        TouchpointScore(
            touchpoint=touchpoint,
            label=touchpoint_label(touchpoint),
            current=current,
            previous=previous,
            trend=Trend.between(current, previous),
            themes=tuple(themes.get(touchpoint, ())),
            best_magic=tuple(magic.get(touchpoint, ())),
            series=series.get(touchpoint, empty_series),
        )
        for touchpoint, current, previous in counted
    )
    return Scorecard(
        brand=brand,
        since=since,
        until=until,
        previous_since=previous_since,
        previous_until=previous_until,
        generated_at=_utc(now or utc_now()),
        posts=store.count_posts(_period_query(since, until), brand=brand),
        previous_posts=store.count_posts(_period_query(previous_since, previous_until), brand=brand),
        total=sum((row.current for row in rows), zero),
        previous_total=sum((row.previous for row in rows), zero),
        touchpoints=rows,
        bucket=bucket,
        sample=SampleNote(
            misery_posts=sample_misery.misery_posts,
            misery_capped=sample_misery.misery_capped,
            negative_read_capped=sample_misery.negative_read_capped,
            reference_posts=sample_misery.reference_posts,
            reference_capped=sample_misery.reference_capped,
            magic_posts=magic_read,
            magic_capped=magic_capped,
        ),
    )


# ------------------------------------------------------------------------------ misery themes

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
# A handle: @name, or @name@instance (Mastodon); also bare e-mail-like strings.
_HANDLE = re.compile(r"(?<![\w@])@[\w.]+(?:@[\w.-]+)?|\b[\w.+-]+@[\w-]+\.[\w.-]+")
# Segments: a bigram never spans a sentence or clause break.
_BREAK = re.compile(r"[.!?;:,()\[\]{}\"“”«»|/\\\n\r\t…–—]+")
# A word: letters (any script), with inner apostrophes or hyphens ("don't", "check-in"); digits never.
_WORD = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")


def tokenize(text: str) -> list[list[str]]:
    """The words of ``text`` that can carry a theme, in segments (a bigram never crosses a segment).

    Lower case; URLs, handles, e-mail addresses, numbers, one-letter words and
    :data:`STOPWORDS` dropped; ``’`` read as ``'`` so "don’t" is a stopword too.
    """
    text = _HANDLE.sub(" ", _URL.sub(" ", text.lower().replace("’", "'")))
    segments: list[list[str]] = []
    for segment in _BREAK.split(text):
        words = [w.strip("'-") for w in _WORD.findall(segment)]
        kept = [w for w in words if len(w) > 1 and w not in STOPWORDS]
        if kept:
            segments.append(kept)
    return segments


def post_terms(text: str) -> set[str]:
    """The distinct unigrams and bigrams of a post (a term counts once per post, however often repeated).

    Counting posts, not occurrences, keeps one ranting post from making a theme.
    """
    terms: set[str] = set()
    for words in tokenize(text):
        terms.update(words)
        terms.update(f"{a} {b}" for a, b in pairwise(words) if a != b)
    return terms


def misery_themes(
    target: Iterable[set[str]],
    reference: Iterable[set[str]],
    *,
    top: int = 8,
    min_count: int = MIN_TERM_COUNT,
    min_g2: float = MIN_G2,
) -> list[Theme]:
    """The terms that stand out in ``target`` (one touchpoint's misery posts) against ``reference`` (the rest).

    Each post is given as its :func:`post_terms`. A term's frequency is the number of
    posts containing it; the size of a corpus is the sum of those frequencies, counted
    separately for words and for two-word phrases (so the two kinds are not compared
    against each other's totals). A term is a theme when it appears in at least
    ``min_count`` target posts, is relatively more frequent there than in the
    reference, and its :func:`log_likelihood` reaches ``min_g2``; themes rank by it.

    A word is left out when a two-word theme containing it accounts for at least
    three quarters of its posts ("lost luggage" says it; "luggage" alone adds
    nothing), so the list reads as distinct themes.
    """
    target_counts: Counter[str] = Counter()
    for terms in target:
        target_counts.update(terms)
    reference_counts: Counter[str] = Counter()
    for terms in reference:
        reference_counts.update(terms)
    return _themes_from_counts(target_counts, reference_counts, top=top, min_count=min_count, min_g2=min_g2)


def _corpus_sizes(counts: Mapping[str, int]) -> dict[bool, int]:
    """The size of a corpus for words (``False``) and for two-word phrases (``True``)."""
    sizes = {False: 0, True: 0}
    for term, n in counts.items():
        sizes[" " in term] += n
    return sizes


def _themes_from_counts(
    target_counts: Mapping[str, int],
    reference_counts: Mapping[str, int],
    *,
    top: int,
    min_count: int = MIN_TERM_COUNT,
    min_g2: float = MIN_G2,
    reference_sizes: Mapping[bool, int] | None = None,
) -> list[Theme]:
    """:func:`misery_themes` on counts already made (``reference_sizes`` when the caller knows them)."""
    target_sizes = _corpus_sizes(target_counts)
    ref_sizes = reference_sizes if reference_sizes is not None else _corpus_sizes(reference_counts)
    candidates: dict[str, Theme] = {}
    for term, a in target_counts.items():
        if a < min_count:
            continue
        b = reference_counts.get(term, 0)
        c, d = target_sizes[" " in term], ref_sizes[" " in term]
        if d and a / c <= b / d:
            continue  # as common (or more) outside misery: not a theme of it
        g2 = log_likelihood(a, b, c, d)
        if g2 >= min_g2:
            candidates[term] = Theme(term=term, count=a, reference_count=b, g2=round(g2, 3))
    covered = {
        word
        for term, theme in candidates.items()
        if " " in term
        for word in term.split(" ")
        if word in candidates and theme.count >= 0.75 * candidates[word].count
    }
    kept = [theme for term, theme in candidates.items() if term not in covered]
    kept.sort(key=lambda t: (-t.g2, -t.count, t.term))
    return kept[:top]


@dataclass(frozen=True)
class _MiserySample:
    misery_posts: int
    misery_capped: tuple[str, ...]
    negative_read_capped: bool
    reference_posts: int
    reference_capped: bool


def _themes_by_touchpoint(
    store: Store, since: datetime, until: datetime, brand: str | None, top: int
) -> tuple[dict[str, list[Theme]], _MiserySample]:
    """Misery themes of every touchpoint: newest misery posts (capped) against the newest posts of the period.

    Misery posts are negative by construction (see :mod:`models.classifier`), so they
    are read through the sentiment index. The reference of a touchpoint is every
    other post of the period (its own misery posts taken out, misery of other
    touchpoints kept in), so a term common to every complaint ("delay", the brand's
    name) does not stand out.
    """
    by_touchpoint: dict[str, dict[str, set[str]]] = {}
    capped: set[str] = set()
    negative_read = 0
    for post in store.recent_posts(
        since=since, until=until, brand=brand, sentiment="negative", limit=NEGATIVE_POSTS_READ
    ):
        negative_read += 1
        classification = post.classification
        if classification is None or classification.moment != "misery":
            continue
        posts = by_touchpoint.setdefault(classification.touchpoint, {})
        if len(posts) >= MISERY_POSTS_PER_TOUCHPOINT:
            capped.add(classification.touchpoint)
            continue
        posts[post.id] = post_terms(_post_text(post))
    if not by_touchpoint:
        return {}, _MiserySample(0, (), negative_read >= NEGATIVE_POSTS_READ, 0, False)

    tokenized = {post_id: terms for posts in by_touchpoint.values() for post_id, terms in posts.items()}
    reference: dict[str, set[str]] = {}
    for post in store.recent_posts(since=since, until=until, brand=brand, limit=REFERENCE_POSTS):
        known = tokenized.get(post.id)
        reference[post.id] = known if known is not None else post_terms(_post_text(post))
    # Misery posts the reference read missed (older than its cap) still belong to the period's posts.
    for posts in by_touchpoint.values():
        for post_id, terms in posts.items():
            reference.setdefault(post_id, terms)

    # Count the period once; a touchpoint's reference is that minus its own misery posts.
    period_counts: Counter[str] = Counter()
    for terms in reference.values():
        period_counts.update(terms)
    period_sizes = _corpus_sizes(period_counts)
    themes: dict[str, list[Theme]] = {}
    for touchpoint, posts in by_touchpoint.items():
        own: Counter[str] = Counter()
        for terms in posts.values():
            own.update(terms)
        others = {term: period_counts[term] - n for term, n in own.items()}
        own_sizes = _corpus_sizes(own)
        sizes = {kind: period_sizes[kind] - own_sizes[kind] for kind in (False, True)}
        themes[touchpoint] = _themes_from_counts(own, others, top=top, reference_sizes=sizes)
    sample = _MiserySample(
        misery_posts=sum(len(p) for p in by_touchpoint.values()),
        misery_capped=tuple(sorted(capped)),
        negative_read_capped=negative_read >= NEGATIVE_POSTS_READ,
        reference_posts=len(reference),
        reference_capped=len(reference) >= REFERENCE_POSTS,
    )
    return themes, sample


def _post_text(post: Post) -> str:
    return f"{post.title}\n{post.text}" if post.title else post.text


# ------------------------------------------------------------------------------ best moments of magic


def _best_magic(
    store: Store, since: datetime, until: datetime, brand: str | None, per_touchpoint: int
) -> tuple[dict[str, list[MagicPost]], int, bool]:
    """The best magic posts per touchpoint, from the newest :data:`MAGIC_POSTS` positive posts.

    Returns:
        ``({touchpoint: best first}, positive posts read, whether the read was capped)``.
    """
    found: dict[str, list[MagicPost]] = {}
    read = 0
    if per_touchpoint <= 0:
        return found, read, False
    for post in store.recent_posts(since=since, until=until, brand=brand, sentiment="positive", limit=MAGIC_POSTS):
        read += 1
        classification = post.classification
        if classification is None or classification.moment != "magic" or post.created_at is None:
            continue
        positive = classification.sentiment_scores.get("positive", classification.confidence or 0.0)
        found.setdefault(classification.touchpoint, []).append(
            MagicPost(
                post_id=post.id,
                source=post.source,
                url=post.url,
                author_handle=post.author.handle,
                author_name=post.author.display_name,
                text=post.text,
                created_at=post.created_at,
                positive=float(positive),
                engagement=post.engagement.total(),
            )
        )
    best = {
        touchpoint: sorted(posts, key=lambda p: (-p.score, -p.created_at.timestamp(), p.post_id))[:per_touchpoint]
        for touchpoint, posts in found.items()
    }
    return best, read, read >= MAGIC_POSTS


def shares_by_touchpoint(scorecard: Scorecard) -> Sequence[tuple[str, float]]:
    """``(label, net score)`` per touchpoint with posts in the period, worst first (for the bar chart)."""
    rows = [(row.label, row.current.net_score) for row in scorecard.touchpoints if row.current.volume]
    return sorted(rows, key=lambda r: (r[1], r[0]))
