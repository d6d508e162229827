"""The shipped one-stack network in ONNX Runtime against torch: network speed, parity and the validation cost.

``python bench/classify.py --runtime onnx|onnx-int8`` gives the end-to-end rates; this script
isolates the network (tokenising and the heads are the same in every runtime)::

    .venv/bin/python bench/onnx_runtime.py [--n 3000] [--threads 2] [--artifacts DIR] [--skip-validation]

What it does, on the shipped model (which must run one stack: ``features_from`` =
``sentiment``):

1. builds the classifier in each runtime of :mod:`models.runtime` (the export to ONNX,
   and its int8 copy, happen once per model and are cached);
2. times torch float32, runtime float32 and runtime int8 over ``--n`` TweetEval test
   tweets in length-sorted batches of 64, twice each, network only;
3. prints the largest difference between torch's and the runtime's float32 features;
4. unless ``--skip-validation``, prints ``models.validation_report``'s figures for both
   runtime variants (validation data only: TweetEval val, our dev split, the held-out
   mix, recovery val, the written contrast files, the real validation set).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Busy-waiting OpenMP threads crawl on a shared CPU; set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from models.classifier import Classifier
from models.runtime import ONNX, ONNX_INT8, TORCH, OneStack
from models.textprep import spell_emoji

BATCH = 64


def batches(classifier: Classifier, texts: Sequence[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The texts as the classifier pads them: length-sorted batches of :data:`BATCH`."""
    ids = classifier.tokenizer.encode([spell_emoji(t) for t in texts])
    order = np.argsort([len(x) for x in ids], kind="stable")
    return [classifier._pad([ids[j] for j in order[s : s + BATCH]]) for s in range(0, len(ids), BATCH)]


def rate(run: Callable[[], object], n: int) -> float:
    run()  # warm-up
    start = time.perf_counter()
    run()
    return n / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000, help="TweetEval test tweets to time (default 3,000)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and the runtime (default 2)")
    parser.add_argument("--artifacts", type=Path, help="model artifacts folder (default: the shipped one)")
    parser.add_argument("--skip-validation", action="store_true", help="speed and parity only")
    args = parser.parse_args()
    from models import validation_report
    from models.data import load_tweeteval

    torch.set_num_threads(args.threads)
    reference = Classifier(args.artifacts, threads=args.threads, quantize=False, runtime=TORCH)
    if reference.needs_base:
        print(f"{reference.model_version} runs two stacks; the runtime runs one-stack models")
        return 2
    runtimes = {name: Classifier(args.artifacts, threads=args.threads, runtime=name) for name in (ONNX, ONNX_INT8)}
    network = OneStack(reference).eval()
    texts = load_tweeteval("test").texts[: args.n]
    padded = batches(reference, texts)

    def run_torch() -> list[np.ndarray]:
        with torch.inference_mode():
            return [network(input_ids, mask, mask)[1].numpy() for input_ids, mask in padded]

    def runner(classifier: Classifier) -> Callable[[], list[np.ndarray]]:
        assert classifier.network is not None
        run = classifier.network.run
        return lambda: [run(input_ids, mask, None)[1] for input_ids, mask in padded]

    print(f"{reference.model_version}: {len(texts)} TweetEval test tweets, batch {BATCH}, {args.threads} threads")
    for round_ in (1, 2):
        figures = [f"torch float32 {rate(run_torch, len(texts)):.1f}"]
        figures += [f"runtime {name} {rate(runner(c), len(texts)):.1f}" for name, c in runtimes.items()]
        print(f"  round {round_}, network only, posts/s: " + ", ".join(figures))
    largest = float(np.abs(np.concatenate(run_torch()) - np.concatenate(runner(runtimes[ONNX])())).max())
    print(f"  largest |torch - runtime float32| over the features: {largest:.2e}")
    if not args.skip_validation:
        for name, classifier in runtimes.items():
            report = validation_report.report(classifier)
            shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()}
            print(f"  validation, runtime {name}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
