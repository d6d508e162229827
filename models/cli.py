"""``moments classify`` and ``moments eval``: the model stage on the command line.

Heavy imports happen inside the handlers, so registering these commands costs nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

CLASSIFY_HELP = """\
Add a `classification` to every post: sentiment (negative/neutral/positive),
customer-journey touchpoint, moment (misery/magic/neutral), severity in [0, 1],
confidence, detected language and the model version.

Input is JSONL of posts (as `moments crawl` writes them). Every input field is kept;
malformed lines are reported with their line number on stderr and skipped. A stats
line goes to stderr at the end.

Examples:
  moments classify posts.jsonl -o classified.jsonl
  moments classify posts.jsonl | jq .classification.moment
  moments classify --text "Two hours on hold and still no refund"
  moments classify posts.jsonl --taxonomy brand.yaml   # custom touchpoints, zero-shot

A taxonomy file (YAML or JSON) holds a mapping like
  {"mode": "extend", "touchpoints": [{"id": "loyalty", "description": "points, miles, status",
                                      "examples": ["my miles never posted"]}]}
("replace" swaps the default touchpoints for yours; custom labels need no retraining).
"""

EVAL_HELP = """\
Measure the SHIPPED model (models/artifacts) on held-out data and print:
  * TweetEval sentiment test: macro-averaged recall (the official metric), accuracy,
    macro-F1 and the confusion matrix;
  * touchpoint macro-F1, per-class F1 and confusion matrix on our dev split
    (models/data/touchpoints/dev.jsonl).

Datasets are read from ../shared/datasets next to the repository (override with
--data or MOMENTS_DATASETS). Use --limit for a quick look at the first N test rows.

Examples:
  moments eval
  moments eval --limit 2000 --json
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``classify`` and ``eval`` to the ``moments`` command line."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "classify", help="add sentiment, touchpoint and moment to posts", description=CLASSIFY_HELP, formatter_class=fmt
    )
    p.add_argument("input", nargs="?", type=Path, help="JSONL file of posts (omit with --text)")
    p.add_argument("-o", "--output", type=Path, help="write JSONL here (default: stdout)")
    p.add_argument("--text", help="classify one text and print the Classification as JSON")
    p.add_argument("--taxonomy", type=Path, help="YAML/JSON file with a custom touchpoint taxonomy")
    p.add_argument("--artifacts", type=Path, help="model artifacts folder (default: the shipped models/artifacts)")
    p.set_defaults(handler=_classify)

    e = subparsers.add_parser(
        "eval", help="measure the shipped model on held-out data", description=EVAL_HELP, formatter_class=fmt
    )
    e.add_argument("--data", type=Path, help="datasets folder (default: $MOMENTS_DATASETS or ../shared/datasets)")
    e.add_argument("--artifacts", type=Path, help="model artifacts folder (default: the shipped models/artifacts)")
    e.add_argument("--limit", type=int, help="only the first N TweetEval test rows")
    e.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    e.set_defaults(handler=_eval)


def _load_taxonomy(path: Path | None) -> Any:
    if path is None:
        return None
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        config = yaml.safe_load(text)
    else:
        config = json.loads(text)
    # Accept either the taxonomy itself or a brand config holding it under `taxonomy`.
    if isinstance(config, dict) and "taxonomy" in config:
        config = config["taxonomy"]
    return config


def _classify(args: argparse.Namespace) -> int:
    from crawlers import ReadReport, read_posts_file, write_posts
    from models.classifier import classify_posts, load_classifier

    if (args.input is None) == (args.text is None):
        print("moments classify: error: give an input file or --text (one of them)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    classifier = load_classifier(args.artifacts, _load_taxonomy(args.taxonomy))
    if args.text is not None:
        result = classifier.classify([args.text])[0]
        print(json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return 0
    if not args.input.is_file():
        raise FileNotFoundError(f"no such input file: {args.input}")
    report = ReadReport()
    posts = classify_posts(read_posts_file(args.input, report), classifier)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("w", encoding="utf-8") as out:
            written = write_posts(posts, out)
    else:
        written = write_posts(posts, sys.stdout)
    seconds = time.perf_counter() - started
    print(
        f"moments classify: {written} classified, {len(report.dropped)} malformed lines skipped, "
        f"{seconds:.1f}s, model {classifier.model_version}",
        file=sys.stderr,
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from models.classifier import load_classifier
    from models.evaluate import format_confusion, touchpoint_report, tweeteval_report

    classifier = load_classifier(args.artifacts)
    sent = tweeteval_report(classifier, "test", args.data, args.limit)
    tp = touchpoint_report(classifier)
    if args.json:
        print(
            json.dumps(
                {
                    "model_version": classifier.model_version,
                    "sentiment_test": asdict(sent),
                    "touchpoint_dev": asdict(tp),
                }
            )
        )
        return 0
    slice_note = f" (first {sent.n} rows)" if args.limit else ""
    print(f"model {classifier.model_version}")
    print(f"\nTweetEval sentiment test{slice_note}: n={sent.n}")
    print(f"  macro-recall {sent.macro_recall:.4f}   accuracy {sent.accuracy:.4f}   macro-F1 {sent.macro_f1:.4f}")
    print(format_confusion(sent.confusion, sent.labels))
    print(f"\nTouchpoints, our dev split: n={tp.n}")
    print(f"  macro-F1 {tp.macro_f1:.4f}   accuracy {tp.accuracy:.4f}")
    for label, f1 in tp.per_class_f1.items():
        print(f"  {label:<20} F1 {f1:.3f}")
    print(format_confusion(tp.confusion, tp.labels))
    return 0
