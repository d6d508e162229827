"""The recovery detector: does a post tell of a problem and then a good outcome the company brought about?

Why it exists: the sentiment layers learnt from tweets that a post naming a delay, a
cancellation or a refund is negative, so "refunded my cancelled trip in 2 days without me
even asking" read as a complaint (p 0.88) and opened a flag. A recovery story is the moment
of magic a brand most wants to find, and sending a care agent to it is the worst flag. The
outcome the customer reports needs its own signal; this is it.

What it is: a logistic regression over the classifier's own encoder outputs (the touchpoint
features and the sentiment pool, so it costs no second pass). Its probability ``p`` moves
that share of a post's sentiment mass to positive, when ``p`` reaches the threshold chosen
on validation and the moment head does not call the post misery; a post it moves to
positive is a moment of magic (:mod:`models.classifier`). The gate is there because the
detector alone also fires on long complaint narratives ("lost my luggage 9 days ago ...
and they just"): two signals must agree before a complaint could turn into praise.

What it learns from: the recovery stories and look-alike complaints we wrote
(:data:`DETECTOR_FILES`: ``stories``, ``more_stories`` and the support follow-ups
``follow_ups`` of ``models/data/recovery/``, two rows in three; the third is validation) and, as
posts that are not recovery stories, our touchpoint train posts and samples of TweetEval,
GoEmotions and BANKING77 *train*. The threshold and the regularisation are chosen on
validation only (the held-out thirds, our touchpoint dev posts, TweetEval val, GoEmotions
dev): the largest recovery F-beta (beta 0.5, :data:`BETA`: precision first) whose TweetEval val macro-recall
stays within :data:`MAX_TWEETEVAL_VAL_COST` of the model without the detector and which
detects at most :data:`MAX_MISERY_DETECTED` of the held-out written misery. The real
recovery stories of ``models/data/realset`` (TWCS follow-ups, labelled twice, blind) only
ever evaluate it.

Command line::

    python -m models.recovery ARTIFACTS [--out DIR]    # fit, choose the threshold, write the head
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models import data as D
from models.refit import command_line, refit_parser, start
from models.training import logistic_probability, macro_recall, store_linear_head

if TYPE_CHECKING:
    from models.classifier import Classifier, RawOutputs

log = logging.getLogger("moments.models")

POSITIVE = 2  # index of "positive" in SENTIMENTS
MAX_TWEETEVAL_VAL_COST = 0.002
MAX_MISERY_DETECTED = 0.1
"""At most this share of the validation posts written as misery may be detected: a complaint the detector
turns into praise (often sarcastic thanks: "Thanks for the 'help'") hides a customer in trouble."""
THRESHOLDS: tuple[float, ...] = tuple(round(0.4 + 0.05 * k, 2) for k in range(12))  # 0.40 ... 0.95
GENERAL_TRAIN_ROWS = {"tweeteval": 4000, "goemotions": 3000, "banking77": 2000}
GENERAL_VAL_ROWS = {"goemotions": 1500}
SEED = 13  # models.train's seed: the detector it fits at its end is the one this command refits


DEFAULT_INPUTS: tuple[str, ...] = ("features", "sentiment_pool")
"""The detector's inputs when a manifest names none (model p's detector)."""
CANDIDATE_INPUTS: tuple[tuple[str, ...], ...] = (DEFAULT_INPUTS, (*DEFAULT_INPUTS, "last_sentence_pool"))
"""Input sets a fit tries; validation chooses. The last sentence's pool is where a customer reports
the outcome ("... Restarting does resolve the issue. Thanks.")."""


def recovery_features(raw: RawOutputs, inputs: Sequence[str] = DEFAULT_INPUTS) -> np.ndarray:
    """The detector's input: the named encoder outputs side by side (all from the one pass).

    ``features``: the touchpoint features (pools of several layers); ``sentiment_pool``: the
    sentiment layers' pool; ``last_sentence_pool``: the same layers pooled over the last sentence.
    """
    parts = []
    for name in inputs:
        if name == "features":
            parts.append(raw.features)
        elif name == "sentiment_pool":
            parts.append(raw.sentiment_pooled)
        elif name == "last_sentence_pool":
            if raw.last_sentence_pooled is None:
                raise ValueError("this detector reads the last sentence's pool, which these outputs lack")
            parts.append(raw.last_sentence_pooled)
        else:
            raise ValueError(f"unknown recovery detector input {name!r}")
    return np.concatenate(parts, axis=1)


def recovery_probability(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """P(recovery story) per row of :func:`recovery_features` (a logistic regression)."""
    return logistic_probability(x, weight, bias)


def gated(p_recovery: np.ndarray, moment_head_args: np.ndarray | None) -> np.ndarray:
    """P(recovery story), zeroed where the moment head calls the post misery (its class 0)."""
    return p_recovery if moment_head_args is None else np.where(moment_head_args == 0, 0.0, p_recovery)


def shift_to_positive(sent: np.ndarray, p_recovery: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Move ``p`` of each detected post's sentiment mass to positive; rows under the threshold stay.

    Returns the new probabilities (rows still sum to 1) and the mask of detected rows.
    """
    detected = p_recovery >= threshold
    out = sent.copy()
    if detected.any():
        p = p_recovery[detected, None]
        out[detected] = (1 - p) * sent[detected] + p * np.eye(sent.shape[1])[POSITIVE]
    return out, detected


