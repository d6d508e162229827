"""Validation-only figures of a model: ``python -m models.validation_report ARTIFACTS [--fp32] [--int8]``.

What MODEL_CARD.md compares models on before anything reads a test split: TweetEval val,
the held-out sentiment mix of :func:`models.train.sentiment_extra`, our dev split
(touchpoints, moments), our recovery-story val rows, a held-out fifth of BANKING77
*train*, the held-out thirds of the written contrast files (:func:`written_contrast_figures`)
and the real validation set with its delight supplement (:func:`real_validation_figures`). Never a
test split, never the real-text set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from models import data as D
from models.classifier import Classifier
from models.evaluate import is_bad_moment
from models.taxonomy import TOUCHPOINTS
from models.training import macro_f1, macro_recall

MOMENTS = ("misery", "neutral", "magic")


def report(classifier: Classifier) -> dict[str, Any]:
    """The validation figures of one loaded classifier."""
    from models.train import sentiment_extra

    out: dict[str, Any] = {}
    val = D.load_tweeteval("val")
    pred = np.array([D.SENTIMENTS.index(r.sentiment) for r in classifier.classify(val.texts)])
    out["tweeteval_val_macro_recall"] = macro_recall(np.array(val.labels), pred, 3)
    extra = sentiment_extra(None, [], 13)
    pred = np.array([D.SENTIMENTS.index(r.sentiment) for r in classifier.classify(extra.val_texts)])
    out["extra_val_macro_recall"] = macro_recall(extra.val_labels, pred, 3)
    dev, rec = D.load_touchpoints("dev"), D.load_recovery("val")
    rows = dev + rec
    results = classifier.classify([str(r["text"]) for r in rows])
    y_tp = np.array([TOUCHPOINTS.index(str(r["touchpoint"])) for r in dev])
    p_tp = np.array([TOUCHPOINTS.index(r.touchpoint) for r in results[: len(dev)]])
    out["dev_touchpoint_macro_f1"] = macro_f1(y_tp, p_tp, len(TOUCHPOINTS))
    y_m = np.array([MOMENTS.index(str(r["moment"])) for r in rows])
    p_m = np.array([MOMENTS.index(r.moment) for r in results])
    out["moment_macro_f1_dev_and_recovery_val"] = macro_f1(y_m, p_m, 3)
    out["magic_precision_dev_and_recovery_val"] = float((y_m[p_m == 2] == 2).mean()) if (p_m == 2).any() else None
    out["magic_called"] = int((p_m == 2).sum())
    praise = [r for r, row in zip(results[len(dev) :], rec, strict=True) if row["sentiment"] == "positive"]
    out["recovery_val_praise_positive_magic"] = sum(r.sentiment == "positive" and r.moment == "magic" for r in praise)
    out["recovery_val_praise_bad_moment"] = sum(is_bad_moment(r) for r in praise)
    out["recovery_val_praise"] = len(praise)
    texts, labels = D.load_banking77_mapped("train")
    held = [i for i in range(len(texts)) if i % 5 == 4]
    pred = np.array([TOUCHPOINTS.index(r.touchpoint) for r in classifier.classify([texts[i] for i in held])])
    y = np.array([TOUCHPOINTS.index(labels[i]) for i in held])
    out["banking77_heldout_train_macro_f1"] = macro_f1(y, pred, len(TOUCHPOINTS))
    out.update(written_contrast_figures(classifier))
    out.update(real_validation_figures(classifier))
    return out


CONTRAST_FILES = {"contrast": D.CONTRAST_PATH, "self_service": D.SELF_SERVICE_PATH, "follow_ups": D.FOLLOW_UP_PATH}
"""The written files of posts that look like their opposite, by the name their figures carry."""


def written_contrast_figures(classifier: Classifier) -> dict[str, int]:
    """Per contrast file, on its held-out third: praise read negative, and complaints not read as one.

    Why: these are the posts where complaint words and the outcome disagree ("Changed my flight in
    the app, no change fee" is praise; "... and a $75 change fee" is not). A model that reads the
    praise right by reading every such post as praise hides complaints, so both sides are counted.
    """
    out: dict[str, int] = {}
    for name, path in CONTRAST_FILES.items():
        rows = D.load_recovery("val", path=path)
        results = classifier.classify([str(r["text"]) for r in rows])
        praise = [r for r, row in zip(results, rows, strict=True) if row["sentiment"] == "positive"]
        complaints = [r for r, row in zip(results, rows, strict=True) if row["sentiment"] == "negative"]
        out[f"{name}_val_praise"] = len(praise)
        out[f"{name}_val_praise_read_negative"] = sum(r.sentiment == "negative" for r in praise)
        out[f"{name}_val_complaints"] = len(complaints)
        out[f"{name}_val_complaints_read_otherwise"] = sum(r.sentiment != "negative" for r in complaints)
    return out


def real_validation_figures(classifier: Classifier, data: Path | None = None) -> dict[str, Any]:
    """Sentiment and touchpoint on the real validation set (real posts, labelled twice and blind;
    ``models/data/realval``) and how many of its praise posts read as a bad moment; only the reason
    (``realval_unreadable``) when it cannot be read."""
    from models.magic import real_validation_rows

    rows = real_validation_rows(data)
    if isinstance(rows, str):
        return {"realval_unreadable": rows}
    results = classifier.classify([str(row["text"]) for row in rows])
    gold = np.array([D.SENTIMENTS.index(str(row["sentiment"])) for row in rows])
    pred = np.array([D.SENTIMENTS.index(r.sentiment) for r in results])
    praise = [r for row, r in zip(rows, results, strict=True) if row["sentiment"] == "positive"]
    ids = list(classifier.taxonomy.ids)
    tp_gold = np.array([ids.index(str(row["touchpoint"])) for row in rows])
    tp_pred = np.array([ids.index(r.touchpoint) for r in results])
    return {
        "realval_n": len(rows),
        "realval_sentiment_macro_f1": macro_f1(gold, pred, 3),
        "realval_touchpoint_macro_f1": macro_f1(tp_gold, tp_pred, len(ids)),
        "realval_praise": len(praise),
        "realval_praise_bad_moment": sum(is_bad_moment(r) for r in praise),
        **delight_figures(classifier, data),
    }


def delight_figures(classifier: Classifier, data: Path | None = None) -> dict[str, Any]:
    """On the real validation set's delight supplement (``models/data/realval/delight``: praise-leaning
    real posts): magic called and its precision, and the real praise read as a bad moment (praise worded
    without praise words: "I trust the people at Go Sushi, it never disappoints."); only the reason
    (``delight_unreadable``) when it cannot be read."""
    from models.magic import real_validation_rows
    from models.realset import DELIGHT_ITEMS_PATH, DELIGHT_LABELS_PATH

    rows = real_validation_rows(data, DELIGHT_ITEMS_PATH, DELIGHT_LABELS_PATH)
    if isinstance(rows, str):
        return {"delight_unreadable": rows}
    results = classifier.classify([str(row["text"]) for row in rows])
    called = [row for row, r in zip(rows, results, strict=True) if r.moment == "magic"]
    praise = [r for row, r in zip(rows, results, strict=True) if row["sentiment"] == "positive"]
    return {
        "delight_n": len(rows),
        "delight_magic_called": len(called),
        "delight_magic_precision": sum(row["moment"] == "magic" for row in called) / len(called) if called else None,
        "delight_praise": len(praise),
        "delight_praise_bad_moment": sum(is_bad_moment(r) for r in praise),
    }


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line of validation figures per precision asked for."""
    parser = argparse.ArgumentParser(prog="python -m models.validation_report", description=__doc__)
    parser.add_argument("artifacts", type=Path, help="model artifacts folder")
    parser.add_argument("--fp32", action="store_true", help="measure the float32 model")
    parser.add_argument("--int8", action="store_true", help="measure the int8 model")
    args = parser.parse_args(argv)
    modes: list[bool | None] = [q for q, on in ((True, args.int8), (False, args.fp32)) if on]
    modes = modes or [None]
    for quantize in modes:
        classifier = Classifier(args.artifacts, quantize=quantize)
        figures = report(classifier)
        # "int8": torch's int8 layers (--int8); "runtime": where the network ran (MOMENTS_RUNTIME).
        what = {"model": classifier.model_version, "runtime": classifier.runtime, "int8": classifier.quantized}
        print(json.dumps({**what, **figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
