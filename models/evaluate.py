"""Evaluation of the shipped classifier (used by ``moments eval``, the tests and training reports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.classifier import SENTIMENTS, Classifier
from models.data import load_touchpoints, load_tweeteval
from models.training import confusion, macro_f1, macro_recall, per_class_f1
from moments.records import Classification

if TYPE_CHECKING:
    from models.realset import Item, RealSet


@dataclass
class SentimentReport:
    """TweetEval-style sentiment metrics."""

    n: int
    macro_recall: float
    accuracy: float
    macro_f1: float
    confusion: list[list[int]]
    labels: list[str] = field(default_factory=lambda: list(SENTIMENTS))


@dataclass
class TouchpointReport:
    """Touchpoint metrics on our labelled dev posts."""

    n: int
    macro_f1: float
    accuracy: float
    per_class_f1: dict[str, float]
    confusion: list[list[int]]
    labels: list[str]


def sentiment_report(classifier: Classifier, texts: list[str], labels: list[int]) -> SentimentReport:
    """Sentiment metrics of the classifier's decision (with its tuned biases) on labelled texts."""
    raw = classifier.encode(texts)
    pred = classifier.outcome_sentiment(raw, [t.strip() for t in texts])[0].argmax(1)
    y = np.asarray(labels)
    return SentimentReport(
        n=len(y),
        macro_recall=macro_recall(y, pred, 3),
        accuracy=float((pred == y).mean()),
        macro_f1=macro_f1(y, pred, 3),
        confusion=confusion(y, pred, 3).tolist(),
    )


def tweeteval_report(
    classifier: Classifier, split: str = "test", data: Path | None = None, limit: int | None = None
) -> SentimentReport:
    """Sentiment metrics on a TweetEval split (optionally its first ``limit`` rows)."""
    ds = load_tweeteval(split, data)
    if limit:
        ds = ds.head(limit)
    return sentiment_report(classifier, ds.texts, ds.labels)


def touchpoint_report(classifier: Classifier, rows: list[dict[str, Any]] | None = None) -> TouchpointReport:
    """Touchpoint metrics on labelled rows (default: our dev split) in the classifier's taxonomy."""
    rows = rows if rows is not None else load_touchpoints("dev")
    labels = list(classifier.taxonomy.ids)
    keep = [r for r in rows if r["touchpoint"] in labels]
    texts = [str(r["text"]) for r in keep]
    y = np.array([labels.index(str(r["touchpoint"])) for r in keep])
    pred = classifier.touchpoint_probs(classifier.encode(texts), texts).argmax(1)
    f1 = per_class_f1(y, pred, len(labels))
    return TouchpointReport(
        n=len(y),
        macro_f1=macro_f1(y, pred, len(labels)),
        accuracy=float((pred == y).mean()) if len(y) else 0.0,
        per_class_f1={lab: float(f1[i]) for i, lab in enumerate(labels)},
        confusion=confusion(y, pred, len(labels)).tolist(),
        labels=labels,
    )


def format_confusion(matrix: list[list[int]], labels: list[str]) -> str:
    """A plain-text confusion matrix (rows true, columns predicted), short column names."""
    short = [lab[:8] for lab in labels]
    width = max(8, *(len(s) for s in short))
    head = " " * (width + 2) + " ".join(f"{s:>{width}}" for s in short)
    lines = [head]
    for lab, row in zip(short, matrix, strict=True):
        lines.append(f"{lab:>{width}}  " + " ".join(f"{v:>{width}d}" for v in row))
    return "\n".join(lines)


# --- the real-text evaluation set (issue 14) ------------------------------------------------

MIN_NEGATIVE_PROBABILITY = 0.5
"""The default flag rule's sentiment confidence (``moments.config.FlagRules.min_negative_probability``):
a post is a *bad moment*, the first condition of a flag, when its moment is misery or it is negative
with at least this probability (``flows.flagging``). Mirrored here so models need not import flows."""