# --- training data ---------------------------------------------------------------------------


DETECTOR_FILES: tuple[Path, ...] = (*D.RECOVERY_FILES, D.FOLLOW_UP_PATH)
"""The written rows the detector learns from: the recovery files every head reads, and the support
follow-ups only the detector reads (plain "that fixed it, thanks" replies and their look-alikes)."""


def written_rows(split: str) -> list[dict[str, object]]:
    """Our written rows of :data:`DETECTOR_FILES`, ``train`` (two in three) or ``val`` (every third), per file."""
    return [row for path in DETECTOR_FILES for row in D.load_recovery(split, path=path)]


def _sample(texts: Sequence[str], n: int, rng: random.Random) -> list[str]:
    texts = list(dict.fromkeys(texts))
    return rng.sample(texts, min(n, len(texts)))


@dataclass
class Examples:
    texts: list[str]
    labels: np.ndarray  # 1 recovery story, 0 not


def training_examples(data: Path | None = None, seed: int = SEED) -> Examples:
    """Recovery stories (1) against look-alikes, our other posts and general text (0)."""
    rng = random.Random(seed)
    rows = written_rows("train")
    texts = [str(r["text"]) for r in rows]
    labels = [int(bool(r["recovery_story"])) for r in rows]
    # Our touchpoint posts are not recovery stories, except perhaps the magic ones: left out.
    own = [str(r["text"]) for r in D.load_touchpoints("train") if r.get("moment") != "magic"]
    general = _sample(D.load_tweeteval("train", data).texts, GENERAL_TRAIN_ROWS["tweeteval"], rng)
    general += _sample(D.load_goemotions_sentiment("train", data).texts, GENERAL_TRAIN_ROWS["goemotions"], rng)
    # Customers stating a problem with no outcome yet: what a recovery story starts with.
    general += _sample(D.load_banking77_mapped("train", data)[0], GENERAL_TRAIN_ROWS["banking77"], rng)
    texts += own + general
    labels += [0] * (len(own) + len(general))
    return Examples(texts, np.array(labels))


# --- fitting -----------------------------------------------------------------------------------


@dataclass
class RecoveryHead:
    weight: np.ndarray  # (1, F)
    bias: np.ndarray  # (1,)
    threshold: float
    report: dict[str, Any]
    inputs: tuple[str, ...] = DEFAULT_INPUTS


