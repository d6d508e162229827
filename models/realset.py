"""The real-text evaluation set of issue 14: sampled real posts, blind labelling passes, adjudication.

Why this exists: the dev split was written by us and flatters the model; a set of real
customer text (BANKING77, SemEval-2014 restaurants, GoEmotions, TweetEval,
customer-support tweets and the demo corpus) labelled twice, blind, decides instead.

Licences decide what is committed (``models/data/realset/items.jsonl``). Only BANKING77
(CC BY 4.0) and our own demo corpus ship their text. Every other item keeps only its
source, split and row reference plus the sha256 of its text; the text is reloaded from
the shared datasets folder (:func:`models.data.datasets_dir`: ``$MOMENTS_DATASETS`` or
``<repo>/../shared/datasets``) at run time, and a changed source is caught by the hash.

Public surface:

* :func:`load_items`: the committed items with text resolved (missing sources are
  skipped with a reason, never silently).
* :func:`load_labelled`: the same joined with the adjudicated labels (``labels.jsonl``).
* :func:`banking77_touchpoints`, :func:`semeval_touchpoints`: the committed weak-label tables.
* :func:`load_chatter`: train-split chatter with the weak label ``other`` (a training source).
* :func:`build_sample`, :func:`adjudicate`, :func:`cohen_kappa`: the builder and the
  adjudication rule of ``docs/labelling.md``.

Command line (``python -m models.realset ...``)::

    build [--seed 14] [--demo-posts POSTS.jsonl ...]   # draw the sample, write items.jsonl
                                                         # (demo items kept from items.jsonl unless
                                                         # --demo-posts gives `moments crawl` output
                                                         # replaying crawlers/recorded/demo)
    build-recovery                                       # real recovery-story candidates (TWCS
                                                         # follow-ups), recovery_items.jsonl
    build-validation                                     # the real validation set's sample,
                                                         # models/data/realval/items.jsonl
    [--items FILE] worksheet -o WORKSHEET.jsonl          # blind worksheet: item_id + text only
    adjudicate A.jsonl B.jsonl [--third C.jsonl] -o labels.jsonl [--list-disputes FILE]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import html
import json
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from models.data import datasets_dir
from models.taxonomy import TOUCHPOINTS
from moments.errors import UsageError

REALSET_DIR = Path(__file__).resolve().parent / "data" / "realset"
ITEMS_PATH = REALSET_DIR / "items.jsonl"
LABELS_PATH = REALSET_DIR / "labels.jsonl"
AGREEMENT_PATH = REALSET_DIR / "AGREEMENT.md"
DEMO_INTENDED_PATH = REALSET_DIR / "demo_intended.jsonl"
BANKING77_TABLE = REALSET_DIR / "banking77_touchpoints.csv"
SEMEVAL_TABLE = REALSET_DIR / "semeval_aspects.csv"
# The real recovery-story set: TWCS customers writing again after a brand's reply, in words that
# may report an outcome (thanks, fixed, sorted ...). Labelled like the real set, kept apart from it
# so the real set's figures stay comparable across models.
RECOVERY_ITEMS_PATH = REALSET_DIR / "recovery_items.jsonl"
RECOVERY_LABELS_PATH = REALSET_DIR / "recovery_labels.jsonl"
# The real validation set: drawn like the real set, from the same sources, but never an item of the
# real set or the recovery set; GoEmotions and TweetEval from their dev/val splits (the real set took
# nearly every keyword match of their test splits). Labelled the same way. Its purpose is to choose
# decision rules (floors, biases) on real register text without ever looking at the real set.
REALVAL_DIR = Path(__file__).resolve().parent / "data" / "realval"
REALVAL_ITEMS_PATH = REALVAL_DIR / "items.jsonl"
REALVAL_LABELS_PATH = REALVAL_DIR / "labels.jsonl"
# The real validation set's delight supplement: praise-leaning real posts, for the magic rule alone.
DELIGHT_DIR = REALVAL_DIR / "delight"
DELIGHT_ITEMS_PATH = DELIGHT_DIR / "items.jsonl"
DELIGHT_LABELS_PATH = DELIGHT_DIR / "labels.jsonl"
DELIGHT_SEED = 1415
DELIGHT_TARGETS: dict[str, int] = {"semeval14": 100, "twcs_opening": 80}

DEFAULT_SEED = 14
SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")
MOMENTS: tuple[str, ...] = ("misery", "magic", "neutral")
FIELDS: tuple[str, ...] = ("touchpoint", "sentiment", "moment", "recovery_story")

# Sources whose text may be committed; every other source is reloaded from the datasets folder.
SHIPPABLE_SOURCES = frozenset({"banking77", "demo"})
# How many items each source contributes (the demo corpus contributes every post).
TARGETS: dict[str, int] = {
    "banking77": 150,
    "semeval14": 150,
    "goemotions": 100,
    "tweeteval": 100,
    "twcs_opening": 75,
    "twcs_followup": 75,
}
VALIDATION_SEED = 1414
VALIDATION_TARGETS: dict[str, int] = {
    "banking77": 100,
    "semeval14": 100,
    "goemotions": 100,
    "tweeteval": 100,
    "twcs_opening": 75,
    "twcs_followup": 50,
}
VALIDATION_SPLITS: dict[str, str] = {"goemotions": "dev", "tweeteval": "val"}


@dataclass(frozen=True)
class Draw:
    """What one sample takes: how many items per source, which split of GoEmotions and TweetEval,
    and the (source, ref) pairs it must not take (another set's items)."""

    targets: Mapping[str, int] = field(default_factory=lambda: dict(TARGETS))
    splits: Mapping[str, str] = field(default_factory=dict)
    taken: frozenset[tuple[str, str]] = frozenset()

    def split(self, source: str) -> str:
        return self.splits.get(source, "test")

    def free(self, source: str, ref: str) -> bool:
        return (source, ref) not in self.taken


# GoEmotions and TweetEval are not customer corpora, so a documented prefilter picks the posts that
# read as a customer talking about a product, service or company: a whole-word, case-insensitive
# keyword match. Matches written in the first person ("my order", "I bought") are taken first; other
# matches fill what they leave; the labellers still mark off-topic ones `other`.
GOEMOTIONS_KEYWORDS = (
    "customer service|customer support|tech support|company|store|shop|restaurant|waiter|waitress|staff|employee"
    "|employees|manager|cashier|ordered|my order|delivery|delivered|shipping|package|refund|refunded|returned"
    "|product|bought|purchase|purchased|price|paid|charged|fee|fees|subscription|app|website|airline|flight|hotel"
    "|bank|warranty|customer|customers|amazon|uber|walmart|comcast|netflix|starbucks|mcdonalds|insurance|landlord"
    "|billing|service"
)
# SemEval-2017's test tweets are mostly politics and celebrities: only 217 of 12,284 match.
TWEETEVAL_KEYWORDS = (
    "airline|airlines|flight|flights|delayed|cancelled|canceled|delivery|delivered|my order|ordered"
    "|customer service|customer support|refund|app|package|shipping|subscription|hotel|waiter|restaurant|charged"
    "|fee|fees|store|service|amazon|apple|iphone|samsung|netflix|comcast|verizon|sprint|uber|starbucks|mcdonalds"
    "|walmart|phone"
)
FIRST_PERSON = re.compile(r"(?<![\w@#])(?:i|i'm|im|i've|ive|my|me|we|our|us)(?!\w)", re.IGNORECASE)
# TweetEval quotas per gold label: complaints and praise, few neutral tweets.
TWEETEVAL_QUOTA = {"negative": 45, "positive": 40, "neutral": 15}
# GoEmotions "delight" emotions (gratitude, admiration, surprise, beyond expectations): oversampled,
# because magic precision is judged on exactly these.
DELIGHT_EMOTIONS = frozenset({"gratitude", "admiration", "surprise", "excitement", "joy", "relief"})
# Words with which a customer writing again after a brand's reply may report how it ended. Thanks
# that merely acknowledge a reply ("Thanks, DM sent") match too; the labellers tell them apart.
OUTCOME_CUE = re.compile(
    r"\b(thank\w*|thx|ty|appreciate\w*|great|awesome|amazing|perfect|sorted|fixed|resolved|works now"
    r"|working now|love|best|helpful|brilliant|excellent|cheers|legend)\b",
    re.IGNORECASE,
)
# A TWCS customer tweet that ends in an agent signature ("^JD") is a company account counted as inbound.
_AGENT_SIGNATURE = re.compile(r"\^[A-Za-z]{1,4}\s*$")
_NON_LATIN = re.compile(r"[\u0400-\u04ff\u0600-\u06ff\u0900-\u097f\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af]")
_MENTION_OR_LINK = re.compile(r"@\w+|https?://\S+")


class RealsetError(ValueError):
    """The committed set does not match its sources (a changed dataset file, a bad reference)."""


# --- weak-label tables -------------------------------------------------------------------


def _read_table(path: Path, key: str) -> dict[str, str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return {row[key]: row["touchpoint"] for row in csv.DictReader(handle)}


def banking77_touchpoints(path: Path = BANKING77_TABLE) -> dict[str, str]:
    """BANKING77 intent -> touchpoint id (all 77 intents; the committed, reviewed table)."""
    return _read_table(path, "intent")


def semeval_touchpoints(path: Path = SEMEVAL_TABLE) -> dict[str, str]:
    """SemEval-2014 aspect category -> touchpoint id (all five categories)."""
    return _read_table(path, "category")


# --- items -----------------------------------------------------------------------------------


@dataclass
class Item:
    """One post of the real set.

    ``ref`` is what reloads the text from the source (row number, sentence id, comment id,
    line number, tweet id or post id); ``weak`` holds the dataset's own labels where it has
    any (touchpoint from the mapping tables, sentiment from gold polarity), used by the
    adjudication rule only to break ties between the two passes.
    """

    item_id: str
    source: str
    split: str
    ref: str
    sha256: str
    weak: dict[str, Any] = field(default_factory=dict)
    subset: list[str] = field(default_factory=list)
    text: str | None = None

    def to_committed(self) -> dict[str, Any]:
        """The committed JSON object: text only where the source's licence allows it."""
        out: dict[str, Any] = {
            "item_id": self.item_id,
            "source": self.source,
            "split": self.split,
            "ref": self.ref,
            "sha256": self.sha256,
            "weak": {} if self.source == "demo" else self.weak,  # demo: from demo_intended.jsonl
            "subset": self.subset,
        }
        if self.source in SHIPPABLE_SOURCES:
            out["text"] = self.text
        return out


def item_id_for(source: str, split: str, ref: str) -> str:
    """An opaque, stable id: labellers must not read the source off it (passes are blind)."""
    return "rs-" + hashlib.sha256(f"{source}|{split}|{ref}".encode()).hexdigest()[:10]


def text_sha256(text: str) -> str:
    """The hash committed for each text, so a changed source row is detected."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _make(source: str, split: str, ref: str, text: str, weak: dict[str, Any], subset: list[str] | None = None) -> Item:
    return Item(item_id_for(source, split, ref), source, split, ref, text_sha256(text), weak, subset or [], text)


# --- source readers (each returns {ref: text} plus what the sampler needs) ---------------------


def _banking77_rows(data: Path) -> list[tuple[str, str, str]]:
    """(row number, text, intent) of BANKING77 test; the row number counts data rows from 0."""
    with (data / "banking77" / "test.csv").open(encoding="utf-8", newline="") as handle:
        return [(str(n), row["text"], row["category"]) for n, row in enumerate(csv.DictReader(handle))]


def _semeval_rows(data: Path) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """sentence_id -> (text, [(category, polarity), ...]) of SemEval-2014 restaurants test."""
    out: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    path = data / "semeval14_restaurants" / "test_aspect_categories.tsv"
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    for sid, text, cat, pol in rows:
        out.setdefault(sid, (text, []))[1].append((cat, pol))
    return out


def _goemotions_rows(data: Path, split: str = "test") -> list[tuple[str, str, list[str]]]:
    """(comment id, text, emotion names) of a GoEmotions split (csv quoting undone, as in models.data)."""
    root = data / "goemotions"
    names = (root / "emotions.txt").read_text(encoding="utf-8").split()
    with (root / f"{split}.tsv").open(encoding="utf-8", newline="") as handle:
        return [
            (row[2], row[0], [names[int(i)] for i in row[1].split(",") if i])
            for row in csv.reader(handle, delimiter="\t")
        ]


def _goemotions_groups(data: Path) -> dict[str, str]:
    groups = json.loads((data / "goemotions" / "sentiment_dict.json").read_text(encoding="utf-8"))
    of = {emo: grp for grp, emos in groups.items() for emo in emos}
    of["neutral"] = "neutral"
    return of


def _tweeteval_rows(data: Path, split: str = "test") -> list[tuple[str, str, str]]:
    """(line number, text, sentiment) of a TweetEval split; line 1 is the first tweet after the header."""
    with (data / "tweeteval_sentiment" / f"{split}.tsv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [(str(n), text, SENTIMENTS[int(label)]) for n, (text, label) in enumerate(rows, start=1)]


def _twcs_rows(data: Path, name: str) -> list[dict[str, str]]:
    with (data / "customer_support_twitter" / f"{name}.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _twcs_text(raw: str) -> str:
    """TWCS keeps HTML entities (``&amp;``); labellers and the model read them unescaped."""
    return html.unescape(raw)


def _is_customer_text(text: str) -> bool:
    """An English-looking customer tweet with something to label (not an agent's, not just mentions)."""
    if _AGENT_SIGNATURE.search(text) or _NON_LATIN.search(text):
        return False
    return len(_MENTION_OR_LINK.sub("", text).strip()) >= 20


def _keyword_filter(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w@#])(?:{pattern})(?![\w])", re.IGNORECASE)


# --- sampling --------------------------------------------------------------------------------

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def _round_robin(strata: Mapping[K, Sequence[T]], n: int, rng: random.Random) -> list[T]:
    """Up to ``n`` items taken one per stratum in turn (strata and members shuffled by ``rng``).

    Why round robin: it spreads the sample evenly over intents, aspects, labels or brands,
    so small strata are not drowned by the big ones.
    """
    keys = sorted(strata, key=str)
    rng.shuffle(keys)
    pools = {k: rng.sample(list(strata[k]), len(strata[k])) for k in keys}
    out: list[T] = []
    while len(out) < n and any(pools.values()):
        for k in keys:
            if pools[k] and len(out) < n:
                out.append(pools[k].pop())
    return out


def _sample_banking77(data: Path, rng: random.Random, draw: Draw) -> list[Item]:
    table = banking77_touchpoints()
    strata: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for row in _banking77_rows(data):
        if draw.free("banking77", row[0]):
            strata[row[2]].append(row)
    picked = _round_robin(strata, draw.targets["banking77"], rng)
    return [_make("banking77", "test", ref, text, {"touchpoint": table[intent]}) for ref, text, intent in picked]


def _sample_semeval(data: Path, rng: random.Random, draw: Draw) -> list[Item]:
    """Single-aspect sentences, spread over (category, polarity); conflict polarity left out."""
    table = semeval_touchpoints()
    strata: dict[tuple[str, str], list[tuple[str, str, str, str]]] = defaultdict(list)
    for sid, (text, aspects) in _semeval_rows(data).items():
        if len(aspects) == 1 and aspects[0][1] != "conflict" and draw.free("semeval14", sid):
            cat, pol = aspects[0]
            strata[(cat, pol)].append((sid, text, cat, pol))
    picked = _round_robin(strata, draw.targets["semeval14"], rng)
    return [
        _make("semeval14", "test", sid, text, {"touchpoint": table[cat], "sentiment": pol})
        for sid, text, cat, pol in picked
    ]


def _tiered(tiers: Sequence[Mapping[K, Sequence[T]]], n: int, rng: random.Random) -> list[T]:
    """Round robin over the first tier's strata, then the next tier fills what is left, and so on."""
    out: list[T] = []
    for tier in tiers:
        out.extend(_round_robin(tier, n - len(out), rng))
    return out


def _emotion_stratum(emotions: list[str], group_of: Mapping[str, str]) -> str:
    """delight (any delight emotion), else the one sentiment group of the emotions, else mixed."""
    groups = {group_of[e] for e in emotions}
    return "delight" if DELIGHT_EMOTIONS & set(emotions) else (next(iter(groups)) if len(groups) == 1 else "mixed")


def _sample_goemotions(data: Path, rng: random.Random, draw: Draw) -> list[Item]:
    """Keyword matches in the first person, then other keyword matches, then (the test split holds
    fewer than 100 matches) first-person comments; each tier spread over delight / positive / negative
    / ambiguous / neutral / mixed emotions.
    """
    keywords = _keyword_filter(GOEMOTIONS_KEYWORDS)
    group_of = _goemotions_groups(data)
    tiers: list[dict[str, list[tuple[str, str, list[str]]]]] = [defaultdict(list) for _ in range(3)]
    split = draw.split("goemotions")
    for cid, text, emotions in _goemotions_rows(data, split):
        if len(text) < 25 or not draw.free("goemotions", cid):
            continue
        first_person = bool(FIRST_PERSON.search(text))
        if keywords.search(text):
            tier = 0 if first_person else 1
        elif first_person:
            tier = 2
        else:
            continue
        tiers[tier][_emotion_stratum(emotions, group_of)].append((cid, text, emotions))
    items = []
    for cid, text, emotions in _tiered(tiers, draw.targets["goemotions"], rng):
        groups = {group_of[e] for e in emotions}
        weak: dict[str, Any] = {"emotions": emotions}
        if len(groups) == 1 and (grp := next(iter(groups))) in SENTIMENTS:
            weak["sentiment"] = grp
        items.append(_make("goemotions", split, cid, text, weak))
    return items


def _sample_tweeteval(data: Path, rng: random.Random, draw: Draw) -> list[Item]:
    """Keyword matches about companies and services, first-person ones first, by the gold label's quota."""
    keywords = _keyword_filter(TWEETEVAL_KEYWORDS)
    tiers: dict[str, list[dict[str, list[tuple[str, str]]]]] = {
        s: [defaultdict(list), defaultdict(list)] for s in SENTIMENTS
    }
    split = draw.split("tweeteval")
    for line, text, label in _tweeteval_rows(data, split):
        if keywords.search(text) and draw.free("tweeteval", line):
            tiers[label][0 if FIRST_PERSON.search(text) else 1][label].append((line, text))
    items: list[Item] = []
    for label in SENTIMENTS:
        for line, text in _tiered(tiers[label], TWEETEVAL_QUOTA[label], rng):
            items.append(_make("tweeteval", split, line, text, {"sentiment": label}))
    return items


def _sample_twcs(data: Path, rng: random.Random, draw: Draw) -> list[Item]:
    """Customer tweets: openers (random sample, spread over brands) and follow-ups after a brand reply.

    Follow-ups come from the head sample, whose conversations are whole: an inbound tweet
    that replies to a tracked brand account's tweet. They feed the recovery-stories subset
    (many thank the brand, some complain again).
    """
    head = _twcs_rows(data, "twcs_head_5000")
    followups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for brand, tweet_id, text in _twcs_followups(head):
        if draw.free("twcs", tweet_id):
            followups[brand].append((tweet_id, text))
    picked_followups = _round_robin(followups, draw.targets["twcs_followup"], rng)

    taken = {tweet_id for tweet_id, _ in picked_followups}
    openers = _twcs_openers(
        _twcs_rows(data, "twcs_random_5000"),
        head,
        lambda tweet_id, _: tweet_id not in taken and draw.free("twcs", tweet_id),
    )
    picked_openers = _round_robin(openers, draw.targets["twcs_opening"], rng)
    return [_make("twcs", "twcs_random_5000", tid, text, {}, ["opening"]) for tid, text in picked_openers] + [
        _make("twcs", "twcs_head_5000", tid, text, {}, ["after_brand_reply"]) for tid, text in picked_followups
    ]


def _twcs_openers(
    random_rows: list[dict[str, str]], head: list[dict[str, str]], wanted: Callable[[str, str], bool]
) -> dict[str, list[tuple[str, str]]]:
    """Brand account -> [(tweet id, text)] of the customer tweets that open a conversation with a brand
    (the first brand they mention) in the random sample, kept where ``wanted(tweet_id, text)``."""
    brands = {row["author_id"].lower(): row["author_id"] for row in random_rows + head if row["inbound"] == "False"}
    openers: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in random_rows:
        text = _twcs_text(row["text"])
        if row["inbound"] != "True" or _twcs_parent(row) or not _is_customer_text(text):
            continue
        if not wanted(row["tweet_id"], text):
            continue
        handles = [brands[m.lower()] for m in re.findall(r"@(\w+)", text) if m.lower() in brands]
        if handles:
            openers[handles[0]].append((row["tweet_id"], text))
    return openers


def _twcs_followups(head: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    """(brand account, tweet id, text) of each customer tweet that replies to a brand's tweet."""
    by_id = {row["tweet_id"]: row for row in head}
    out = []
    for row in head:
        parent = by_id.get(_twcs_parent(row))
        text = _twcs_text(row["text"])
        if row["inbound"] == "True" and parent and parent["inbound"] == "False" and _is_customer_text(text):
            out.append((parent["author_id"], row["tweet_id"], text))
    return out


def recovery_candidates(data: Path | None = None, exclude: Iterable[Item] = ()) -> list[Item]:
    """Every TWCS follow-up (a customer writing again after a brand's reply) with an outcome word.

    Not a sample: all of them in the head file, less those already in the real set. They are
    where real recovery stories are ("Thank you for your personal call & help today. I now have
    my receipt"), next to thanks that only acknowledge a reply and thanks that complain again,
    which is what a recovery detector must tell apart.
    """
    root = datasets_dir(data)
    taken = {(item.source, item.ref) for item in exclude}
    head = _twcs_rows(root, "twcs_head_5000")
    return [
        _make("twcs", "twcs_head_5000", tweet_id, text, {}, ["recovery_candidate"])
        for _, tweet_id, text in _twcs_followups(head)
        if ("twcs", tweet_id) not in taken and OUTCOME_CUE.search(text)
    ]


def validation_sample(data: Path | None = None, seed: int = VALIDATION_SEED) -> list[Item]:
    """The real validation set's sample: the real set's draw with :data:`VALIDATION_TARGETS`, from
    :data:`VALIDATION_SPLITS`, taking no item of the real set or the real recovery set.

    Why it exists: decision rules (the magic floor, the touchpoint biases) chosen on our written
    validation posts did not carry over to real text, and choosing them on the real set would
    spoil the one set that decides. No demo post is in it (the demo is scored on its intended labels).
    """
    taken = frozenset(
        (item.source, item.ref) for path in (ITEMS_PATH, RECOVERY_ITEMS_PATH) for item in read_committed(path)
    )
    return build_sample(data, seed, Draw(VALIDATION_TARGETS, VALIDATION_SPLITS, taken))


def delight_sample(data: Path | None = None, seed: int = DELIGHT_SEED) -> list[Item]:
    """The delight supplement of the real validation set: real posts that lean to praise, taking no
    item of the real set, the real recovery set or the real validation set.

    Why it exists: the real validation set holds only 12 magic posts, too few to choose the magic
    rule (:mod:`models.magic`) on, because delight is rare in real text. A brand manager's false
    magic is a *positive* post that is not a moment of magic ("the chicken dinner was real good",
    a film, thanks for a reply), so the draw takes praise-leaning posts, where both kinds live:

    * SemEval-2014 restaurants test: single-aspect sentences of positive polarity, spread over the
      aspect categories (:data:`DELIGHT_TARGETS`);
    * TWCS random sample: conversation openers to a brand with a praise word (:data:`OUTCOME_CUE`),
      spread over brands.

    GoEmotions is left out: every dev comment the real set's filter would take with a delight
    emotion is in the real validation set already, and its train split taught the relevance gate.

    Raises:
        RealsetError: A dataset folder it draws from is missing.
    """
    root = _datasets_for(data, {"semeval14", "twcs"})
    taken = frozenset(
        (item.source, item.ref)
        for path in (ITEMS_PATH, RECOVERY_ITEMS_PATH, REALVAL_ITEMS_PATH)
        for item in read_committed(path)
    )
    rng = random.Random(seed)
    items: list[Item] = []
    table = semeval_touchpoints()
    by_category: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for sid, (text, aspects) in _semeval_rows(root).items():
        if len(aspects) == 1 and aspects[0][1] == "positive" and ("semeval14", sid) not in taken:
            by_category[aspects[0][0]].append((sid, text, aspects[0][0]))
    for sid, text, cat in _round_robin(by_category, DELIGHT_TARGETS["semeval14"], rng):
        items.append(_make("semeval14", "test", sid, text, {"touchpoint": table[cat], "sentiment": "positive"}))
    openers = _twcs_openers(
        _twcs_rows(root, "twcs_random_5000"),
        _twcs_rows(root, "twcs_head_5000"),
        lambda tweet_id, text: ("twcs", tweet_id) not in taken and bool(OUTCOME_CUE.search(text)),
    )
    for tid, text in _round_robin(openers, DELIGHT_TARGETS["twcs_opening"], rng):
        items.append(_make("twcs", "twcs_random_5000", tid, text, {}, ["opening"]))
    return items


def _twcs_parent(row: Mapping[str, str]) -> str:
    value = row.get("in_response_to_tweet_id") or ""
    return str(int(float(value))) if value else ""


def demo_items(posts_files: Iterable[Path]) -> list[Item]:
    """Every post of the demo corpus, crawled (``moments crawl`` JSONL), read as the classifier reads it.

    The text is ``"{title}. {text}"`` when a post has a title, as in :mod:`models.classifier`.
    """
    from moments.records import read_posts

    items: list[Item] = []
    for path in posts_files:
        for post in read_posts(path.read_text(encoding="utf-8").splitlines()):
            text = f"{post.title}. {post.text}" if post.title else post.text
            subset = ["duplicate"] if post.duplicate_of else []
            items.append(_make("demo", "demo", post.id, text, {}, subset))
    return items


def _datasets_for(data: Path | None, sources: Iterable[str]) -> Path:
    """The datasets folder, when it holds every named source's folder; else a :class:`RealsetError`."""
    root = datasets_dir(data)
    missing = {_SOURCE_FOLDERS[source] for source in sources if not (root / _SOURCE_FOLDERS[source]).is_dir()}
    if missing:
        raise RealsetError(f"datasets missing under {root}: {', '.join(sorted(missing))}")
    return root


def build_sample(data: Path | None = None, seed: int = DEFAULT_SEED, draw: Draw | None = None) -> list[Item]:
    """The dataset-sourced sample (everything but the demo corpus); same seed, same items.

    ``draw`` says how many items per source, which splits and which items are taken already
    (default: the real set's draw, :data:`TARGETS` from the test splits).

    Raises:
        RealsetError: A dataset folder is missing (the sample must come from all sources).
    """
    root = _datasets_for(data, _SOURCE_FOLDERS)
    items: list[Item] = []
    for offset, sampler in enumerate(
        (_sample_banking77, _sample_semeval, _sample_goemotions, _sample_tweeteval, _sample_twcs)
    ):
        items.extend(sampler(root, random.Random(seed * 1000 + offset), draw or Draw()))
    ids = [item.item_id for item in items]
    if len(set(ids)) != len(ids):
        raise RealsetError("item ids collide; change the id scheme")
    return items


# --- training sources drawn from the real set's datasets (train splits) -----------------------


TRAINING_SOURCE_REGISTERS: dict[str, tuple[str, ...]] = {
    "banking77": ("banking77",),
    "semeval14": ("semeval14",),
    "chatter": ("goemotions", "tweeteval"),
}
"""For each weak-label training source of ``models.train``, the real-set sources whose datasets'
train splits it draws from: a model that learnt from one scores those in its own register."""


def learnt_registers(manifest: Mapping[str, Any]) -> set[str]:
    """The real-set sources a model's manifest says it learnt touchpoints from (a weak-label
    source with a chosen weight above 0, or one its relevance gate learnt from; see
    :data:`TRAINING_SOURCE_REGISTERS`)."""
    touchpoint = manifest.get("touchpoint") or {}
    weak = touchpoint.get("weak_sources") or {}
    # The relevance gate (models.relevance) learnt from weak-label sources of its own.
    gate = set((touchpoint.get("relevance") or {}).get("weak_sources") or [])
    return {
        source
        for name, sources in TRAINING_SOURCE_REGISTERS.items()
        if weak.get(f"chosen_weight {name}", 0) > 0 or name in gate
        for source in sources
    }


def load_chatter(split: str = "train", data: Path | None = None) -> tuple[list[str], list[str]]:
    """GoEmotions comments and TweetEval tweets that name a company or service, each labelled ``other``.

    They are drawn the way the real set draws its chatter (the same keyword filters), from the
    *train* splits; the real set samples the test splits, and a train row whose text is also in a
    test split is left out. Most such posts are about nothing a brand did: the labellers marked
    85 of 100 GoEmotions and 83 of 100 TweetEval items `other`, so the label is weak (about one
    in six is a real touchpoint) and validation decides its weight (``models.train``).
    """
    if split == "test":
        raise UsageError("chatter is for training: the real-text set samples the test splits")
    root = datasets_dir(data)
    goemotions, tweeteval = _keyword_filter(GOEMOTIONS_KEYWORDS), _keyword_filter(TWEETEVAL_KEYWORDS)
    in_test = {text for _, text, _ in _goemotions_rows(root)} | {text for _, text, _ in _tweeteval_rows(root)}
    texts = [text for _, text, _ in _goemotions_rows(root, split) if len(text) >= 25 and goemotions.search(text)]
    texts += [text for _, text, _ in _tweeteval_rows(root, split) if tweeteval.search(text)]
    texts = [t for t in dict.fromkeys(texts) if t not in in_test]
    return texts, ["other"] * len(texts)


# --- the committed set, with text resolved ----------------------------------------------------

_SOURCE_FOLDERS = {
    "banking77": "banking77",
    "semeval14": "semeval14_restaurants",
    "goemotions": "goemotions",
    "tweeteval": "tweeteval_sentiment",
    "twcs": "customer_support_twitter",
}


def load_demo_intended(path: Path = DEMO_INTENDED_PATH) -> dict[str, dict[str, Any]]:
    """item_id -> the labels we meant when we wrote each demo post (the four fields plus its post_id)."""
    if not path.exists():
        return {}
    return {row["item_id"]: row for row in read_jsonl(path)}


def read_committed(path: Path = ITEMS_PATH, demo_intended: Path = DEMO_INTENDED_PATH) -> list[Item]:
    """The committed items as they are in the file (text only for shippable sources).

    A demo item's weak labels are its intended labels (``demo_intended.jsonl`` is their one
    source, so the two files cannot drift apart).
    """
    intended = load_demo_intended(demo_intended)
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            obj = json.loads(line)
            item = Item(**{k: obj[k] for k in Item.__dataclass_fields__ if k in obj})
            if item.source == "demo" and item.item_id in intended:
                item.weak = {name: intended[item.item_id][name] for name in FIELDS}
            items.append(item)
    return items


def _source_texts(source: str, split: str, root: Path) -> dict[str, str]:
    """ref -> text for one source split, read the same way the sampler read it."""
    if source == "banking77":
        return {ref: text for ref, text, _ in _banking77_rows(root)}
    if source == "semeval14":
        return {sid: text for sid, (text, _) in _semeval_rows(root).items()}
    if source == "goemotions":
        return {cid: text for cid, text, _ in _goemotions_rows(root, split)}
    if source == "tweeteval":
        return {line: text for line, text, _ in _tweeteval_rows(root, split)}
    if source == "twcs":
        return {row["tweet_id"]: _twcs_text(row["text"]) for row in _twcs_rows(root, split)}
    raise RealsetError(f"unknown source {source!r}")


@dataclass
class RealSet:
    """The items whose text is available, and why the others were skipped (source -> reason)."""

    items: list[Item]
    skipped: dict[str, str] = field(default_factory=dict)


def load_items(path: Path = ITEMS_PATH, data: Path | None = None) -> RealSet:
    """The committed items with text resolved from their sources.

    A source whose dataset folder is missing is skipped as a whole, with the reason in
    ``RealSet.skipped`` (so an evaluation can say what it left out).

    Raises:
        RealsetError: A reference is not in its source, or a text's sha256 differs from the committed one.
    """
    root = datasets_dir(data)
    committed = read_committed(path)
    cache: dict[tuple[str, str], dict[str, str]] = {}
    out: list[Item] = []
    skipped: dict[str, str] = {}
    for item in committed:
        text = item.text if item.source in SHIPPABLE_SOURCES else None
        if text is None:
            folder = root / _SOURCE_FOLDERS.get(item.source, item.source)
            if not folder.is_dir():
                skipped[item.source] = f"{folder} not found (set MOMENTS_DATASETS to the shared datasets folder)"
                continue
            key = (item.source, item.split)
            if key not in cache:
                cache[key] = _source_texts(item.source, item.split, root)
            text = cache[key].get(item.ref)
            if text is None:
                raise RealsetError(f"{item.item_id}: {item.source}/{item.split} has no row {item.ref!r}")
        if text_sha256(text) != item.sha256:
            raise RealsetError(
                f"{item.item_id}: text of {item.source}/{item.split} {item.ref} changed (sha256 differs)"
            )
        item.text = text
        out.append(item)
    return RealSet(out, skipped)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """JSON object lines of a file; a bad line is a one-line UsageError naming it."""
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise UsageError(f"{path}:{number}: expected a JSON object")
        out.append(obj)
    return out


def load_labelled(
    data: Path | None = None, labels: Path = LABELS_PATH, items: Path = ITEMS_PATH
) -> tuple[list[tuple[Item, dict[str, Any]]], RealSet]:
    """(item with text, adjudicated labels) pairs for every labelled item whose text is available.

    The real set by default; ``items=RECOVERY_ITEMS_PATH, labels=RECOVERY_LABELS_PATH`` for the
    real recovery-story candidates.
    """
    realset = load_items(items, data=data)
    decided = {row["item_id"]: row for row in read_jsonl(labels)} if labels.exists() else {}
    return [(item, decided[item.item_id]) for item in realset.items if item.item_id in decided], realset


# --- labelling passes and adjudication ---------------------------------------------------------

_VALID: dict[str, tuple[Any, ...]] = {
    "touchpoint": TOUCHPOINTS,
    "sentiment": SENTIMENTS,
    "moment": MOMENTS,
    "recovery_story": (True, False),
}


def read_pass(path: Path, known: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """A labelling pass: item_id -> {touchpoint, sentiment, moment, recovery_story}, validated.

    Raises:
        UsageError: A line lacks a field, has a value outside the guide, repeats an item or names an unknown item.
    """
    out: dict[str, dict[str, Any]] = {}
    for number, row in enumerate(read_jsonl(path), start=1):
        item_id = row.get("item_id")
        if not isinstance(item_id, str):
            raise UsageError(f"{path}: entry {number} has no item_id")
        if known is not None and item_id not in known:
            raise UsageError(f"{path}: unknown item_id {item_id!r}")
        if item_id in out:
            raise UsageError(f"{path}: item_id {item_id!r} labelled twice")
        labels = {}
        for name in FIELDS:
            value = row.get(name)
            if value not in _VALID[name] or (name == "recovery_story" and not isinstance(value, bool)):
                raise UsageError(f"{path}: {item_id}: {name} must be one of {list(_VALID[name])}, not {value!r}")
            labels[name] = value
        out[item_id] = labels
    return out


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters over the same items: (p_o - p_e) / (1 - p_e).

    When chance agreement is already 1 (both raters used one and the same label
    throughout) kappa is undefined; it is reported as 1.0, since they agree on everything.
    """
    if len(a) != len(b) or not a:
        raise ValueError("kappa needs two equally long, non-empty label lists")
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[k] * count_b[k] for k in count_a) / (n * n)
    if expected >= 1.0:
        return 1.0
    return (observed - expected) / (1 - expected)


@dataclass
class Adjudication:
    """The result of the adjudication rule over two passes (and an optional third)."""

    labels: dict[str, dict[str, Any]]  # item_id -> decided fields (undecided fields absent)
    how: dict[str, dict[str, str]]  # item_id -> field -> agreed / weak / third
    disputes: dict[str, list[str]]  # item_id -> fields still undecided
    agreement: dict[str, tuple[float, float, int]]  # field -> (raw agreement, kappa, n)
    missing: list[str]  # items of the set that a pass left out


def adjudicate(
    items: Sequence[Item],
    pass_a: Mapping[str, Mapping[str, Any]],
    pass_b: Mapping[str, Mapping[str, Any]],
    third: Mapping[str, Mapping[str, Any]] | None = None,
) -> Adjudication:
    """Apply the rule of docs/labelling.md field by field.

    Both passes agree -> that label ("agreed"). They disagree -> if exactly one of them
    equals the dataset's weak label, that one ("weak"); otherwise the third pass decides
    ("third"); without a third label the field stays disputed.
    """
    labels: dict[str, dict[str, Any]] = {}
    how: dict[str, dict[str, str]] = {}
    disputes: dict[str, list[str]] = {}
    missing: list[str] = []
    both: list[str] = []
    for item in items:
        a, b = pass_a.get(item.item_id), pass_b.get(item.item_id)
        if a is None or b is None:
            missing.append(item.item_id)
            continue
        both.append(item.item_id)
        decided: dict[str, Any] = {}
        paths: dict[str, str] = {}
        for name in FIELDS:
            weak = item.weak.get(name)
            if a[name] == b[name]:
                decided[name], paths[name] = a[name], "agreed"
            elif weak is not None and (a[name] == weak) != (b[name] == weak):
                decided[name], paths[name] = weak, "weak"
            elif third is not None and item.item_id in third:
                decided[name], paths[name] = third[item.item_id][name], "third"
            else:
                disputes.setdefault(item.item_id, []).append(name)
        labels[item.item_id] = decided
        how[item.item_id] = paths
    agreement = {}
    for name in FIELDS:
        xs = [pass_a[i][name] for i in both]
        ys = [pass_b[i][name] for i in both]
        if xs:
            raw = sum(x == y for x, y in zip(xs, ys, strict=True)) / len(xs)
            agreement[name] = (raw, cohen_kappa(xs, ys), len(xs))
    return Adjudication(labels, how, disputes, agreement, missing)


def inconsistencies(labels: Mapping[str, Any]) -> list[str]:
    """Label combinations the guide rules out (magic must be positive, misery negative, recovery = positive magic)."""
    problems = []
    if labels.get("moment") == "magic" and labels.get("sentiment") not in (None, "positive"):
        problems.append("magic but not positive")
    if labels.get("moment") == "misery" and labels.get("sentiment") not in (None, "negative"):
        problems.append("misery but not negative")
    if labels.get("recovery_story") and (labels.get("sentiment"), labels.get("moment")) != ("positive", "magic"):
        problems.append("recovery story not positive+magic")
    return problems


def agreement_markdown(result: Adjudication, items: Sequence[Item], pass_names: Sequence[str]) -> str:
    """AGREEMENT.md: per-field raw agreement and kappa, decision paths, per-source counts."""
    source_of = {item.item_id: item.source for item in items}
    lines = [
        "# Real-set labelling agreement",
        "",
        "Written by `python -m models.realset adjudicate`; do not edit by hand.",
        f"Passes: {', '.join(pass_names)}. Rule: docs/labelling.md (agreed -> weak label breaks a tie -> third pass).",
        "",
        "| field | items | raw agreement | Cohen's kappa |",
        "|---|---:|---:|---:|",
    ]
    for name, (raw, kappa, n) in result.agreement.items():
        lines.append(f"| {name} | {n} | {raw:.3f} | {kappa:.3f} |")
    lines += [
        "",
        "## How each field was decided",
        "",
        "| field | agreed | weak | third | undecided |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in FIELDS:
        paths = Counter(h[name] for h in result.how.values() if name in h)
        undecided = sum(name in fields for fields in result.disputes.values())
        lines.append(f"| {name} | {paths['agreed']} | {paths['weak']} | {paths['third']} | {undecided} |")
    complete = [i for i in result.labels if i not in result.disputes]
    per_source = Counter(source_of[i] for i in complete)
    lines += ["", "## Fully decided items per source", "", "| source | items |", "|---|---:|"]
    lines += [f"| {source} | {count} |" for source, count in sorted(per_source.items())]
    lines.append(f"| **all** | {len(complete)} |")
    odd = {i: inconsistencies(result.labels[i]) for i in complete}
    odd = {i: p for i, p in odd.items() if p}
    lines += ["", f"Items still disputed (need a third pass): {len(result.disputes)}."]
    lines.append(f"Items missing from a pass: {len(result.missing)}.")
    lines.append(f"Decided items whose labels break a guide rule: {len(odd)}.")
    for item_id, problems in sorted(odd.items()):
        lines.append(f"- {item_id}: {'; '.join(problems)}")
    return "\n".join(lines) + "\n"


# --- command line ------------------------------------------------------------------------------


def write_items(items: Sequence[Item], path: Path = ITEMS_PATH) -> None:
    """Write the committed set, sorted by source then reference (stable diffs)."""
    ordered = sorted(items, key=lambda i: (i.source, i.split, _ref_key(i.ref)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(i.to_committed(), ensure_ascii=False) + "\n" for i in ordered), encoding="utf-8")


def _ref_key(ref: str) -> tuple[int, str]:
    return (int(ref), "") if ref.isdigit() else (1 << 62, ref)


def write_worksheet(items: Sequence[Item], path: Path, seed: int = DEFAULT_SEED) -> None:
    """The blind worksheet: item_id and text only, in a seeded shuffle so sources interleave."""
    order = sorted(items, key=lambda i: i.item_id)
    random.Random(seed).shuffle(order)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps({"item_id": i.item_id, "text": i.text}, ensure_ascii=False) + "\n" for i in order),
        encoding="utf-8",
    )


def _cmd_build(args: argparse.Namespace) -> int:
    items = build_sample(args.data, args.seed)
    if args.demo_posts:
        demo = demo_items(args.demo_posts)
    elif args.output.exists():
        demo = [i for i in read_committed(args.output) if i.source == "demo"]
    else:
        raise UsageError("no demo items yet: pass --demo-posts with the crawled demo corpus (moments crawl ... -o)")
    write_items(items + demo, args.output)
    counts = Counter(i.source + (f"/{i.subset[0]}" if i.source == "twcs" else "") for i in items + demo)
    print(
        f"wrote {len(items) + len(demo)} items to {args.output}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    return 0


def _cmd_build_validation(args: argparse.Namespace) -> int:
    items = validation_sample(args.data, args.seed)
    write_items(items, args.output)
    counts = Counter(i.source + (f"/{i.subset[0]}" if i.source == "twcs" else "") for i in items)
    print(f"wrote {len(items)} items to {args.output}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


def _cmd_build_delight(args: argparse.Namespace) -> int:
    items = delight_sample(args.data, args.seed)
    write_items(items, args.output)
    counts = Counter(i.source for i in items)
    print(f"wrote {len(items)} items to {args.output}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


def _cmd_build_recovery(args: argparse.Namespace) -> int:
    items = recovery_candidates(args.data, read_committed(ITEMS_PATH))
    write_items(items, args.output)
    print(f"wrote {len(items)} recovery candidates to {args.output}")
    return 0


def _cmd_worksheet(args: argparse.Namespace) -> int:
    realset = load_items(args.items, args.data)
    if realset.skipped:
        raise UsageError("cannot write a full worksheet: " + "; ".join(f"{k}: {v}" for k, v in realset.skipped.items()))
    write_worksheet(realset.items, args.output, args.seed)
    print(f"wrote {len(realset.items)} items to {args.output}")
    return 0


def _cmd_adjudicate(args: argparse.Namespace) -> int:
    committed = read_committed(args.items)
    known = {i.item_id for i in committed}
    pass_a, pass_b = read_pass(args.pass_a, known), read_pass(args.pass_b, known)
    third = read_pass(args.third, known) if args.third else None
    result = adjudicate(committed, pass_a, pass_b, third)
    rows = []
    for item in committed:
        if item.item_id in result.labels and item.item_id not in result.disputes:
            rows.append({"item_id": item.item_id, **result.labels[item.item_id], "how": result.how[item.item_id]})
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    names = [p.name for p in (args.pass_a, args.pass_b, args.third) if p]
    args.agreement.write_text(agreement_markdown(result, committed, names), encoding="utf-8")
    print(f"wrote {len(rows)} decided items to {args.output}; agreement in {args.agreement}")
    for name, (raw, kappa, n) in result.agreement.items():
        print(f"  {name}: raw agreement {raw:.3f}, kappa {kappa:.3f} (n={n})")
    print(f"  disputed: {len(result.disputes)}, missing from a pass: {len(result.missing)}")
    if args.list_disputes:
        texts = {i.item_id: i.text for i in load_items(args.items, args.data).items}
        with args.list_disputes.open("w", encoding="utf-8") as handle:
            for item_id, fields in result.disputes.items():
                # The adjudicator is not blind: the two passes' choices are what they decide between.
                choices = {name: [pass_a[item_id][name], pass_b[item_id][name]] for name in fields}
                entry = {"item_id": item_id, "text": texts.get(item_id), "fields": fields, "choices": choices}
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        print(f"  disputes for a third pass: {args.list_disputes}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.realset {build,worksheet,adjudicate}``; bad input exits 2 with one line."""
    parser = argparse.ArgumentParser(prog="python -m models.realset", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=None, help="datasets folder (default: $MOMENTS_DATASETS or ../shared/datasets)"
    )
    parser.add_argument("--items", type=Path, default=ITEMS_PATH, help="committed items file")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="draw the seeded sample and write the committed items")
    build.add_argument("--seed", type=int, default=DEFAULT_SEED)
    build.add_argument("--demo-posts", type=Path, nargs="*", default=[], help="crawled demo corpus (posts JSONL)")
    build.add_argument("-o", "--output", type=Path, default=ITEMS_PATH)
    recovery = sub.add_parser(
        "build-recovery", help="write the real recovery-story candidates (TWCS follow-ups with an outcome word)"
    )
    recovery.add_argument("-o", "--output", type=Path, default=RECOVERY_ITEMS_PATH)
    validation = sub.add_parser(
        "build-validation", help="draw the real validation set (same sources, none of the real set's items)"
    )
    validation.add_argument("--seed", type=int, default=VALIDATION_SEED)
    validation.add_argument("-o", "--output", type=Path, default=REALVAL_ITEMS_PATH)
    delight = sub.add_parser(
        "build-delight",
        help="draw the real validation set's delight supplement (praise-leaning real posts, for the magic rule)",
    )
    delight.add_argument("--seed", type=int, default=DELIGHT_SEED)
    delight.add_argument("-o", "--output", type=Path, default=DELIGHT_ITEMS_PATH)
    sheet = sub.add_parser("worksheet", help="write the blind worksheet (item_id + text)")
    sheet.add_argument("-o", "--output", type=Path, required=True)
    sheet.add_argument("--seed", type=int, default=DEFAULT_SEED)
    adj = sub.add_parser("adjudicate", help="turn two blind passes into decided labels and AGREEMENT.md")
    adj.add_argument("pass_a", type=Path)
    adj.add_argument("pass_b", type=Path)
    adj.add_argument("--third", type=Path, default=None, help="adjudicator's pass over the disputed items")
    adj.add_argument("-o", "--output", type=Path, default=LABELS_PATH)
    adj.add_argument("--agreement", type=Path, default=AGREEMENT_PATH)
    adj.add_argument("--list-disputes", type=Path, default=None, help="write disputed items with text here")
    args = parser.parse_args(argv)
    handlers = {
        "build": _cmd_build,
        "build-recovery": _cmd_build_recovery,
        "build-validation": _cmd_build_validation,
        "build-delight": _cmd_build_delight,
        "worksheet": _cmd_worksheet,
        "adjudicate": _cmd_adjudicate,
    }
    try:
        return handlers[args.command](args)
    except (UsageError, RealsetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
