"""``moments classify`` and ``moments eval``: the model stage on the command line.

Heavy imports happen inside the handlers, so registering these commands costs nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moments.cli import Commands
from moments.config import load_config
from moments.errors import UsageError

if TYPE_CHECKING:
    from models.evaluate import RealSetReport

CLASSIFY_HELP = """\
Add a `classification` to every record: sentiment (negative/neutral/positive),
customer-journey touchpoint, moment (misery/magic/neutral), severity in [0, 1],
confidence, detected language and the model version.

Input is JSONL, one JSON object per line; any object with a non-empty string
`text` works: posts as `moments crawl` writes them, or your own export such as
  {"id": "123", "source": "survey", "text": "Two hours on hold"}
A string `title` is read with the text. Every other field is kept exactly as it
is (same keys, same order, unknown keys too); `classification` is added, or
replaced when the line had one. Lines that are not JSON objects with a text are
reported on stderr with their line number and the reason, and skipped. A stats
line goes to stderr at the end.

Strict post validation happens at `moments index`, which needs full posts (id,
source, native_id, crawled_at, ...). To turn an export into posts, use
  moments crawl import --query FILE --config brands.yaml -o posts.jsonl

Examples:
  moments classify posts.jsonl -o classified.jsonl
  moments classify my-export.jsonl -o my-export.classified.jsonl
  moments classify posts.jsonl | jq .classification.moment
  moments classify --text "Two hours on hold and still no refund"
  moments classify posts.jsonl --taxonomy brand.yaml   # custom touchpoints, zero-shot
  moments classify posts.jsonl --config brands.yaml --brand "Northwind Air"   # that brand's taxonomy
  moments classify posts.jsonl --runtime torch   # the float32 reference, on any CPU

A taxonomy file (YAML or JSON) holds a mapping like
  {"mode": "extend", "touchpoints": [{"id": "loyalty", "description": "points, miles, status",
                                      "examples": ["my miles never posted"]}]}
("replace" swaps the default touchpoints for yours; custom labels need no retraining).

