"""Where the encoder is split must not change what the heads read."""

from __future__ import annotations

import numpy as np

from models.encoder import SplitEncoder, Tokenizer
from models.train import FEATURE_LAYERS, embed_texts

TEXTS = ["the app crashed at checkout", "lovely crew, thank you!", "queue at security: 45 min"]


def test_features_do_not_depend_on_the_split() -> None:
    tokenizer = Tokenizer()
    five, emb_five = embed_texts(SplitEncoder(trunk_layers=5), tokenizer, TEXTS)
    four, emb_four = embed_texts(SplitEncoder(trunk_layers=4), tokenizer, TEXTS)
    assert five.shape == (len(TEXTS), 384 * (len(FEATURE_LAYERS) + 1))
    np.testing.assert_allclose(four, five, atol=1e-5)
    np.testing.assert_allclose(emb_four, emb_five, atol=1e-5)
    assert np.allclose(np.linalg.norm(emb_five, axis=1), 1.0, atol=1e-5)
