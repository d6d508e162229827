"""Evaluation of the shipped classifier (used by ``moments eval``, the tests and training reports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.classifier import SENTIMENTS, Classifier
from models.data import load_touchpoints, load_tweeteval
from models.training import confusion, macro_f1, macro_recall, per_class_f1


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
    pred = classifier.sentiment_probs(raw, [t.strip() for t in texts]).argmax(1)
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
