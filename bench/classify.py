"""Throughput of the shipped classifier against the raw encoder, on CPU.

Usage::

    .venv/bin/python bench/classify.py [--n 10000] [--threads 2] [--batch 64] [--artifacts DIR] [--fp32]
                                       [--runtime torch|torch-bf16|onnx|onnx-int8] [--rounds 1]

Measures, over the same ``--n`` real tweets (TweetEval train texts, cycled if needed):

* ``classifier``: ``Classifier.classify`` end to end (emoji words, tokenising, the
  encoder layer stacks the model runs, heads, language detection, building every
  ``Classification``);
* ``raw encoder``: tokenising + a plain ``BertModel`` forward pass with mean pooling,
  length-sorted batches of the same size (what embedding the posts alone costs).

and prints both rates and their ratio (classifier / raw encoder). The raw encoder is
always float32 torch (the reference the ratio is against); the classifier runs as its
manifest and ``MOMENTS_RUNTIME`` say (the shipped model: torch in bfloat16 where the CPU has
bfloat16 units, else float32), in float32 torch with ``--fp32``, or in the runtime ``--runtime``
names (:mod:`models.runtime`: torch in bfloat16, ONNX Runtime in float32 or int8; a runtime's
one-off export happens before the clock starts).

With ``--rounds N`` both are measured N times, alternated in one process (raw, classifier, raw,
...), each round's figures are printed, and then the medians: the machine's speed drifts between
runs (the raw encoder has measured 119 to 427 posts/s on this project's machines), and
alternating is what keeps a ratio honest.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no load report for the pooler we drop
# Busy-waiting OpenMP threads crawl on a shared CPU; set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from models.runtime import ONNX_INT8, RUNTIMES, TORCH

if TYPE_CHECKING:
    from models.classifier import Classifier


def raw_encoder(warm_up: list[str], batch: int) -> Callable[[list[str]], float]:
    """A timer of tokenise + BertModel forward + mean pooling over length-sorted batches (warmed up on
    ``warm_up``): each call runs the texts it is given once and returns posts per second."""
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    from models.encoder import Tokenizer, base_model_dir, mean_pool

    model = BertModel.from_pretrained(str(base_model_dir()), local_files_only=True, add_pooling_layer=False).eval()
    tok = Tokenizer()

    def run(sample: list[str]) -> None:
        ids = tok.encode(sample)
        order = np.argsort([len(x) for x in ids], kind="stable")
        with torch.inference_mode():
            for s in range(0, len(ids), batch):
                b = tok.pad([ids[j] for j in order[s : s + batch]])
                out = model(input_ids=b.input_ids, attention_mask=b.attention_mask).last_hidden_state
                mean_pool(out, b.attention_mask)

    run(warm_up)

    def rate(texts: list[str]) -> float:
        t = time.perf_counter()
        run(texts)
        return len(texts) / (time.perf_counter() - t)

    return rate


def classifier(
    warm_up: list[str], batch: int, artifacts: Path | None, fp32: bool, runtime: str | None = None
) -> tuple[Callable[[list[str]], float], str]:
    """A timer of ``Classifier.classify`` end to end (warmed up on ``warm_up``; each call classifies the
    texts it is given and returns posts per second), and what runs (version, stacks, runtime, precision)."""
    from models.classifier import Classifier

    clf = Classifier(artifacts, quantize=False if fp32 else None, runtime=runtime or (TORCH if fp32 else None))
    clf.batch_size = batch
    clf.classify(warm_up)

    def rate(texts: list[str]) -> float:
        t = time.perf_counter()
        out = clf.classify(texts)
        elapsed = time.perf_counter() - t
        assert len(out) == len(texts)
        return len(texts) / elapsed

    what = (
        f"{clf.model_version}, {'two stacks' if clf.needs_base else 'one stack'}, "
        f"{clf.runtime} runtime, {_precision(clf)}"
    )
    return rate, what


def _precision(clf: Classifier) -> str:
    if clf.quantized or clf.runtime == ONNX_INT8:
        return "int8 dynamic"
    return "bfloat16 matrix products" if clf.bf16 else "float32"


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="posts to classify (default 10,000)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--artifacts", type=Path, help="model artifacts folder (default: the shipped models/artifacts)")
    parser.add_argument(
        "--fp32",
        action="store_true",
        help="run the classifier in float32 torch (the reference), whatever it ships with",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="where the classifier's network runs (default: MOMENTS_RUNTIME, else the manifest's, else torch)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure both this many times, alternated in one process, and print the medians (default 1)",
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    torch.set_num_threads(args.threads)
    os.environ["MOMENTS_THREADS"] = str(args.threads)

    from models.data import load_tweeteval

    pool = load_tweeteval("train").texts

    def sample(round_no: int) -> list[str]:
        # Each round reads posts it has not seen (while the pool lasts): the TF-IDF keeps the columns of
        # words it has met, so a repeated sample would time a warmer classifier than a new post meets.
        return [pool[(round_no * args.n + i) % len(pool)] for i in range(args.n)]

    texts = sample(0)
    mean_chars = sum(map(len, texts)) / len(texts)
    print(
        f"{len(texts)} TweetEval train texts (mean {mean_chars:.0f} chars), batch {args.batch}, {args.threads} threads"
        + (f", {args.rounds} rounds on new texts each" if args.rounds > 1 else "")
    )
    raw_timer = raw_encoder(texts[:256], args.batch)
    clf_timer, what = classifier(texts[:256], args.batch, args.artifacts, args.fp32, args.runtime)
    raws, clfs = [], []
    for round_no in range(args.rounds):
        texts = sample(round_no)
        raws.append(raw_timer(texts))
        clfs.append(clf_timer(texts))
        if args.rounds > 1:
            print(f"round {round_no + 1}:")
        print(f"raw encoder (tokenise + forward + mean pool): {raws[-1]:8.1f} posts/s")
        print(f"classifier (Classifier.classify end to end):  {clfs[-1]:8.1f} posts/s   [{what}]")
        print(f"ratio classifier / raw encoder: {clfs[-1] / raws[-1]:.2f}")
    if args.rounds > 1:
        ratios = [c / r for c, r in zip(clfs, raws, strict=True)]
        print(
            f"median of {args.rounds} rounds: raw encoder {statistics.median(raws):.1f} posts/s, "
            f"classifier {statistics.median(clfs):.1f} posts/s, ratio {statistics.median(ratios):.2f} "
            f"(ratios {min(ratios):.2f}-{max(ratios):.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