def is_bad_moment(result: Classification, min_negative_probability: float = MIN_NEGATIVE_PROBABILITY) -> bool:
    """Whether the flag rule would read this verdict as a bad moment (misery, or surely negative)."""
    negative_p = result.sentiment_scores.get("negative", 0.0)
    return result.moment == "misery" or (result.sentiment == "negative" and negative_p >= min_negative_probability)


@dataclass
class RealSetReport:
    """The classifier on the adjudicated real-text set (``models/data/realset``)."""

    n: int
    touchpoint_accuracy: float
    touchpoint_macro_f1: float
    sentiment_accuracy: float
    sentiment_macro_f1: float
    magic_precision: float
    magic_called: int
    magic_recall: float
    magic_called_outside_demo: int
    """Posts called magic that are not our demo corpus's (written by us, richer in magic than real text)."""
    magic_precision_outside_demo: float
    recovery_stories: int
    recovery_bad_moments: int
    per_source: dict[str, int]
    touchpoint_accuracy_per_source: dict[str, float]
    learnt_from: list[str]
    """Real-set sources whose datasets' train splits the model learnt touchpoints from (their own register)."""
    touchpoint_accuracy_unseen: float
    """Touchpoint accuracy on the other sources' items (nan when there are none)."""
    skipped: dict[str, str]
    touchpoint_per_class_f1: dict[str, float]
    touchpoint_confusion: list[list[int]]
    labels: list[str]


def _labelled_or_reason(
    name: str, data: Path | None, items: Path, labels: Path
) -> tuple[list[tuple[Item, dict[str, Any]]], RealSet] | str:
    """A labelled set's (item, labels) pairs with text, or a one-line reason why there is nothing to measure."""
    from models.realset import RealsetError, load_labelled

    if not labels.exists():
        return f"no adjudicated labels yet ({labels} is missing)"
    try:
        pairs, loaded = load_labelled(data, labels=labels, items=items)
    except RealsetError as exc:
        return f"{name} unavailable: {exc}"
    if not pairs:
        reasons = "; ".join(f"{k}: {v}" for k, v in loaded.skipped.items()) or "no labelled item has text"
        return f"{name}: nothing to evaluate ({reasons})"
    return pairs, loaded


