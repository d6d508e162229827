"""LoRA adapters: trained as wrappers, shipped as small factors, merged back at load time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.encoder import LORA_PREFIX, TUNED_TOP_PREFIX, SplitEncoder, Tokenizer, tuned_top
from models.training import LoRALinear, SentimentBranch

TEXTS = ["The gate agent rebooked me in two minutes, legend", "Still no refund after 3 weeks", "ok"]


@pytest.fixture(scope="module")
def encoder() -> SplitEncoder:
    return SplitEncoder(trunk_layers=4)


def _top_output(encoder: SplitEncoder, top: torch.nn.ModuleList) -> torch.Tensor:
    batch = Tokenizer().pad(Tokenizer().encode(TEXTS))
    with torch.inference_mode():
        return encoder.run_top(encoder.run_trunk(batch), batch.attention_mask, top)


def _perturb(branch: SentimentBranch, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in branch.top.modules():
            if isinstance(m, LoRALinear):
                m.lora_b.copy_(torch.randn(m.lora_b.shape, generator=gen) * 0.05)
            elif isinstance(m, torch.nn.LayerNorm):
                m.weight.add_(torch.randn(m.weight.shape, generator=gen) * 0.05)


def test_adapters_start_as_the_base_function_and_train_only_themselves(encoder: SplitEncoder) -> None:
    branch = SentimentBranch(encoder, lora_rank=4, lora_alpha=8.0)
    branch.eval()
    assert torch.allclose(_top_output(encoder, branch.top), _top_output(encoder, encoder.top), atol=1e-6)
    trainable = {n for n, p in branch.top.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "LayerNorm" in n for n in trainable)
    # Every linear layer of both tuned layers is adapted (q, k, v, attention out, FFN in and out).
    assert sum(isinstance(m, LoRALinear) for m in branch.top.modules()) == 2 * 6


def test_stored_adapters_merge_back_to_the_trained_function(encoder: SplitEncoder) -> None:
    branch = SentimentBranch(encoder, lora_rank=4, lora_alpha=8.0)
    _perturb(branch)
    branch.eval()
    stored = branch.top_tensors()
    assert all(k.startswith((LORA_PREFIX, TUNED_TOP_PREFIX)) for k in stored)
    # Far smaller than the layers themselves: adapters + LayerNorms only.
    n_stored = sum(v.numel() for v in stored.values())
    assert n_stored < sum(p.numel() for p in encoder.top.parameters()) / 10
    merged = tuned_top(encoder.top, stored, branch.lora)
    trained = _top_output(encoder, branch.top)
    assert torch.allclose(_top_output(encoder, merged), trained, atol=1e-4)
    assert not torch.allclose(trained, _top_output(encoder, encoder.top), atol=1e-3)
    # Merging works on a copy: the base layers the zero-shot space needs are untouched.
    assert all(not isinstance(m, LoRALinear) for m in merged.modules())


def test_a_full_copy_round_trips_as_float16(encoder: SplitEncoder) -> None:
    branch = SentimentBranch(encoder)
    stored = branch.top_tensors()
    assert all(v.dtype == torch.float16 for v in stored.values())
    merged = tuned_top(encoder.top, stored, None)
    assert torch.allclose(_top_output(encoder, merged), _top_output(encoder, encoder.top), atol=1e-2)


def test_adapters_reload_for_retraining_the_rest(encoder: SplitEncoder, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from models.train import _load_branch

    branch = SentimentBranch(encoder, lora_rank=4, lora_alpha=8.0)
    _perturb(branch, seed=3)
    branch.eval()
    tensors = {
        **branch.top_tensors(),
        "sentiment_head.weight": branch.head.weight.detach(),
        "sentiment_head.bias": branch.head.bias.detach(),
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "weights.safetensors"))
    (tmp_path / "manifest.json").write_text(json.dumps({"sentiment": {"lora": branch.lora}}))
    again = SentimentBranch(encoder, lora_rank=4, lora_alpha=8.0)
    _load_branch(again, tmp_path)
    assert torch.allclose(_top_output(encoder, again.top), _top_output(encoder, branch.top), atol=1e-6)
    with pytest.raises(ValueError, match="--lora-rank"):
        _load_branch(SentimentBranch(encoder), tmp_path)
    with pytest.raises(ValueError, match="--lora-rank"):
        _load_branch(SentimentBranch(encoder, lora_rank=8, lora_alpha=8.0), tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"sentiment": {"lora": None}}))
    with pytest.raises(ValueError, match="--lora-rank"):
        _load_branch(SentimentBranch(encoder, lora_rank=4, lora_alpha=8.0), tmp_path)


def test_an_adapter_for_a_missing_layer_is_refused(encoder: SplitEncoder) -> None:
    branch = SentimentBranch(encoder, lora_rank=2, lora_alpha=2.0)
    stored = branch.top_tensors()
    stored[f"{TUNED_TOP_PREFIX}0.no_such_norm.weight"] = torch.ones(3)
    with pytest.raises(ValueError, match="unknown tuned-layer tensors"):
        tuned_top(encoder.top, stored, branch.lora)


def test_adapters_that_do_not_fit_are_refused(encoder: SplitEncoder) -> None:
    from models.training import load_lora_tensors

    branch = SentimentBranch(encoder, lora_rank=4, lora_alpha=8.0)
    stored = branch.top_tensors()
    dropped = next(k for k in stored if k.startswith(LORA_PREFIX))
    del stored[dropped]
    with pytest.raises(ValueError, match="do not fit"):
        load_lora_tensors(SentimentBranch(encoder, lora_rank=4, lora_alpha=8.0).top, stored)
