"""One encoder pass per batch for every taxonomy, and int8 inference held to float32.

A one-stack model (``features_from`` and ``zero_shot_space`` = ``sentiment``, what
``python -m models.train`` now trains) reads the touchpoint head, the moment head and
custom taxonomies' prototypes off the sentiment-tuned layers, so a batch runs the
encoder layers once. The tests build such a model from the shipped artifacts by
switching their manifest (the head weights then read other features, which is fine
for counting passes). int8 dynamic quantization is held to the float32 reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from models.classifier import Classifier
from models.data import load_touchpoints, load_tweeteval
from models.runtime import TORCH
from models.taxonomy import Taxonomy

TEXTS = [
    "my luggage never arrived and no one answers the phone",
    "the crew were wonderful, thank you!",
    "checkout keeps failing on the website",
    "charged twice for the same ticket",
    "waited an hour in the security line",
]
BRAND_TAXONOMY = {
    "mode": "extend",
    "touchpoints": [
        {"id": "loyalty", "description": "points, miles, status tiers", "examples": ["my miles never posted"]},
    ],
}


@contextmanager
def counting(*layers: nn.Module) -> Iterator[list[int]]:
    """Count forward calls of each layer while the block runs."""
    counts = [0] * len(layers)
    handles = []
    for i, layer in enumerate(layers):

        def hook(*_: object, i: int = i) -> None:
            counts[i] += 1

        handles.append(layer.register_forward_hook(hook))
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


@pytest.fixture(scope="module")
def one_stack_dir(tmp_path_factory: pytest.TempPathFactory, artifacts_with: Callable[..., Path]) -> Path:
    """The shipped artifacts with the manifest of a one-stack model."""
    return artifacts_with(tmp_path_factory.mktemp("one_stack"), features_from="sentiment", zero_shot_space="sentiment")


def _first_layers(classifier: Classifier) -> tuple[nn.Module, nn.Module]:
    """The first tuned layer and the first original layer (each runs once per stack pass)."""
    return classifier.sentiment_top[0], classifier.encoder.top[0]


def test_default_taxonomy_runs_the_encoder_once_per_batch(one_stack_dir: Path) -> None:
    classifier = Classifier(one_stack_dir)
    assert not classifier.needs_base
    tuned, base = _first_layers(classifier)
    with counting(tuned, base) as counts:
        classifier.classify(TEXTS)  # one batch
    assert counts == [1, 0]
    with counting(tuned, base) as counts:
        classifier.classify(TEXTS * 30)  # 150 posts: three batches of 64
    assert counts == [3, 0]


def test_custom_taxonomy_runs_the_encoder_once_per_batch(one_stack_dir: Path) -> None:
    custom = Classifier(one_stack_dir, taxonomy=Taxonomy.from_config(BRAND_TAXONOMY))
    assert not custom.use_head and not custom.needs_base
    tuned, base = _first_layers(custom)
    with counting(tuned, base) as counts:
        results = custom.classify(TEXTS)
    assert counts == [1, 0]
    assert {r.touchpoint for r in results} <= set(custom.taxonomy.ids)
    assert custom.classify(["my frequent flyer miles never posted to my account"])[0].touchpoint == "loyalty"


def test_a_two_stack_model_runs_both_stacks(tmp_path: Path, artifacts_with: Callable[..., Path]) -> None:
    # The counter can fail: a model whose touchpoint head reads the original layers (model h,
    # the previous one) runs them as a second stack.
    two = Classifier(artifacts_with(tmp_path, features_from="base", zero_shot_space="base"))
    assert two.needs_base
    tuned, base = _first_layers(two)
    with counting(tuned, base) as counts:
        two.classify(TEXTS)
    assert counts == [1, 1]


def test_the_shipped_model_runs_one_stack(classifier) -> None:  # type: ignore[no-untyped-def]
    tuned, base = _first_layers(classifier)
    with counting(tuned, base) as counts:
        classifier.classify(TEXTS)
    assert not classifier.needs_base
    assert counts == [1, 0]


# Parity: int8 (per-channel weights) against the float32 reference, same model, on a fixed
# slice (the first 300 TweetEval val tweets and our dev split, 545 texts). Measured on
# model h (2-core CPU, both stacks int8): sentiment scores max |d| 0.262, mean 0.024,
# labels agree 95.2%; touchpoint scores max 0.118, mean 0.005, labels agree 92.8% (close
# calls flip). The bounds leave a little room for other CPUs.
PARITY_MAX_ABS = 0.35
PARITY_MEAN_ABS = 0.03
PARITY_MIN_AGREEMENT = 0.90


@pytest.mark.slow
def test_int8_matches_float32_within_tolerance(classifier) -> None:  # type: ignore[no-untyped-def]
    int8 = Classifier(quantize=True)  # the shipped runtime (torch-bf16) gives way to int8 layers
    fp32 = Classifier(runtime=TORCH, quantize=False)
    assert int8.quantized and not fp32.quantized and int8.runtime == TORCH and not int8.bf16
    texts = load_tweeteval("val").texts[:300] + [str(r["text"]) for r in load_touchpoints("dev")]
    q, f = int8.classify(texts), fp32.classify(texts)
    # The text model's sentiment scores, before the recovery detector, and the touchpoint head's,
    # before the relevance gate: both are thresholds, so a post near one may move most of its mass
    # in one mode and not the other; their decisions are held to the label agreement below instead.
    stripped = [t.strip() for t in texts]
    raws = [m.encode(stripped) for m in (int8, fp32)]
    text_scores = [m.sentiment_probs(raw, stripped) for m, raw in zip((int8, fp32), raws, strict=True)]
    touchpoints = [m.touchpoint_probs(raw, stripped, gate=False) for m, raw in zip((int8, fp32), raws, strict=True)]
    for a, b in (text_scores, touchpoints):
        diff = np.abs(a - b)
        assert diff.max() <= PARITY_MAX_ABS, diff.max()
        assert diff.mean() <= PARITY_MEAN_ABS, diff.mean()
        assert (a.argmax(1) == b.argmax(1)).mean() >= PARITY_MIN_AGREEMENT
    assert np.mean([x.sentiment == y.sentiment for x, y in zip(q, f, strict=True)]) >= PARITY_MIN_AGREEMENT
    assert np.mean([x.moment == y.moment for x, y in zip(q, f, strict=True)]) >= PARITY_MIN_AGREEMENT
    assert np.mean([x.touchpoint == y.touchpoint for x, y in zip(q, f, strict=True)]) >= PARITY_MIN_AGREEMENT