def realset_report(classifier: Classifier, data: Path | None = None) -> RealSetReport | str:
    """Metrics on the real-text set, or a one-line reason why there is nothing to measure.

    Magic precision: of the posts the classifier calls ``magic``, the share labelled
    ``magic`` (a brand that shares a magic moment with staff must not share a complaint).
    Recovery stories: how many of those labelled as one the flag rule would read as a
    bad moment (:func:`is_bad_moment`); the target is none.
    """
    from models.realset import ITEMS_PATH, LABELS_PATH, learnt_registers

    loaded = _labelled_or_reason("real-text set", data, ITEMS_PATH, LABELS_PATH)
    if isinstance(loaded, str):
        return loaded
    pairs, realset = loaded
    texts = [str(item.text) for item, _ in pairs]
    results = classifier.classify(texts)
    labels = list(classifier.taxonomy.ids)
    y_tp = np.array([labels.index(str(lab["touchpoint"])) for _, lab in pairs])
    p_tp = np.array([labels.index(r.touchpoint) for r in results])
    y_s = np.array([SENTIMENTS.index(str(lab["sentiment"])) for _, lab in pairs])
    p_s = np.array([SENTIMENTS.index(r.sentiment) for r in results])
    true_magic = np.array([lab["moment"] == "magic" for _, lab in pairs])
    called_magic = np.array([r.moment == "magic" for r in results])
    recovery = [i for i, (_, lab) in enumerate(pairs) if lab.get("recovery_story")]
    real_only = called_magic & np.array([item.source != "demo" for item, _ in pairs])
    per_source: dict[str, int] = {}
    right_per_source: dict[str, int] = {}
    for (item, _), right in zip(pairs, y_tp == p_tp, strict=True):
        per_source[item.source] = per_source.get(item.source, 0) + 1
        right_per_source[item.source] = right_per_source.get(item.source, 0) + int(right)
    f1 = per_class_f1(y_tp, p_tp, len(labels))
    learnt = learnt_registers(classifier.manifest)
    unseen = [s not in learnt for s in (item.source for item, _ in pairs)]
    return RealSetReport(
        n=len(pairs),
        touchpoint_accuracy=float((y_tp == p_tp).mean()),
        touchpoint_macro_f1=macro_f1(y_tp, p_tp, len(labels)),
        sentiment_accuracy=float((y_s == p_s).mean()),
        sentiment_macro_f1=macro_f1(y_s, p_s, 3),
        magic_precision=float(true_magic[called_magic].mean()) if called_magic.any() else float("nan"),
        magic_called=int(called_magic.sum()),
        magic_recall=float(called_magic[true_magic].mean()) if true_magic.any() else float("nan"),
        magic_called_outside_demo=int(real_only.sum()),
        magic_precision_outside_demo=float(true_magic[real_only].mean()) if real_only.any() else float("nan"),
        recovery_stories=len(recovery),
        recovery_bad_moments=sum(is_bad_moment(results[i]) for i in recovery),
        per_source=per_source,
        touchpoint_accuracy_per_source={k: right_per_source[k] / n for k, n in per_source.items()},
        learnt_from=sorted(learnt & set(per_source)),
        touchpoint_accuracy_unseen=float((y_tp == p_tp)[unseen].mean()) if any(unseen) else float("nan"),
        skipped=realset.skipped,
        touchpoint_per_class_f1={lab: float(f1[i]) for i, lab in enumerate(labels)},
        touchpoint_confusion=confusion(y_tp, p_tp, len(labels)).tolist(),
        labels=labels,
    )


@dataclass
class RecoverySetReport:
    """The classifier on the real recovery-story set: customers writing again after a brand's reply."""

    n: int
    recovery_stories: int
    recovery_bad_moments: int
    """Recovery stories the flag rule would read as a bad moment (the target is none)."""
    recovery_read_positive: int
    recovery_read_magic: int
    positive_posts: int
    positive_bad_moments: int
    """Posts labelled positive (recovery stories or not) read as a bad moment."""
    magic_called: int
    magic_precision: float
    skipped: dict[str, str]


def recovery_set_report(classifier: Classifier, data: Path | None = None) -> RecoverySetReport | str:
    """Metrics on ``models/data/realset/recovery_*.jsonl``, or a one-line reason why there is nothing to measure."""
    from models.realset import RECOVERY_ITEMS_PATH, RECOVERY_LABELS_PATH

    labelled = _labelled_or_reason("recovery set", data, RECOVERY_ITEMS_PATH, RECOVERY_LABELS_PATH)
    if isinstance(labelled, str):
        return labelled
    pairs, loaded = labelled
    results = classifier.classify([str(item.text) for item, _ in pairs])
    stories = [r for (_, lab), r in zip(pairs, results, strict=True) if lab["recovery_story"]]
    positive = [r for (_, lab), r in zip(pairs, results, strict=True) if lab["sentiment"] == "positive"]
    called = [lab["moment"] == "magic" for (_, lab), r in zip(pairs, results, strict=True) if r.moment == "magic"]
    return RecoverySetReport(
        n=len(pairs),
        recovery_stories=len(stories),
        recovery_bad_moments=sum(is_bad_moment(r) for r in stories),
        recovery_read_positive=sum(r.sentiment == "positive" for r in stories),
        recovery_read_magic=sum(r.moment == "magic" for r in stories),
        positive_posts=len(positive),
        positive_bad_moments=sum(is_bad_moment(r) for r in positive),
        magic_called=len(called),
        magic_precision=float(np.mean(called)) if called else float("nan"),
        skipped=loaded.skipped,
    )
