"""The shipped classifier: sentiment, touchpoint, moment and severity for every post.

Per batch, the token embeddings feed up to two stacks of encoder layers (see
:mod:`models.encoder`): the sentiment-tuned one (sentiment head) and the original one
(sentence embeddings: touchpoint head, moment head and zero-shot custom labels). A
model trained with ``--touchpoint-features sentiment`` reads its touchpoint features
from the tuned stack too and skips the original one for the default taxonomy. Two
small TF-IDF models (plain arrays, see :mod:`models.lexical`) are mixed in: one with
the touchpoint head, one with the sentiment head.

Moment and severity rule (documented in MODEL_CARD.md):

* ``misery``: sentiment is negative and the moment head says misery (without a head:
  P(negative) >= ``misery_threshold``);
* ``magic``: sentiment is positive and the moment head says magic (with P(magic) at
  least the manifest's ``magic_min_probability`` when it has one, :mod:`models.magic`;
  without a head: P(positive) >= ``magic_threshold``), or the recovery detector found a
  recovery story that ends positive; with ``magic_needs_relevance`` (:mod:`models.magic`
  decides it on validation), never a post the relevance gate finds off topic: a moment of
  truth is a contact between a customer and a company, and a delighted post about a film
  is none;
* otherwise ``neutral``; posts the encoder cannot read well (non-English, no
  letters) are never misery or magic.
* ``severity`` = 0.5 + 0.5 * P(negative) for misery, 0.5 * P(negative) otherwise, so
  every misery post outranks every other post and, within a group, a more surely
  negative post ranks higher.

A model with a recovery detector (:mod:`models.recovery`) moves P(recovery story) of a
detected post's sentiment mass to positive first: a problem followed by a good outcome
the company brought about is praise, not a complaint.

A review's own rating bounds the text's verdict (:func:`bound_by_rating`, applied by
:func:`classify_posts` and :func:`classify_records`): the customer already said how it went.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from models.encoder import SplitEncoder, Tokenizer, base_model_dir, mean_pool, set_threads, tuned_top
from models.lexical import ARRAYS, SENTIMENT_VOCAB, TOUCHPOINT_VOCAB, Lexical
from models.taxonomy import DEFAULT_TAXONOMY, Taxonomy
from models.textprep import detect_language, has_letters, last_sentence_span, spell_emoji
from moments.records import Classification, Post

log = logging.getLogger("moments.models")
T = TypeVar("T")

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
SENTIMENTS = ("negative", "neutral", "positive")
BATCH_SIZE = 64
INT8 = "dynamic-int8"
"""``manifest.inference.quantize`` value: the encoder's linear maps run int8 (weights and activations)."""

