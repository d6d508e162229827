"""The shipped one-stack network in ONNX Runtime against torch: speed, parity and the validation cost.

Not a dependency of Moments: ONNX Runtime is measured here as a candidate for issue 14's
speed aim, and the figures in ``models/MODEL_CARD.md`` come from this script. It needs
the runtime and the exporter's packages next to the project's own, for example::

    .venv/bin/python -m pip install onnxruntime==1.32.0 onnx==1.23.2
    .venv/bin/python bench/onnx_runtime.py [--n 3000] [--threads 2] [--artifacts DIR] [--skip-validation]

What it does, on the shipped model (which must run one stack: ``features_from`` =
``sentiment``):

1. exports the network a post goes through (token ids and mask in; the adapted layers'
   pool and the touchpoint features out) with ``torch.onnx.export`` (opset 17) to a
   temporary folder, and an int8 copy with ``onnxruntime.quantization.quantize_dynamic``
   (per-channel weights);
2. times torch float32, runtime float32 and runtime int8 over ``--n`` TweetEval test
   tweets in length-sorted batches of 64, twice each, network only (tokenising and
   the heads are the same in all three);
3. prints the largest difference between torch's and the runtime's float32 features;
4. unless ``--skip-validation``, feeds the runtime's features to the shipped heads and
   prints ``models.validation_report``'s figures for both runtime variants (validation
   data only: TweetEval val, our dev split, the held-out mix, recovery val).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Busy-waiting OpenMP threads crawl on a shared CPU; set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from torch import nn

from models.classifier import Classifier, RawOutputs
from models.encoder import Batch, mean_pool
from models.textprep import spell_emoji

BATCH = 64


class OneStack(nn.Module):
    """What ``Classifier.encode`` computes for a one-stack model, as one module to export."""

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        # Registered as submodules, so that the export stores their weights as initializers
        # (the int8 pass quantizes only matrix products whose weights are initializers).
        self.encoder = classifier.encoder
        self.sentiment_top = classifier.sentiment_top
        self.feature_layers = list(classifier.feature_layers)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trunk, pools = self.encoder.run_trunk_pooled(Batch(input_ids, mask), self.feature_layers)
        tuned, tuned_pools = self.encoder.run_top_pooled(trunk, mask, self.feature_layers, self.sentiment_top)
        pooled = mean_pool(tuned, mask)
        return pooled, torch.cat([*pools, *tuned_pools, nn.functional.normalize(pooled, dim=-1)], 1)


def batches(classifier: Classifier, texts: Sequence[str]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], Any]:
    ids = classifier.tokenizer.encode([spell_emoji(t) for t in texts])
    order = np.argsort([len(x) for x in ids], kind="stable")
    chunks = [order[s : s + BATCH] for s in range(0, len(ids), BATCH)]
    return [classifier._pad([ids[j] for j in chunk]) for chunk in chunks], chunks


def rate(run: Callable[[], object], n: int) -> float:
    run()  # warm-up
    start = time.perf_counter()
    run()
    return n / (time.perf_counter() - start)


def runtime_encode(classifier: Classifier, session: Any) -> Callable[..., RawOutputs]:
    """A drop-in for ``classifier.encode`` that runs the network in the runtime."""

    def encode(
        texts: Sequence[str], batch_size: int | None = None, base: bool | None = None, last_sentence: bool | None = None
    ) -> RawOutputs:
        padded, chunks = batches(classifier, texts)
        pooled = np.zeros((len(texts), classifier.encoder.hidden_size), dtype=np.float32)
        features: np.ndarray | None = None
        for (input_ids, mask), chunk in zip(padded, chunks, strict=True):
            p, f = session.run(["pooled", "features"], {"input_ids": input_ids.numpy(), "mask": mask.numpy()})
            if features is None:
                features = np.zeros((len(texts), f.shape[1]), dtype=np.float32)
            pooled[chunk], features[chunk] = p, f
        assert features is not None
        return RawOutputs(pooled @ classifier.sentiment_w.T + classifier.sentiment_b, None, features, pooled)

    return encode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000, help="TweetEval test tweets to time (default 3,000)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch and the runtime (default 2)")
    parser.add_argument("--artifacts", type=Path, help="model artifacts folder (default: the shipped one)")
    parser.add_argument("--skip-validation", action="store_true", help="speed and parity only")
    args = parser.parse_args()
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        print("needs onnxruntime and onnx: .venv/bin/python -m pip install onnxruntime==1.32.0 onnx==1.23.2")
        return 2
    from models import validation_report
    from models.data import load_tweeteval

    torch.set_num_threads(args.threads)
    classifier = Classifier(args.artifacts, threads=args.threads, quantize=False)
    if classifier.needs_base:
        print(f"{classifier.model_version} runs two stacks; this script measures one-stack models")
        return 2
    network = OneStack(classifier).eval()
    texts = load_tweeteval("test").texts[: args.n]
    padded, _ = batches(classifier, texts)
    folder = Path(tempfile.mkdtemp(prefix="moments-onnx-"))
    fp32_path, int8_path = folder / "one_stack.onnx", folder / "one_stack.int8.onnx"
    dynamic = {0: "batch", 1: "tokens"}
    torch.onnx.export(
        network,
        padded[len(padded) // 2],
        str(fp32_path),
        dynamo=False,
        input_names=["input_ids", "mask"],
        output_names=["pooled", "features"],
        dynamic_axes={"input_ids": dynamic, "mask": dynamic, "pooled": {0: "batch"}, "features": {0: "batch"}},
        opset_version=17,
    )
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions = {
        name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for name, path in (("runtime float32", fp32_path), ("runtime int8", int8_path))
    }
    shutil.rmtree(folder)  # the sessions hold the models in memory

    def run_torch() -> list[np.ndarray]:
        with torch.inference_mode():
            return [network(input_ids, mask)[1].numpy() for input_ids, mask in padded]

    def runner(session: Any) -> Callable[[], list[np.ndarray]]:
        return lambda: [session.run(["features"], {"input_ids": i.numpy(), "mask": m.numpy()})[0] for i, m in padded]

    print(f"{classifier.model_version}: {len(texts)} TweetEval test tweets, batch {BATCH}, {args.threads} threads")
    for round_ in (1, 2):
        figures = [f"torch float32 {rate(run_torch, len(texts)):.1f}"]
        figures += [f"{name} {rate(runner(s), len(texts)):.1f}" for name, s in sessions.items()]
        print(f"  round {round_}, network only, posts/s: " + ", ".join(figures))
    reference = np.concatenate(run_torch())
    exported = np.concatenate(runner(sessions["runtime float32"])())
    print(f"  largest |torch - runtime float32| over the features: {float(np.abs(reference - exported).max()):.2e}")
    if not args.skip_validation:
        for name, session in sessions.items():
            variant = Classifier(args.artifacts, threads=args.threads, quantize=False)
            variant.encode = runtime_encode(variant, session)  # type: ignore[method-assign]
            report = validation_report.report(variant)
            shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()}
            print(f"  validation, heads on {name} features: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
