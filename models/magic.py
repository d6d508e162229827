"""The magic threshold: how sure the moment head must be before a post is a moment of magic.

Why: a brand manager shares the best moments of magic with staff, so a post called magic
must be one (the issue asks for precision 0.80 on the real-text set). The moment head's
argmax calls plain satisfaction magic too ("The chicken dinner was real good"): model p's
real-text magic precision was 0.48. A post is magic only when the head's P(magic) reaches
``magic_min_probability`` (and the sentiment is positive, as before; a recovery story the
detector found stays magic whatever the head says).

How it is chosen: on validation only (our touchpoint dev split and the held-out third of our
recovery files), as the detector is, by **F0.5** (precision counts twice as much as recall),
over :data:`CANDIDATES`; ``None`` (the argmax) competes too. Ties go to the higher precision.

Command line::

    python -m models.magic ARTIFACTS [--out DIR] [--version V]   # choose the threshold, write it
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models import data as D
from models.recovery import BETA, f_beta_score

if TYPE_CHECKING:
    from models.classifier import Classifier

log = logging.getLogger("moments.models")

CANDIDATES: tuple[float | None, ...] = (None, 0.5, 0.6, 0.7, 0.8, 0.9)


def validation_rows() -> list[dict[str, object]]:
    """Our touchpoint dev posts and the held-out third of our recovery files (never the real set)."""
    return [*D.load_touchpoints("dev"), *D.load_recovery("val")]


def choose_magic_threshold(classifier: Classifier) -> tuple[float | None, dict[str, Any]]:
    """The candidate with the best validation F0.5 of "magic", and the grid it was chosen from."""
    rows = validation_rows()
    texts = [str(r["text"]).strip() for r in rows]
    gold = np.array([r["moment"] == "magic" for r in rows])
    raw = classifier.encode(texts)
    sent, recovered = classifier.outcome_sentiment(raw, texts)
    kept = classifier.magic_min_probability
    grid: list[dict[str, Any]] = []
    best: tuple[float, float, float | None] | None = None
    try:
        for candidate in CANDIDATES:
            classifier.magic_min_probability = candidate
            called = np.array(classifier.moments(sent, raw, recovered=recovered)[0]) == "magic"
            precision, recall, f = f_beta_score(gold.astype(int), called)
            grid.append(
                {
                    "magic_min_probability": candidate,
                    "called": int(called.sum()),
                    "precision": round(float(precision), 4),
                    "recall": round(float(recall), 4),
                    "f_beta": round(float(f), 4),
                }
            )
            if best is None or (f, precision) > best[:2]:
                best = (f, precision, candidate)
    finally:
        classifier.magic_min_probability = kept
    assert best is not None
    chosen = best[2]
    log.info("magic threshold: chose %s from %s", chosen, grid)
    return chosen, {"beta": BETA, "validation_rows": len(rows), "validation_magic": int(gold.sum()), "grid": grid}


def write_threshold(artifacts: Path, threshold: float | None, report: dict[str, Any], version: str | None) -> None:
    """Record the threshold (and how it was chosen) in an artifacts folder's manifest."""
    path = artifacts / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["moment"]["magic_min_probability"] = threshold
    manifest["moment"]["magic_choice"] = {
        "rule": "magic needs the moment head's P(magic) >= magic_min_probability (null: its argmax), chosen on "
        "our dev split + the held-out third of models/data/recovery/*.jsonl by F-beta (beta 0.5)",
        **report,
    }
    if version:
        manifest["model_version"] = version
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.magic ARTIFACTS [--out DIR] [--version V]``."""
    parser = argparse.ArgumentParser(prog="python -m models.magic", description=__doc__.split("\n\n")[0])
    parser.add_argument("artifacts", type=Path, help="a trained model's folder (manifest.json + weights.safetensors)")
    parser.add_argument("--out", type=Path, default=None, help="write a copy here (default: in place)")
    parser.add_argument("--version", default=None, help="a new model_version for the written manifest")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    from models.classifier import Classifier

    target = args.artifacts
    if args.out is not None:
        shutil.copytree(args.artifacts, args.out, dirs_exist_ok=True)
        target = args.out
    classifier = Classifier(target, threads=args.threads)
    threshold, report = choose_magic_threshold(classifier)
    report["command"] = " ".join(["python -m models.magic", *(sys.argv[1:] if argv is None else argv)])
    write_threshold(target, threshold, report, args.version)
    row = next(r for r in report["grid"] if r["magic_min_probability"] == threshold)
    print(
        f"magic threshold written to {target}: {threshold} (validation precision {row['precision']}, "
        f"recall {row['recall']}, {row['called']} called magic)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