--runtime (or MOMENTS_RUNTIME) says where the network runs: torch-bf16 (the shipped
model's default: bfloat16 matrix products on CPUs with AMX or AVX512-BF16, 1.6-1.7 times
float32's rate; plain torch on other CPUs), torch (float32, the reference), onnx (ONNX
Runtime, float32: the same results as torch) or onnx-int8 (int8 matrix products: the
fastest, at the accuracy cost the model card measures). The ONNX network is exported once
per model into MOMENTS_CACHE_DIR.
"""

EVAL_HELP = """\
Measure the SHIPPED model (models/artifacts) on held-out data and print:
  * TweetEval sentiment test: macro-averaged recall (the official metric), accuracy,
    macro-F1 and the confusion matrix;
  * touchpoint macro-F1, per-class F1 and confusion matrix on our dev split
    (models/data/touchpoints/dev.jsonl);
  * the real-text set (models/data/realset, real posts labelled twice and adjudicated):
    touchpoint accuracy and macro-F1, sentiment accuracy and macro-F1, magic precision,
    and how many recovery stories the flag rule would read as a bad moment. Skipped,
    with the reason, while its labels or source datasets are missing;
  * the real recovery-story set (models/data/realset/recovery_*.jsonl: customers writing
    again after a brand's reply, labelled the same way): how many recovery stories, and
    how many posts labelled positive, would open a flag, and magic precision.

Datasets are read from ../shared/datasets next to the repository (override with
--data or MOMENTS_DATASETS). Use --limit for a quick look at the first N test rows.

Examples:
  moments eval
  moments eval --limit 2000 --json
  moments eval --runtime torch         # the float32 reference's figures
  moments eval --runtime onnx-int8     # what the int8 runtime costs
"""


def register(commands: Commands) -> None:
    """Add ``classify`` and ``eval`` to the ``moments`` command line."""
    p = commands.add(
        "classify",
        help="add sentiment, touchpoint and moment to posts (any JSON objects with a text)",
        description=CLASSIFY_HELP,
        handler=_classify,
        options=("config", "brand"),
    )
    p.add_argument("input", nargs="?", type=Path, help="JSONL file of objects with a `text` (omit with --text)")
    p.add_argument("-o", "--output", type=Path, help="write JSONL here (default: stdout)")
    p.add_argument("--text", help="classify one text and print the Classification as JSON")
    p.add_argument("--taxonomy", type=Path, help="YAML/JSON file with a custom touchpoint taxonomy")
    p.add_argument("--artifacts", type=Path, help="model artifacts folder (default: the shipped models/artifacts)")
    _runtime_option(p)

    e = commands.add(
        "eval",
        help="measure the shipped model on held-out data",
        description=EVAL_HELP,
        handler=_eval,
        options=("json",),
    )
    e.add_argument("--data", type=Path, help="datasets folder (default: $MOMENTS_DATASETS or ../shared/datasets)")
    e.add_argument("--artifacts", type=Path, help="model artifacts folder (default: the shipped models/artifacts)")
    e.add_argument("--limit", type=int, help="only the first N TweetEval test rows")
    _runtime_option(e)


def _runtime_option(parser: argparse.ArgumentParser) -> None:
    from models.runtime import RUNTIMES

    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="where the network runs (default: $MOMENTS_RUNTIME, else the model's manifest, else torch)",
    )


def _brand_taxonomy(args: argparse.Namespace) -> Any:
    """``--config F --brand B``: that brand's taxonomy from brands.yaml (``None``: the default one)."""
    if args.brand is None:
        return None
    if args.config is None:
        raise UsageError("--brand needs --config (the brands.yaml that holds the brand's taxonomy)")
    config = load_config(args.config)
    if config.brand(args.brand) is None:
        raise UsageError(f"no brand {args.brand!r} in {args.config}")
    taxonomy = config.taxonomy_for(args.brand)
    return taxonomy.as_mapping() if taxonomy else None


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
    from models.classifier import classify_records, load_classifier
    from moments.records import ReadReport, read_objects, write_objects

    if (args.input is None) == (args.text is None):
        raise UsageError("give an input file or --text (one of them)")
    if args.taxonomy is not None and args.brand is not None:
        raise UsageError("give --taxonomy or --config/--brand, not both")
    started = time.perf_counter()
    taxonomy = _load_taxonomy(args.taxonomy) if args.taxonomy is not None else _brand_taxonomy(args)
    classifier = load_classifier(args.artifacts, taxonomy, runtime=args.runtime)
    if args.text is not None:
        result = classifier.classify([args.text])[0]
        print(json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return 0
    if not args.input.is_file():
        raise UsageError(f"no such input file: {args.input}")
    report = ReadReport()
    # utf-8-sig: exports saved on Windows often start with a byte-order mark.
    with args.input.open(encoding="utf-8-sig") as lines:
        records = classify_records(read_objects(lines, report, source_name=str(args.input)), classifier)
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            with args.output.open("w", encoding="utf-8") as out:
                written = write_objects(records, out)
        else:
            written = write_objects(records, sys.stdout)
    seconds = time.perf_counter() - started
    print(
        f"moments classify: {written} classified, {len(report.dropped)} malformed lines skipped, "
        f"{seconds:.1f}s, model {classifier.model_version} ({classifier.runtime} runtime)",
        file=sys.stderr,
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from models.classifier import load_classifier
    from models.evaluate import (
        format_confusion,
        realset_report,
        recovery_set_report,
        touchpoint_report,
        tweeteval_report,
    )

    classifier = load_classifier(args.artifacts, runtime=args.runtime)
    sent = tweeteval_report(classifier, "test", args.data, args.limit)
    tp = touchpoint_report(classifier)
    real = realset_report(classifier, args.data)
    recovery = recovery_set_report(classifier, args.data)
    if args.json:
        print(
            json.dumps(
                {
                    "model_version": classifier.model_version,
                    "runtime": classifier.runtime,
                    "sentiment_test": asdict(sent),
                    "touchpoint_dev": asdict(tp),
                    "realset": real if isinstance(real, str) else asdict(real),
                    "recovery_set": recovery if isinstance(recovery, str) else asdict(recovery),
                }
            )
        )
        return 0
    slice_note = f" (first {sent.n} rows)" if args.limit else ""
    print(f"model {classifier.model_version} ({classifier.runtime} runtime)")
    print(f"\nTweetEval sentiment test{slice_note}: n={sent.n}")
    print(f"  macro-recall {sent.macro_recall:.4f}   accuracy {sent.accuracy:.4f}   macro-F1 {sent.macro_f1:.4f}")
    print(format_confusion(sent.confusion, sent.labels))
    print(f"\nTouchpoints, our dev split: n={tp.n}")
    print(f"  macro-F1 {tp.macro_f1:.4f}   accuracy {tp.accuracy:.4f}")
    for label, f1 in tp.per_class_f1.items():
        print(f"  {label:<20} F1 {f1:.3f}")
    print(format_confusion(tp.confusion, tp.labels))
    print("\nReal-text set (models/data/realset, adjudicated labels):")
    if isinstance(real, str):
        print(f"  skipped: {real}")
    else:
        _print_realset(real)
    print("\nReal recovery stories (customers writing again after a brand's reply, TWCS; adjudicated labels):")
    if isinstance(recovery, str):
        print(f"  skipped: {recovery}")
        return 0
    print(f"  n={recovery.n}, of which {recovery.recovery_stories} recovery stories")
    print(
        f"  recovery stories read as a bad moment (would open a flag): {recovery.recovery_bad_moments} of "
        f"{recovery.recovery_stories}; read positive {recovery.recovery_read_positive}, magic "
        f"{recovery.recovery_read_magic}"
    )
    print(
        f"  posts labelled positive read as a bad moment: {recovery.positive_bad_moments} of {recovery.positive_posts}"
    )
    print(f"  magic       precision {recovery.magic_precision:.4f} ({recovery.magic_called} called magic)")
    return 0


def _print_realset(real: RealSetReport) -> None:
    from models.evaluate import format_confusion

    sources = ", ".join(f"{k} {v}" for k, v in sorted(real.per_source.items()))
    print(f"  n={real.n} ({sources})")
    for source, reason in real.skipped.items():
        print(f"  left out {source}: {reason}")
    print(f"  touchpoint  accuracy {real.touchpoint_accuracy:.4f}   macro-F1 {real.touchpoint_macro_f1:.4f}")
    # A source whose train split the model learnt from scores in its own register: say so.
    for source, accuracy in sorted(real.touchpoint_accuracy_per_source.items()):
        trained = " (the model learnt from its train split)" if source in real.learnt_from else ""
        print(f"    {source:<11} touchpoint accuracy {accuracy:.3f}{trained}")
    if real.learnt_from:
        unseen = sum(n for s, n in real.per_source.items() if s not in real.learnt_from)
        accuracy = real.touchpoint_accuracy_unseen
        print(f"    the {unseen} items of sources it did not learn from: accuracy {accuracy:.3f}")
    print(f"  sentiment   accuracy {real.sentiment_accuracy:.4f}   macro-F1 {real.sentiment_macro_f1:.4f}")
    print(
        f"  magic       precision {real.magic_precision:.4f} ({real.magic_called} called magic)   "
        f"recall {real.magic_recall:.4f}"
    )
    print(
        f"    outside the demo corpus: precision {real.magic_precision_outside_demo:.4f} "
        f"({real.magic_called_outside_demo} called magic)"
    )
    print(
        f"  recovery stories read as a bad moment (would open a flag): "
        f"{real.recovery_bad_moments} of {real.recovery_stories}"
    )
    print(format_confusion(real.touchpoint_confusion, real.labels))
