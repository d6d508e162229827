"""Which of the sentiment layers can run int8, at what cost: speed and TweetEval val, per variant.

Usage::

    .venv/bin/python bench/int8_layers.py [--artifacts DIR] [--threads 2]

For the shipped model's six adapted layers (LoRA merged), it runs TweetEval val (2,000 tweets)
through each variant below, length-sorted batches of 64, and prints the rate of that pass
(tokenising + the layers + mean pooling; the pass is timed once, so compare rows of one run)
and the macro-recall of the shipped sentiment head on its pools (the head alone: no TF-IDF mix,
no decision biases, so the figure isolates what the layers' int8 arithmetic costs):

* float32, the reference;
* int8 everywhere (what ``--quantize int8`` / ``MOMENTS_QUANTIZE=1`` run);
* int8 in the lower five or four layers, the top ones float32;
* int8 in the feed-forward maps only (attention projections float32).

Validation data only; issue 14 asks for the accuracy cost of each speed option.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from torch import nn


def int8_layers(stack: nn.ModuleList, which: range) -> nn.ModuleList:
    """A copy of ``stack`` with the layers in ``which`` quantized (int8 linear maps), the rest as they are."""
    from models.classifier import quantize_linear

    return nn.ModuleList(
        quantize_linear(nn.ModuleList([layer]))[0] if i in which else copy.deepcopy(layer)
        for i, layer in enumerate(stack)
    )


def int8_feed_forward(stack: nn.ModuleList) -> nn.ModuleList:
    """A copy of ``stack`` with only each layer's feed-forward maps (intermediate, output) quantized."""
    from models.classifier import quantize_linear

    out = copy.deepcopy(stack)
    for layer in out:
        layer.intermediate = quantize_linear(nn.ModuleList([layer.intermediate]))[0]
        layer.output = quantize_linear(nn.ModuleList([layer.output]))[0]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, help="model artifacts folder (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from models import data as D
    from models.classifier import Classifier, quantize_linear
    from models.train import pooled_texts
    from models.training import macro_recall

    classifier = Classifier(args.artifacts, threads=args.threads, quantize=False)
    val = D.load_tweeteval("val")
    y = np.asarray(val.labels)
    float_top = classifier.sentiment_top
    n_layers = len(float_top)
    variants = {
        "float32": float_top,
        "int8, every layer": quantize_linear(float_top),
        f"int8, layers 1-{n_layers - 1}": int8_layers(float_top, range(n_layers - 1)),
        f"int8, layers 1-{n_layers - 2}": int8_layers(float_top, range(n_layers - 2)),
        "int8, feed-forward maps only": int8_feed_forward(float_top),
    }
    print(f"{classifier.model_version}: TweetEval val ({len(val.texts)} tweets), batch 64, {args.threads} threads")
    for name, top in variants.items():
        start = time.perf_counter()
        pools = pooled_texts(classifier.encoder, classifier.tokenizer, top, val.texts)
        rate = len(val.texts) / (time.perf_counter() - start)
        logits = pools @ classifier.sentiment_w.T + classifier.sentiment_b
        recall = macro_recall(y, logits.argmax(1), 3)
        print(f"  {name:30s} {rate:6.1f} posts/s   head-alone val macro-recall {recall:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