# Confidence multipliers for inputs the English encoder cannot judge well.
FOREIGN_FACTOR = 0.5
NO_LETTERS_FACTOR = 0.3


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable log-softmax."""
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def mix_log_probs(encoder_logits: np.ndarray, lexical_logits: np.ndarray | None, share: float) -> np.ndarray:
    """Sentiment decision scores: ``(1 - share) * log p_encoder + share * log p_lexical``.

    The encoder's alone when there is no lexical model. Training and inference both call
    this, so the mix chosen on validation data is the one that ships.
    """
    scores = log_softmax(encoder_logits)
    if lexical_logits is None or share <= 0:
        return scores
    return (1 - share) * scores + share * log_softmax(lexical_logits)


def _load_lexical(weights: dict[str, torch.Tensor], prefix: str, vocab_path: Path) -> Lexical:
    """A lexical model from its vocabulary file and its arrays in the loaded weights."""
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    return Lexical.from_arrays(vocab, *(weights[f"{prefix}.{name}"].numpy() for name in ARRAYS))


def quantize_linear(stack: nn.ModuleList) -> nn.ModuleList:
    """A copy of ``stack`` whose ``nn.Linear`` layers run in int8 (dynamic quantization).

    Weights are quantized once, per output channel (per-tensor weights cost 0.012 of
    TweetEval val macro-recall, per-channel 0.001); activations are quantized per batch
    on the fly, so a post's scores move slightly with its batch mates. Why: the linear
    maps are ~60% of the encoder's CPU time; the accuracy and speed are measured in
    MODEL_CARD.md. Attention, LayerNorm and GELU stay float32.
    """
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        # torch announces the deprecation of quantized tensor constructors on every load;
        # a user of `moments classify` cannot act on it.
        warnings.filterwarnings("ignore", message=".*quantize_per_", category=UserWarning)
        return quantize_dynamic(stack, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=False)


@dataclass
class RawOutputs:
    """What the networks say about a batch of texts, before any rule is applied."""

    sentiment_logits: np.ndarray  # (N, 3)
    embeddings: np.ndarray | None  # (N, H), L2-normalised base sentence embeddings, when computed
    features: np.ndarray  # (N, H * (len(feature_layers) + 1)), touchpoint head input; its last H: an embedding
    sentiment_pooled: np.ndarray  # (N, H), mean-pooled output of the sentiment-tuned top layers
    # (N, H): the same output pooled over the post's last sentence only (textprep.last_sentence_span),
    # where a customer reports the outcome; None from runtimes that do not compute it.
    last_sentence_pooled: np.ndarray | None = None

    def base_embeddings(self) -> np.ndarray:
        """The base encoder's sentence embeddings (zero-shot space).

        Raises:
            ValueError: This encode skipped the base top layers (``base=False``).
        """
        if self.embeddings is None:
            raise ValueError("these outputs were encoded without the base top layers (encode(..., base=True))")
        return self.embeddings


class Classifier:
    """Loads the encoder and the shipped heads once; :meth:`classify` is cheap to call repeatedly.

    Args:
        artifacts_dir: Folder with ``manifest.json`` and ``weights.safetensors``
            (default: ``$MOMENTS_ARTIFACTS``, else the shipped ``models/artifacts``).
        taxonomy: Touchpoint taxonomy; the default uses the trained head, any other is
            scored zero/few-shot from label prototypes.
        threads: torch CPU threads (default ``MOMENTS_THREADS`` or 2).
        quantize: Run the encoder layers' linear maps in int8 (dynamic quantization).
            Default: what the manifest's ``inference.quantize`` says, overridden by
            ``MOMENTS_QUANTIZE=0|1``; ``False`` gives the float32 reference.
        runtime: Where the network runs (:mod:`models.runtime`): ``torch`` (the reference),
            ``torch-bf16`` (torch in bfloat16 on CPUs with bfloat16 units), ``onnx`` (ONNX
            Runtime, float32, the same outputs) or ``onnx-int8`` (fastest).
            Default: ``MOMENTS_RUNTIME``, else the manifest's ``inference.runtime``, else torch.
    """

    def __init__(
        self,
        artifacts_dir: Path | None = None,
        taxonomy: Taxonomy | None = None,
        threads: int | None = None,
        quantize: bool | None = None,
        runtime: str | None = None,
    ) -> None:
        from safetensors.torch import load_file

        set_threads(threads)
        env_dir = os.environ.get("MOMENTS_ARTIFACTS")
        self.artifacts_dir = Path(artifacts_dir) if artifacts_dir else Path(env_dir) if env_dir else ARTIFACTS_DIR
        manifest_path = self.artifacts_dir / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no model manifest at {manifest_path} (train one with `python -m models.train`)")
        self.manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        self.model_version: str = self.manifest["model_version"]
        model_dir = base_model_dir()
        self.encoder = SplitEncoder(model_dir, trunk_layers=int(self.manifest["trunk_layers"]))
        self.tokenizer = Tokenizer(model_dir, max_tokens=int(self.manifest["max_tokens"]))
        weights = load_file(str(self.artifacts_dir / WEIGHTS))

        # The sentiment branch: a copy of the top layer(s) with the tuned weights.
        sent = self.manifest["sentiment"]
        self.sentiment_top: nn.ModuleList = tuned_top(self.encoder.top, weights, sent.get("lora"))
        self.sentiment_w = weights["sentiment_head.weight"].numpy()
        self.sentiment_b = weights["sentiment_head.bias"].numpy()
        self.sentiment_bias = np.asarray(sent.get("decision_bias", [0.0, 0.0, 0.0]), dtype=np.float32)
        self.sentiment_lexical_share = float(sent.get("lexical_share", 0.0))
        self.sentiment_lexical: Lexical | None = None
        sent_vocab = self.artifacts_dir / SENTIMENT_VOCAB
        if self.sentiment_lexical_share > 0:
            if not sent_vocab.is_file():
                raise FileNotFoundError(f"the manifest mixes in a lexical sentiment model but {sent_vocab} is missing")
            self.sentiment_lexical = _load_lexical(weights, "sentiment_lexical", sent_vocab)

        tp = self.manifest["touchpoint"]
        self.head_labels: list[str] = list(tp["labels"])
        self.feature_layers: list[int] = [int(i) for i in tp.get("feature_layers", [])]
        # "sentiment": the head reads the sentiment-tuned layers, so the default taxonomy
        # needs one stack of layers per post; "base": it reads the original ones.
        self.features_from: str = str(tp.get("features_from", "base"))
        if self.features_from not in ("base", "sentiment"):
            raise ValueError(f"unknown touchpoint features_from {self.features_from!r} in {manifest_path}")
        # The space custom taxonomies are scored in: "sentiment" embeds prototypes and posts
        # through the tuned layers too, so every taxonomy runs one stack of layers per post.
        self.zero_shot_space: str = str(tp.get("zero_shot_space", "base"))
        if self.zero_shot_space not in ("base", "sentiment") or (
            self.zero_shot_space == "sentiment" and self.features_from != "sentiment"
        ):
            raise ValueError(
                f"zero_shot_space {self.zero_shot_space!r} in {manifest_path} needs features_from 'sentiment'"
                if self.zero_shot_space == "sentiment"
                else f"unknown touchpoint zero_shot_space {self.zero_shot_space!r} in {manifest_path}"
            )
        self.unsure_margin = float(tp.get("unsure_margin", 0.0))
        self.touchpoint_w = weights["touchpoint_head.weight"].numpy()
        self.touchpoint_b = weights["touchpoint_head.bias"].numpy()
        self.centroids = weights["touchpoint_centroids"].numpy() if "touchpoint_centroids" in weights else None
        self.temperature = float(tp.get("temperature", 0.05))
        self.lexical_share = float(tp.get("lexical_share", 0.0))
        self.lexical: Lexical | None = None
        vocab_path = self.artifacts_dir / TOUCHPOINT_VOCAB
        if self.lexical_share > 0 and vocab_path.is_file():
            self.lexical = _load_lexical(weights, "lexical", vocab_path)
        self.centroid_weight = float(tp.get("centroid_weight", 1.0))
        # The relevance gate (models.relevance), when the model ships one: chatter goes to `other`.
        self.relevance_w = weights["relevance_head.weight"].numpy() if "relevance_head.weight" in weights else None
        self.relevance_b = weights["relevance_head.bias"].numpy() if "relevance_head.bias" in weights else None
        self.relevance_threshold = float((tp.get("relevance") or {}).get("threshold", 0.0))

        moment = self.manifest["moment"]
        self.misery_threshold = float(moment["misery_threshold"])
        self.magic_threshold = float(moment["magic_threshold"])
        # P(magic) the moment head must reach (models.magic); None: its argmax decides (models before u).
        chosen = moment.get("magic_min_probability")
        self.magic_min_probability: float | None = None if chosen is None else float(chosen)
        # Whether a post the relevance gate finds off topic can still be magic (models.magic).
        self.magic_needs_relevance = bool(moment.get("magic_needs_relevance", False))
        self.moment_w = weights["moment_head.weight"].numpy() if "moment_head.weight" in weights else None
        self.moment_b = weights["moment_head.bias"].numpy() if "moment_head.bias" in weights else None
        # The recovery detector (models.recovery), when the model ships one.
        self.recovery_w = weights["recovery_head.weight"].numpy() if "recovery_head.weight" in weights else None
        self.recovery_b = weights["recovery_head.bias"].numpy() if "recovery_head.bias" in weights else None
        self.recovery_threshold = float((self.manifest.get("recovery") or {}).get("threshold", 1.0))
        from models.recovery import DEFAULT_INPUTS

        self.recovery_inputs = tuple((self.manifest.get("recovery") or {}).get("inputs", DEFAULT_INPUTS))

        from models.runtime import (
            TORCH,
            TORCH_BF16,
            TORCH_RUNTIMES,
            OnnxNetwork,
            choose_runtime,
            store_linears_in_bf16,
        )

        self.runtime = choose_runtime(runtime, self.manifest)
        self.bf16 = self.runtime == TORCH_BF16
        if quantize is None:
            env = os.environ.get("MOMENTS_QUANTIZE")
            quantize = env != "0" if env in ("0", "1") else self.manifest.get("inference", {}).get("quantize") == INT8
            # ONNX Runtime quantizes on its own (onnx-int8); torch's int8 layers cannot be exported.
            quantize = quantize and self.runtime in TORCH_RUNTIMES
        elif quantize and self.runtime not in TORCH_RUNTIMES:
            raise ValueError(f"quantize=True runs torch's int8 layers; runtime {self.runtime!r} cannot take them")
        self.quantized = bool(quantize)
        if self.quantized and self.bf16:
            # int8 layers are a precision of their own: asked for, they run in torch without autocast.
            self.runtime, self.bf16 = TORCH, False
        if self.quantized:
            self.sentiment_top = quantize_linear(self.sentiment_top)
            self.encoder.top = quantize_linear(self.encoder.top)
        if self.bf16:
            store_linears_in_bf16(self.encoder, self.sentiment_top)
        # The one-stack network in ONNX Runtime; calls that need the original layers stay in torch.
        self.network: OnnxNetwork | None = None
        if self.runtime not in TORCH_RUNTIMES:
            if self.features_from != "sentiment":
                raise ValueError(
                    f"runtime {self.runtime!r} runs one-stack models; {self.model_version} runs two stacks"
                )
            runtime_threads = max(1, threads or int(os.environ.get("MOMENTS_THREADS", "2")))
            self.network = OnnxNetwork(self, self.runtime, runtime_threads)

        self.batch_size = BATCH_SIZE
        self.taxonomy = taxonomy or Taxonomy()
        self.use_head = self.taxonomy.is_default
        self.prototypes = self._prototypes(self.taxonomy)

    # --- the network -----------------------------------------------------------------

    def _pad(self, ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(x) for x in ids)
        input_ids = np.full((len(ids), width), self.tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        return torch.from_numpy(input_ids), torch.from_numpy(mask)

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int | None = None,
        base: bool | None = None,
        last_sentence: bool | None = None,
    ) -> RawOutputs:
        """Run the networks over ``texts`` in length-sorted batches; outputs are in input order.

        Args:
            texts: Raw post texts.
            batch_size: Posts per forward pass (default 64).
            base: Also run the original top layers (base sentence embeddings). Default:
                only when something needs them, i.e. a custom taxonomy, or touchpoint
                features read from the original layers. Skipping them is what makes the
                default path one stack of layers per post.
            last_sentence: Also pool the sentiment layers over each post's last sentence
                (``RawOutputs.last_sentence_pooled``). Default: only when the recovery
                detector reads it.
        """
        from models.encoder import Batch

        batch_size = batch_size or self.batch_size
        tuned_features = self.features_from == "sentiment"
        if base is None:
            base = self.needs_base
        if last_sentence is None:
            last_sentence = "last_sentence_pool" in self.recovery_inputs
        spelled = [spell_emoji(t) for t in texts]
        if last_sentence:
            ids, last_marks = self.tokenizer.encode_with_spans(spelled, [last_sentence_span(t) for t in spelled])
        else:
            ids, last_marks = self.tokenizer.encode(spelled), []
        n = len(ids)
        hidden = self.encoder.hidden_size
        emb = np.zeros((n, hidden), dtype=np.float32) if base else None
        pooled_sent = np.zeros((n, hidden), dtype=np.float32)
        pooled_last = np.zeros((n, hidden), dtype=np.float32) if last_sentence else None
        feats = np.zeros((n, hidden * (len(self.feature_layers) + 1)), dtype=np.float32)
        # Sorting by length keeps padding (wasted compute) small; results go back by index.
        order = np.argsort(np.fromiter((len(x) for x in ids), dtype=np.int64, count=n), kind="stable")
        # torch-bf16: matrix products in bfloat16 (models.runtime); every output is read back as float32.
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                input_ids, mask = self._pad([ids[j] for j in idx])
                last_mask = None
                if pooled_last is not None:
                    last_mask = torch.zeros_like(mask)
                    for row, j in enumerate(idx):
                        last_mask[row, : len(last_marks[j])] = torch.tensor(last_marks[j])
                if self.network is not None and not base:
                    # The whole one-stack network in ONNX Runtime (tuned_features holds: see __init__).
                    pooled_sent[idx], feats[idx], last_pool = self.network.run(input_ids, mask, last_mask)
                    if pooled_last is not None and last_pool is not None:
                        pooled_last[idx] = last_pool
                    continue
                trunk, pools = self.encoder.run_trunk_pooled(Batch(input_ids, mask), self.feature_layers)
                tuned_layers = self.feature_layers if tuned_features else []
                tuned, sent_pool, tuned_feats = tuned_outputs(
                    self.encoder, self.sentiment_top, tuned_layers, trunk, pools, mask
                )
                pooled_sent[idx] = sent_pool.float().numpy()
                if pooled_last is not None and last_mask is not None:
                    pooled_last[idx] = mean_pool(tuned, last_mask).float().numpy()
                if tuned_feats is not None:
                    feats[idx] = tuned_feats.float().numpy()
                if emb is not None:
                    top, top_pools = self.encoder.run_top_pooled(trunk, mask, self.feature_layers)
                    base_emb = nn.functional.normalize(mean_pool(top, mask), dim=-1)
                    emb[idx] = base_emb.float().numpy()
                    if not tuned_features:
                        feats[idx] = torch.cat([*pools, *top_pools, base_emb], 1).float().numpy()
        logits = pooled_sent @ self.sentiment_w.T + self.sentiment_b
        return RawOutputs(logits, emb, feats, pooled_sent, pooled_last)

    @property
    def needs_base(self) -> bool:
        """Whether classifying needs the original layers besides the tuned ones (a second stack)."""
        if self.features_from == "base":
            return True
        return not self.use_head and self.zero_shot_space == "base"

    def zero_shot_embeddings(self, raw: RawOutputs) -> np.ndarray:
        """The L2-normalised sentence embeddings custom taxonomies are scored with (see ``zero_shot_space``)."""
        if self.zero_shot_space == "sentiment":
            return raw.features[:, -self.encoder.hidden_size :]
        return raw.base_embeddings()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised sentence embeddings in the zero-shot space (base layers, or the tuned
        ones for a one-stack model)."""
        return self.zero_shot_embeddings(self.encode(texts, base=self.zero_shot_space == "base"))

    def _prototypes(self, taxonomy: Taxonomy) -> np.ndarray:
        """One unit vector per label: mean of its description and examples, plus the
        training-data centroid for default labels (so default labels stay strong when a
        brand extends the taxonomy)."""
        texts: list[str] = []
        spans: list[tuple[int, int]] = []
        for tp in taxonomy.touchpoints:
            start = len(texts)
            texts.extend(tp.prototype_texts())
            spans.append((start, len(texts)))
        emb = self.embed(texts)
        defaults = {tp.id: tp for tp in DEFAULT_TAXONOMY}
        protos = []
        for tp, (s, e) in zip(taxonomy.touchpoints, spans, strict=True):
            desc = emb[s]
            vec = desc if e - s == 1 else 0.5 * desc + 0.5 * emb[s + 1 : e].mean(0)
            if self.centroids is not None and tp.id in self.head_labels and defaults.get(tp.id) == tp:
                vec = vec / np.linalg.norm(vec) + self.centroid_weight * self.centroids[self.head_labels.index(tp.id)]
            protos.append(vec / np.linalg.norm(vec))
        return np.stack(protos).astype(np.float32)

    def touchpoint_probs(
        self, raw: RawOutputs, texts: Sequence[str], gate: bool = True, off_topic: np.ndarray | None = None
    ) -> np.ndarray:
        """Touchpoint probabilities in taxonomy order.

        Default taxonomy: the trained head, averaged with the lexical model when one
        ships, then (unless ``gate`` is false) the relevance gate, which moves chatter to
        ``other`` (:mod:`models.relevance`; ``off_topic``: the rows it fires on, when the
        caller has them from :meth:`off_topic`). Custom taxonomy: softmax over cosine
        similarity to label prototypes.
        """
        if self.use_head:
            probs = softmax(raw.features @ self.touchpoint_w.T + self.touchpoint_b)
            if self.lexical is not None:
                probs = (1 - self.lexical_share) * probs + self.lexical_share * softmax(self.lexical.logits(texts))
            p_relevant = self.relevance_probs(raw) if gate else None
            if p_relevant is not None and "other" in self.taxonomy.ids:
                from models.relevance import gate_to_other

                probs = gate_to_other(
                    probs, p_relevant, self.relevance_threshold, texts, self.taxonomy.ids.index("other"), off_topic
                )
            return probs
        return softmax(self.zero_shot_embeddings(raw) @ self.prototypes.T / self.temperature)

    def relevance_probs(self, raw: RawOutputs) -> np.ndarray | None:
        """P(the post is about a customer's experience with a company) per row (:mod:`models.relevance`);
        None when the model has no gate."""
        if self.relevance_w is None or self.relevance_b is None:
            return None
        from models.relevance import relevance_features, relevance_probability

        return relevance_probability(relevance_features(raw), self.relevance_w, self.relevance_b)

    def off_topic(self, raw: RawOutputs, texts: Sequence[str]) -> np.ndarray | None:
        """The rows the relevance gate sends to ``other`` (:func:`models.relevance.off_topic`);
        None when the model has no gate."""
        p_relevant = self.relevance_probs(raw)
        if p_relevant is None:
            return None
        from models.relevance import off_topic

        return off_topic(p_relevant, self.relevance_threshold, texts)

    def sentiment_probs(self, raw: RawOutputs, texts: Sequence[str]) -> np.ndarray:
        """Sentiment probabilities: the encoder head's log-probabilities, mixed with the
        lexical model's when one ships, plus the validation-tuned decision biases."""
        lexical = self.sentiment_lexical.logits(texts) if self.sentiment_lexical is not None else None
        return softmax(mix_log_probs(raw.sentiment_logits, lexical, self.sentiment_lexical_share) + self.sentiment_bias)

    def moment_head_probs(self, raw: RawOutputs) -> np.ndarray | None:
        """The moment head's probabilities per row (misery, neutral, magic), or None without a head."""
        if self.moment_w is None or self.moment_b is None:
            return None
        x = np.concatenate([raw.sentiment_pooled, raw.features[:, -raw.sentiment_pooled.shape[1] :]], axis=1)
        return softmax(x @ self.moment_w.T + self.moment_b)

    def moment_head_args(self, raw: RawOutputs) -> np.ndarray | None:
        """The moment head's class per row (0 misery, 1 neutral, 2 magic), or None without a head."""
        probs = self.moment_head_probs(raw)
        return None if probs is None else np.asarray(probs.argmax(1))

    def recovery_probs(self, raw: RawOutputs) -> np.ndarray | None:
        """P(the post is a recovery story) per row, 0 where the moment head says misery;
        None when the model has no detector."""
        if self.recovery_w is None or self.recovery_b is None:
            return None
        from models.recovery import gated, recovery_features, recovery_probability

        p = recovery_probability(recovery_features(raw, self.recovery_inputs), self.recovery_w, self.recovery_b)
        return gated(p, self.moment_head_args(raw))

    def outcome_sentiment(self, raw: RawOutputs, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The sentiment the classifier decides: :meth:`sentiment_probs`, with the mass of detected
        recovery stories moved toward positive (:func:`models.recovery.shift_to_positive`).

        Returns the probabilities and the mask of rows the recovery detector fired on.
        """
        sent = self.sentiment_probs(raw, texts)
        p_recovery = self.recovery_probs(raw)
        if p_recovery is None:
            return sent, np.zeros(len(sent), dtype=bool)
        from models.recovery import shift_to_positive

        return shift_to_positive(sent, p_recovery, self.recovery_threshold)

    # --- the public call -------------------------------------------------------------

    def classify(self, texts: Sequence[str]) -> list[Classification]:
        """Classify many texts at once (batched); one :class:`Classification` per text, in order."""
        texts = [t.strip() if isinstance(t, str) else "" for t in texts]
        if not texts:
            return []
        raw = self.encode(texts)
        sent, recovered = self.outcome_sentiment(raw, texts)
        # The gate's firing rows, once: the touchpoints and the magic rule both read them.
        off_topic = self.off_topic(raw, texts)
        tps = self.touchpoint_probs(raw, texts, off_topic=off_topic)
        n_tp = tps.shape[1]
        factor = np.ones(len(texts), dtype=np.float32)
        langs: list[str | None] = []
        for i, text in enumerate(texts):
            if not text:
                lang, foreign = None, False
                factor[i] = 0.0
            else:
                lang, foreign = detect_language(text)
                if foreign:
                    factor[i] = FOREIGN_FACTOR
                elif not has_letters(text):
                    factor[i] = NO_LETTERS_FACTOR
            langs.append(lang)
        # Unsure inputs: pull the scores toward uniform (argmax is kept, severity and
        # confidence drop) rather than passing on a loud guess.
        shrink = factor[:, None]
        sent = shrink * sent + (1 - shrink) / 3
        tps = shrink * tps + (1 - shrink) / n_tp
        empty = np.array([not t for t in texts])
        if empty.any():
            sent[empty] = np.array([0.0, 1.0, 0.0])
            other = self.taxonomy.ids.index("other") if "other" in self.taxonomy.ids else None
            tps[empty] = 1.0 / n_tp if other is None else np.eye(n_tp)[other]
        s_idx = sent.argmax(1)
        t_idx = tps.argmax(1)
        moment, severity = self.moments(sent, raw, unsure=factor < 1.0, recovered=recovered, off_topic=off_topic)
        confidence = np.sqrt(sent.max(1) * tps.max(1)) * factor
        ids = self.taxonomy.ids
        out = []
        for i in range(len(texts)):
            out.append(
                Classification(
                    sentiment=SENTIMENTS[s_idx[i]],
                    sentiment_scores={k: round(float(v), 6) for k, v in zip(SENTIMENTS, sent[i], strict=True)},
                    touchpoint=ids[t_idx[i]],
                    touchpoint_scores={k: round(float(v), 6) for k, v in zip(ids, tps[i], strict=True)},
                    moment=moment[i],
                    severity=round(float(severity[i]), 6),
                    confidence=round(float(np.clip(confidence[i], 0.0, 1.0)), 6),
                    lang=langs[i],
                    model_version=self.model_version,
                )
            )
        return out

    def moments(
        self,
        sent: np.ndarray,
        raw: RawOutputs | None = None,
        unsure: np.ndarray | None = None,
        recovered: np.ndarray | None = None,
        off_topic: np.ndarray | None = None,
    ) -> tuple[list[str], np.ndarray]:
        """Moment label and severity per row (rule in the module docstring).

        With a trained moment head (the shipped model has one), a post is misery/magic
        when the head says so *and* the sentiment agrees (negative/positive); without
        one, or without network outputs, the probability thresholds decide. A recovery
        story the detector found (``recovered``) that ends positive is magic, whatever the
        head says: it is the moment of magic Carlzon meant. With ``magic_needs_relevance``, no
        ``off_topic`` row is magic.
        """
        neg, pos = sent[:, 0], sent[:, 2]
        arg = sent.argmax(1)
        head_probs = self.moment_head_probs(raw) if raw is not None else None  # misery, neutral, magic
        if head_probs is not None:
            head = head_probs.argmax(1)
            misery = (arg == 0) & (head == 0)
            # The head's magic must clear the threshold chosen for precision (models.magic), when
            # the model has one: a moment shared with staff as magic must not be a plain "fine".
            floor = self.magic_min_probability
            head_magic = head == 2 if floor is None else head_probs[:, 2] >= floor
            magic = (arg == 2) & head_magic
            if recovered is not None:
                magic |= (arg == 2) & recovered
        else:
            misery = (arg == 0) & (neg >= self.misery_threshold)
            magic = (arg == 2) & (pos >= self.magic_threshold)
        if self.magic_needs_relevance and off_topic is not None:
            magic &= ~off_topic
        if raw is not None and unsure is not None:
            # Inputs the encoder cannot read well never become a loud moment.
            misery &= ~unsure
            magic &= ~unsure
        labels = np.where(misery, "misery", np.where(magic, "magic", "neutral")).tolist()
        severity = np.where(misery, 0.5 + 0.5 * neg, 0.5 * neg)
        return labels, np.clip(severity, 0.0, 1.0)


def tuned_outputs(
    encoder: SplitEncoder,
    sentiment_top: nn.ModuleList,
    feature_layers: Sequence[int],
    trunk: torch.Tensor,
    pools: Sequence[torch.Tensor],
    mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The sentiment layers over the trunk: their hidden states, their mean pool, and (when
    ``feature_layers`` is not empty: a one-stack model) the touchpoint features read from them.

    The one definition of the one-stack outputs, shared by :meth:`Classifier.encode` and the ONNX
    export (:class:`models.runtime.OneStack`), so the two cannot drift apart.
    """
    tuned, tuned_pools = encoder.run_top_pooled(trunk, mask, list(feature_layers), sentiment_top)
    pooled = mean_pool(tuned, mask)
    if not feature_layers:
        return tuned, pooled, None
    return tuned, pooled, torch.cat([*pools, *tuned_pools, nn.functional.normalize(pooled, dim=-1)], 1)


def load_classifier(
    artifacts_dir: str | Path | None = None,
    taxonomy: Taxonomy | dict[str, Any] | list[Any] | None = None,
    runtime: str | None = None,
) -> Classifier:
    """Load the shipped classifier (once; reuse it for every batch).

    Args:
        artifacts_dir: Override the shipped ``models/artifacts`` folder.
        taxonomy: A :class:`Taxonomy` or its config (mapping or list of touchpoints);
            ``None`` for the default taxonomy.
        runtime: ``torch``, ``onnx`` or ``onnx-int8`` (:mod:`models.runtime`); ``None``:
            ``MOMENTS_RUNTIME``, else the manifest's, else torch.
    """
    if taxonomy is not None and not isinstance(taxonomy, Taxonomy):
        taxonomy = Taxonomy.from_config(taxonomy)
    return Classifier(Path(artifacts_dir) if artifacts_dir else None, taxonomy, runtime=runtime)


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of up to ``size`` items, so a long stream is never held in memory at once."""
    if size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {size}")
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def rating_scale(source: str | None, extra: dict[str, Any] | None = None) -> tuple[float, float] | None:
    """(worst, best) of a post's ``rating`` when it is the customer's own rating on a known scale.

    App Store reviews are 1 to 5 stars. A schema.org review (``jsonld``) carries its scale in
    ``extra`` (``worst_rating``, ``best_rating``), which schema.org defaults to 1 and 5. Other
    sources (an import's ``rating`` column, for one) have no known scale: None.
    """
    if source == "appstore":
        return 1.0, 5.0
    if source == "jsonld":
        extra = extra or {}
        given_worst, given_best = extra.get("worst_rating"), extra.get("best_rating")
        try:
            worst = float(given_worst) if given_worst is not None else 1.0  # 0 is a real worst rating
            best = float(given_best) if given_best is not None else 5.0
        except (TypeError, ValueError):
            return None
        return (worst, best) if best > worst else None
    return None


def bound_by_rating(result: Classification, rating: float | None, scale: tuple[float, float] | None) -> Classification:
    """The classification of a rated review, bounded by the customer's own rating.

    A review rated in the top quarter of its scale (4-5 of 5 stars) is never negative, and
    one in the bottom quarter (1-2 of 5) never positive: the text model's sentiment
    probabilities are renormalised over the classes the rating allows. Why: the text model
    reads complaint words ("cancelled", "delay") and misses the outcome the customer reports,
    but the rating *is* that outcome ("Easy rebooking during the storm. Flight got cancelled
    and the app offered me 3 alternatives", 5 stars). A middle rating, no rating or no known
    scale (:func:`rating_scale`) leaves the result as it is. The moment and severity follow
    the moment rule (misery needs negative, magic positive); touchpoint, confidence and
    language stay the text's.
    """
    if scale is None or rating is None:
        return result
    worst, best = scale
    if not worst <= rating <= best:
        return result
    share = (rating - worst) / (best - worst)
    banned = "negative" if share >= 0.75 else "positive" if share <= 0.25 else None
    if banned is None:
        return result
    scores = dict(result.sentiment_scores)
    scores[banned] = 0.0
    total = sum(scores.values())
    if total <= 0:  # the text was sure of the banned class alone: the rating's side of neutral
        scores = {"negative": 0.0, "neutral": 1.0, "positive": 0.0}
        total = 1.0
    scores = {k: round(v / total, 6) for k, v in scores.items()}
    sentiment = max(SENTIMENTS, key=lambda k: scores[k])
    moment = result.moment
    if (moment == "misery" and sentiment != "negative") or (moment == "magic" and sentiment != "positive"):
        moment = "neutral"
    neg = scores["negative"]
    severity = 0.5 + 0.5 * neg if moment == "misery" else 0.5 * neg
    return result.model_copy(
        update={"sentiment": sentiment, "sentiment_scores": scores, "moment": moment, "severity": round(severity, 6)}
    )


def classify_posts(posts: Iterable[Post], classifier: Classifier, chunk_size: int = 1024) -> Iterator[Post]:
    """Yield the posts with ``classification`` set (every other field untouched), classified in chunks;
    a rated review's own rating bounds its sentiment (:func:`bound_by_rating`)."""
    for chunk in _chunks(posts, chunk_size):
        yield from _classify_chunk(chunk, classifier)


def _classify_chunk(posts: list[Post], classifier: Classifier) -> Iterator[Post]:
    # The title carries meaning for reviews ("Never again"), so it is read with the text.
    texts = [f"{p.title}. {p.text}" if p.title else p.text for p in posts]
    for post, result in zip(posts, classifier.classify(texts), strict=True):
        bounded = bound_by_rating(result, post.rating, rating_scale(post.source, post.extra))
        yield post.model_copy(update={"classification": bounded})


def classify_records(
    records: Iterable[dict[str, Any]], classifier: Classifier, chunk_size: int = 1024
) -> Iterator[dict[str, Any]]:
    """Yield each JSON object with ``classification`` added (or replaced), every other key untouched.

    The lenient counterpart of :func:`classify_posts` for a user's own export: a record
    needs only a string ``text`` (an optional string ``title`` is read with it, as for a
    post). Each record comes out as a new dict with the same keys in the same order;
    ``classification`` keeps its place when the record had one and is appended
    otherwise, as JSON (``Classification.model_dump(mode="json")``). Records are
    classified in chunks, so a long stream is never held in memory at once.

    Raises:
        ValueError: A record is not a dict or has no string ``text`` (filter the input
            with :func:`moments.records.read_objects` first).
    """

    def checked(items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for number, record in enumerate(items, start=1):
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f"record {number} has no string 'text' to classify")
            yield record

    for chunk in _chunks(checked(records), chunk_size):
        yield from _classify_record_chunk(chunk, classifier)


def _record_text(record: dict[str, Any]) -> str:
    """What the classifier reads: ``"{title}. {text}"`` when a record has a string title, else its text.

    The same text :func:`classify_posts` reads for a :class:`Post` with the same fields
    (a post's text is stripped on validation, so it is stripped here too).
    """
    text = str(record["text"]).strip()
    title = record.get("title")
    return f"{title}. {text}" if isinstance(title, str) and title else text


def _classify_record_chunk(records: list[dict[str, Any]], classifier: Classifier) -> Iterator[dict[str, Any]]:
    results = classifier.classify([_record_text(r) for r in records])
    for record, result in zip(records, results, strict=True):
        source, rating, extra = record.get("source"), record.get("rating"), record.get("extra")
        if isinstance(source, str) and isinstance(rating, int | float) and not isinstance(rating, bool):
            result = bound_by_rating(
                result, float(rating), rating_scale(source, extra if isinstance(extra, dict) else None)
            )
        yield {**record, "classification": result.model_dump(mode="json")}