BETA = 0.5
"""The detector is chosen on F-beta with beta 0.5 (precision counts twice as much as recall): a
complaint it turns into praise hides a customer in trouble from the care team, while a recovery
story it misses only keeps the text model's reading."""


def f_beta_score(y: np.ndarray, pred: np.ndarray, beta: float = BETA) -> tuple[float, float, float]:
    """(precision, recall, F-beta) of a boolean prediction against 0/1 labels."""
    tp = float((pred & (y == 1)).sum())
    precision = tp / pred.sum() if pred.any() else 0.0
    recall = tp / (y == 1).sum() if (y == 1).any() else 0.0
    b2 = beta * beta
    f = (1 + b2) * precision * recall / (b2 * precision + recall) if precision + recall else 0.0
    return precision, recall, f


def fit_recovery_head(classifier: Classifier, data: Path | None = None, seed: int = SEED) -> RecoveryHead:
    """Fit the detector on the classifier's own outputs and choose its threshold on validation."""
    from sklearn.linear_model import LogisticRegression

    train = training_examples(data, seed)
    raw_train = classifier.encode(train.texts, last_sentence=True)
    log.info("recovery: %d training texts, %d recovery stories", len(train.texts), int(train.labels.sum()))

    # Validation: our held-out thirds (both kinds), our touchpoint dev posts (complaint narratives
    # in the same voice), TweetEval val (the sentiment target) and GoEmotions dev.
    val_rows = written_rows("val")
    own_dev = [str(r["text"]) for r in D.load_touchpoints("dev") if r.get("moment") != "magic"]
    tweeteval_val = D.load_tweeteval("val", data)
    goemotions_dev = _sample(
        D.load_goemotions_sentiment("dev", data).texts, GENERAL_VAL_ROWS["goemotions"], random.Random(seed)
    )
    val_texts = [str(r["text"]) for r in val_rows] + own_dev + goemotions_dev
    y_val = np.array([int(bool(r["recovery_story"])) for r in val_rows] + [0] * (len(own_dev) + len(goemotions_dev)))
    # The look-alikes: written complaints in a recovery's words ("'fixed', apparently"), not plain complaints.
    misery_val = np.array([r["moment"] == "misery" for r in val_rows] + [False] * (len(own_dev) + len(goemotions_dev)))
    raw_val = classifier.encode(val_texts, last_sentence=True)
    gate_val = classifier.moment_head_args(raw_val)
    raw_te = classifier.encode(tweeteval_val.texts, last_sentence=True)
    gate_te = classifier.moment_head_args(raw_te)
    sent_te = classifier.sentiment_probs(raw_te, [t.strip() for t in tweeteval_val.texts])
    y_te = np.array(tweeteval_val.labels)
    base_recall = macro_recall(y_te, sent_te.argmax(1), 3)

    best: tuple[float, float, float, Any, dict[str, Any]] | None = None
    grid = []
    # Each input set's features (train, validation, TweetEval val), built once for every C.
    features = {
        inputs: tuple(recovery_features(raw, inputs) for raw in (raw_train, raw_val, raw_te))
        for inputs in CANDIDATE_INPUTS
    }
    for inputs, c in ((inputs, c) for inputs in CANDIDATE_INPUTS for c in (0.1, 0.3, 1.0)):
        x, x_val, x_te = features[inputs]
        model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(x, train.labels)
        w, b = model.coef_.astype(np.float32), model.intercept_.astype(np.float32)
        p_val = gated(recovery_probability(x_val, w, b), gate_val)
        p_te = gated(recovery_probability(x_te, w, b), gate_te)
        for t in THRESHOLDS:
            precision, recall, f1 = f_beta_score(y_val, p_val >= t)
            misery_detected = float((p_val[misery_val] >= t).mean())
            shifted, detected = shift_to_positive(sent_te, p_te, t)
            te_recall = macro_recall(y_te, shifted.argmax(1), 3)
            row = {
                "inputs": list(inputs),
                "C": c,
                "threshold": t,
                "val_precision": round(float(precision), 4),
                "val_recall": round(float(recall), 4),
                "val_f_beta": round(float(f1), 4),
                "val_misery_detected": round(misery_detected, 4),
                "tweeteval_val_macro_recall": round(te_recall, 4),
                "tweeteval_val_detected": int(detected.sum()),
            }
            grid.append(row)
            if base_recall - te_recall > MAX_TWEETEVAL_VAL_COST or misery_detected > MAX_MISERY_DETECTED:
                continue
            key = (f1, precision, t)  # F-beta first
            if best is None or key > best[:3]:
                best = (f1, precision, t, (w, b), row)
    if best is None:
        raise RuntimeError("no threshold keeps TweetEval val within its cost and written misery under its bound")
    (w, b), chosen = best[3], best[4]
    log.info("recovery: chose %s (TweetEval val without the detector %.4f)", chosen, base_recall)
    report = {
        "chosen": chosen,
        "tweeteval_val_macro_recall_without": round(base_recall, 4),
        "max_tweeteval_val_cost": MAX_TWEETEVAL_VAL_COST,
        "max_misery_detected": MAX_MISERY_DETECTED,
        "val_misery_posts": int(misery_val.sum()),
        "train_texts": len(train.texts),
        "train_recovery_stories": int(train.labels.sum()),
        "val_texts": len(val_texts),
        "val_recovery_stories": int(y_val.sum()),
        "grid": grid,
    }
    return RecoveryHead(w, b, float(chosen["threshold"]), report, tuple(chosen["inputs"]))


