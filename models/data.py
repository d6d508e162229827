"""Dataset readers for training and evaluation.

All public datasets live under ``../shared/datasets`` (relative to the repository
root) unless ``--data`` or ``MOMENTS_DATASETS`` says otherwise; every folder there
has a README with source, licence, format and checksums. TSVs are read with quoting
disabled because many texts start with a double quote.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TOUCHPOINT_DIR = Path(__file__).resolve().parent / "data" / "touchpoints"
SENTIMENTS = ("negative", "neutral", "positive")

# TSV fields can be long (some reviews); the default 128 KiB limit is too small for safety.
csv.field_size_limit(1 << 24)


def datasets_dir(override: str | Path | None = None) -> Path:
    """The shared datasets folder: ``override``, else ``$MOMENTS_DATASETS``, else ``<repo>/../shared/datasets``."""
    if override:
        return Path(override)
    env = os.environ.get("MOMENTS_DATASETS")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "datasets"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file (recorded in the artifact manifest for provenance)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Labelled:
    """Parallel lists of texts and integer labels."""

    texts: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int) -> Labelled:
        """The first ``n`` rows (fixed slices for tests)."""
        return Labelled(self.texts[:n], self.labels[:n])


def _read_tsv(path: Path, header: bool) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[1:] if header else rows


def tweeteval_path(split: str, data: Path | None = None) -> Path:
    """Path of a TweetEval sentiment split (``train``, ``val`` or ``test``)."""
    return datasets_dir(data) / "tweeteval_sentiment" / f"{split}.tsv"


def load_tweeteval(split: str, data: Path | None = None) -> Labelled:
    """TweetEval sentiment: labels 0 negative, 1 neutral, 2 positive (same order as :data:`SENTIMENTS`)."""
    rows = _read_tsv(tweeteval_path(split, data), header=True)
    return Labelled([r[0] for r in rows], [int(r[1]) for r in rows])


def goemotions_path(split: str, data: Path | None = None) -> Path:
    """Path of a GoEmotions split (``train``, ``dev`` or ``test``)."""
    return datasets_dir(data) / "goemotions" / f"{split}.tsv"


def load_goemotions_sentiment(split: str, data: Path | None = None) -> Labelled:
    """GoEmotions mapped to 3-class sentiment with the authors' ``sentiment_dict.json``.

    A row keeps a label only when all its emotions agree on one group (positive,
    negative, or neutral); rows with ``ambiguous`` emotions or mixed groups are
    dropped, since forcing them into a class would teach noise.
    """
    root = datasets_dir(data) / "goemotions"
    names = (root / "emotions.txt").read_text(encoding="utf-8").split()
    groups = json.loads((root / "sentiment_dict.json").read_text(encoding="utf-8"))
    group_of = {emo: grp for grp, emos in groups.items() for emo in emos}
    group_of["neutral"] = "neutral"
    # The file is CSV-quoted where texts contain quotes; csv's default quoting undoes that.
    with goemotions_path(split, data).open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    texts: list[str] = []
    labels: list[int] = []
    for row in rows:
        found = {group_of[names[int(i)]] for i in row[1].split(",") if i}
        if len(found) != 1:
            continue
        (grp,) = found
        if grp == "ambiguous":
            continue
        texts.append(row[0])
        labels.append(SENTIMENTS.index(grp))
    return Labelled(texts, labels)


# --- our labelled touchpoint posts -------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, object]]:
    """Every JSON object line of a file (blank lines skipped)."""
    out = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                out.append(json.loads(line))
    return out


def _norm_text(text: str) -> str:
    return " ".join(text.lower().split())


TOUCHPOINT_SPLIT_SEED = 13
"""The seed of the committed train/dev split. Fixed, not ``models.train --seed``: a run with another
training seed must not move posts between train and dev (the dev figures would then read posts the
heads learnt from)."""


def make_touchpoint_split(
    raw_dir: Path = TOUCHPOINT_DIR / "raw",
    out_dir: Path = TOUCHPOINT_DIR,
    dev_share: float = 0.25,
    seed: int = TOUCHPOINT_SPLIT_SEED,
    valid_touchpoints: Iterable[str] | None = None,
) -> dict[str, int]:
    """Build the deterministic train/dev split of our touchpoint posts.

    Rows are deduplicated on whitespace/case-normalised text (first occurrence in
    sorted file order wins; a text labelled two ways is dropped as ambiguous), then
    split per touchpoint with a fixed seed so every class has ~``dev_share`` in dev.

    Returns:
        Row counts: ``train``, ``dev``, ``dropped_duplicates``, ``dropped_conflicts``, ``dropped_invalid``.
    """
    valid = set(valid_touchpoints) if valid_touchpoints is not None else None
    seen: dict[str, dict[str, object]] = {}
    labels_of: dict[str, set[str]] = defaultdict(set)
    stats = {"dropped_duplicates": 0, "dropped_conflicts": 0, "dropped_invalid": 0}
    for path in sorted(raw_dir.glob("*.jsonl")):
        for row in read_jsonl(path):
            text = str(row.get("text") or "").strip()
            tp = str(row.get("touchpoint") or "")
            if not text or (valid is not None and tp not in valid):
                stats["dropped_invalid"] += 1
                continue
            key = _norm_text(text)
            labels_of[key].add(tp)
            if key in seen:
                stats["dropped_duplicates"] += 1
                continue
            seen[key] = {**row, "text": text}
    by_tp: dict[str, list[dict[str, object]]] = defaultdict(list)
    for key, row in seen.items():
        if len(labels_of[key]) > 1:
            stats["dropped_conflicts"] += 1
            continue
        by_tp[str(row["touchpoint"])].append(row)
    rng = random.Random(seed)
    train: list[dict[str, object]] = []
    dev: list[dict[str, object]] = []
    for tp in sorted(by_tp):
        rows = sorted(by_tp[tp], key=lambda r: str(r["text"]))
        rng.shuffle(rows)
        n_dev = round(len(rows) * dev_share)
        dev.extend(rows[:n_dev])
        train.extend(rows[n_dev:])
    for name, rows in (("train", train), ("dev", dev)):
        rows.sort(key=lambda r: (str(r["touchpoint"]), str(r["text"])))
        with (out_dir / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    return {"train": len(train), "dev": len(dev), **stats}


def load_touchpoints(split: str, root: Path = TOUCHPOINT_DIR) -> list[dict[str, object]]:
    """Our labelled touchpoint posts (``train`` or ``dev``), as dicts with text/touchpoint/sentiment/moment."""
    return read_jsonl(root / f"{split}.jsonl")


# --- extra training data for issue 14 (real text; never a test split) -------------------

RECOVERY_PATH = Path(__file__).resolve().parent / "data" / "recovery" / "stories.jsonl"
"""Recovery stories and delight posts we wrote (plus look-alike complaints), for the moment head, the
recovery detector and the sentiment TF-IDF model; every third row is held out as validation (:func:`load_recovery`)."""
MORE_RECOVERY_PATH = RECOVERY_PATH.parent / "more_stories.jsonl"
"""A second, larger set: recovery stories across industries, failed or grudging recoveries and
support-thread acknowledgements, written without sight of the demo corpus or the real set."""
RECOVERY_FILES: tuple[Path, ...] = (RECOVERY_PATH, MORE_RECOVERY_PATH)
FOLLOW_UP_PATH = RECOVERY_PATH.parent / "follow_ups.jsonl"
"""Customers writing again to a support handle after its reply: plain resolution reports ("clearing the
cache does fix it. Thanks."; recovery stories), look-alikes where the fault stands or came back (many
closing with a polite "thanks"), and neutral follow-ups. Fictional brands; written without sight of TWCS
text, the real set, the real validation set or the demo, but after the real recovery set's last miss was
known (a plain "... does resolve the issue. Thanks." read as negative). Read by the recovery detector
only (:data:`models.recovery.DETECTOR_FILES`); not by the sentiment fine-tune or its TF-IDF model."""
CONTRAST_PATH = RECOVERY_PATH.parent / "negation_and_concession.jsonl"
"""Contrast rows for the outcome a customer reports: praise built from negated cost and friction words,
praise conceding an earlier complaint, the same words where the complaint stands, neutral questions
(fictional brands; written without sight of the demo corpus or the real set, but after the demo's
failures were described, so some rows paraphrase demo posts closely). Not in :data:`RECOVERY_FILES`, so
no head or detector learns from them (candidate t did, and did not ship); the sentiment fine-tune reads
them only with ``models.train --contrast-repeats`` (model w: 5). ``load_recovery(split,
path=CONTRAST_PATH)`` reads them."""

SELF_SERVICE_PATH = RECOVERY_PATH.parent / "self_service.jsonl"
"""More contrast rows, for the sentiment fine-tune only: customers who changed, cancelled, returned or
rescheduled something themselves and report the outcome through an absent cost or friction ("no change fee,
£0 difference, took two minutes"; positive), the same changes where the fee or friction was there
(negative), and plain questions (neutral). Fictional brands, travel and everything else in equal parts;
written without sight of the demo corpus or the real sets, but after the demo's last misread praise
("changed my flight ... no change fee") was known. No shipped model learnt from them: candidates z-z3
read them beside :data:`CONTRAST_PATH` (``models.train --contrast-repeats 4 --contrast-file ...`` for
each) and were not kept (MODEL_CARD.md)."""

BANKING77_TABLE = Path(__file__).resolve().parent / "data" / "realset" / "banking77_touchpoints.csv"
SEMEVAL_TABLE = Path(__file__).resolve().parent / "data" / "realset" / "semeval_aspects.csv"
#: SemEval-2014 aspect categories too loose to train on: general verdicts and chatter (``semeval_aspects.csv``
#: maps them to ``product_experience`` as its weakest row; many such sentences are ``other``).
SEMEVAL_UNTRAINED = frozenset({"anecdotes/miscellaneous"})


def load_recovery(split: str, path: Path | None = None) -> list[dict[str, object]]:
    """Our recovery-story posts: ``train`` (two rows in three) or ``val`` (every third row), fixed.

    Every file of :data:`RECOVERY_FILES` by default, each split on its own (so adding rows to
    one file never moves a row of the other between train and validation), or one ``path``.
    """
    out: list[dict[str, object]] = []
    for each in (path,) if path is not None else RECOVERY_FILES:
        rows = read_jsonl(each)
        out += [r for i, r in enumerate(rows) if (i % 3 == 2) == (split == "val")]
    return out


def load_banking77_mapped(
    split: str = "train", data: Path | None = None, table: Path = BANKING77_TABLE
) -> tuple[list[str], list[str]]:
    """BANKING77 queries with the touchpoint of their intent from the committed, reviewed table.

    Only the train split may be used for training: the real-text evaluation set samples the test split.
    """
    with table.open(encoding="utf-8", newline="") as handle:
        mapping = {row["intent"]: row["touchpoint"] for row in csv.DictReader(handle)}
    path = datasets_dir(data) / "banking77" / f"{split}.csv"
    texts: list[str] = []
    labels: list[str] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            tp = mapping.get(row["category"])
            if tp:
                texts.append(row["text"])
                labels.append(tp)
    return texts, labels


def load_semeval_mapped(
    split: str = "train", data: Path | None = None, table: Path = SEMEVAL_TABLE
) -> tuple[list[str], list[str]]:
    """SemEval-2014 restaurant sentences with the touchpoint of their aspect categories (committed table).

    A sentence is kept when every category it carries maps to the same touchpoint and none is in
    :data:`SEMEVAL_UNTRAINED`. Only the train split may be used for training: the real-text
    evaluation set samples the test split.
    """
    with table.open(encoding="utf-8", newline="") as handle:
        mapping = {row["category"]: row["touchpoint"] for row in csv.DictReader(handle)}
    name = "train_aspect_categories.tsv" if split == "train" else "test_aspect_categories.tsv"
    rows = _read_tsv(datasets_dir(data) / "semeval14_restaurants" / name, header=True)
    cats: dict[str, set[str]] = defaultdict(set)
    text_of: dict[str, str] = {}
    for sid, text, cat, _polarity in rows:
        cats[sid].add(cat)
        text_of[sid] = text
    texts: list[str] = []
    labels: list[str] = []
    for sid, found in cats.items():
        touchpoints = {mapping.get(cat) for cat in found}
        if found & SEMEVAL_UNTRAINED or len(touchpoints) != 1 or None in touchpoints:
            continue
        texts.append(text_of[sid])
        labels.append(str(next(iter(touchpoints))))
    return texts, labels


def vader_tweets_path(data: Path | None = None) -> Path:
    """Path of VADER's tweet ground truth (mean human rating in [-4, 4] per tweet)."""
    return datasets_dir(data) / "vader_groundtruth" / "tweets_GroundTruth.txt"


def load_vader_tweets(data: Path | None = None) -> Labelled:
    """VADER's 4,200 rated tweets mapped to 3 classes: mean >= 1 positive, <= -1 negative,
    |mean| < 0.5 neutral; the tweets in between are dropped (raters leaned, but weakly)."""
    return _load_vader(vader_tweets_path(data))


def load_vader_amazon(data: Path | None = None) -> Labelled:
    """VADER's 3,708 rated Amazon review sentences (Hu & Liu 2004; MIT), mapped as :func:`load_vader_tweets`.

    Product reviews tell what happened and how it ended ("it broke after a week, but
    they replaced it at once"): the register of a recovery story, rare in TweetEval.
    """
    return _load_vader(datasets_dir(data) / "vader_groundtruth" / "amazonReviewSnippets_GroundTruth.txt")


def _load_vader(path: Path) -> Labelled:
    texts: list[str] = []
    labels: list[int] = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t", 2)
            if len(parts) < 3:
                continue
            score = float(parts[1])
            if score >= 1.0:
                label = 2
            elif score <= -1.0:
                label = 0
            elif abs(score) < 0.5:
                label = 1
            else:
                continue
            texts.append(parts[2])
            labels.append(label)
    return Labelled(texts, labels)