def manifest_section(head: RecoveryHead) -> dict[str, Any]:
    return {
        "head": "logistic regression (class-balanced) on the encoder outputs named in inputs",
        "inputs": list(head.inputs),
        "rule": "p = P(recovery story), 0 where the moment head says misery; when p >= threshold, p of the "
        "sentiment mass moves to positive, and a post that ends positive is magic",
        "threshold": head.threshold,
        "training": "models/data/recovery/ stories, more_stories and follow_ups (two rows in three), our "
        "touchpoint train posts (not the magic ones), samples of TweetEval, GoEmotions and BANKING77 train",
        "validation": "the same files (every third row), our touchpoint dev posts (not the magic "
        "ones), a GoEmotions dev sample, TweetEval val (its macro-recall may fall by at most max_tweeteval_val_cost); "
        "at most max_misery_detected of the written misery rows may be detected",
        "files_sha256": {path.name: D.sha256_file(path) for path in DETECTOR_FILES},
        "report": head.report,
    }


def write_head(artifacts: Path, head: RecoveryHead) -> None:
    """Add the detector to an artifacts folder (weights and manifest), replacing an earlier one."""
    store_linear_head(artifacts, "recovery_head", head.weight, head.bias)
    manifest_path = artifacts / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["recovery"] = manifest_section(head)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.recovery ARTIFACTS [--out DIR]``."""
    parser = refit_parser("python -m models.recovery", __doc__.split("\n\n")[0], "detector", version=False, data=True)
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the general-text samples")
    args = parser.parse_args(argv)
    target = start(args)
    from models.classifier import Classifier

    classifier = Classifier(target, threads=args.threads)
    # Fitting reads the outputs without any earlier detector, so a refit starts from the same place.
    classifier.recovery_w = None
    head = fit_recovery_head(classifier, args.data, args.seed)
    head.report["command"] = command_line("models.recovery", argv)
    write_head(target, head)
    chosen = head.report["chosen"]
    print(
        f"recovery detector written to {target}: threshold {head.threshold}, validation precision "
        f"{chosen['val_precision']}, recall {chosen['val_recall']}; TweetEval val macro-recall "
        f"{chosen['tweeteval_val_macro_recall']} (without: {head.report['tweeteval_val_macro_recall_without']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
