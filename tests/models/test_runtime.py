"""ONNX Runtime against the torch reference (models.runtime).

float32 in the runtime must give torch's outputs within ``FLOAT32_TOLERANCE`` and the same
labels; int8 must stay within the bounds below; the export is written once per model and
reused; a wrong name or a model the runtime cannot run is a clear error.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models import runtime as runtime_module
from models.classifier import Classifier
from models.data import load_touchpoints, load_tweeteval
from models.runtime import (
    BATCH_JITTER,
    FLOAT32_TOLERANCE,
    ONNX,
    ONNX_INT8,
    TORCH,
    TORCH_BF16,
    bf16_is_native,
    cache_dir,
    choose_runtime,
    set_runtime,
)


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache folder of this module's own, so every test here exports into a known place."""
    folder = tmp_path_factory.mktemp("moments-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOMENTS_CACHE_DIR", str(folder))
        patch.delenv("MOMENTS_RUNTIME", raising=False)
        yield folder


@pytest.fixture(scope="module")
def reference(onnx_cache: Path) -> Classifier:
    return Classifier(runtime=TORCH, quantize=False)


@pytest.fixture(scope="module")
def float32(onnx_cache: Path) -> Classifier:
    return Classifier(runtime=ONNX)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    # A fixed slice: the first 300 TweetEval val tweets and our dev split (545 texts).
    return load_tweeteval("val").texts[:300] + [str(r["text"]) for r in load_touchpoints("dev")]


@pytest.mark.slow
def test_float32_in_the_runtime_gives_torchs_outputs(
    reference: Classifier, float32: Classifier, texts: list[str]
) -> None:
    assert float32.runtime == ONNX and float32.network is not None
    # Batches of one token's width and of the longest a post may be, besides the slice.
    texts = [*texts, "", "ok", "the app froze at checkout again " * 80]
    for last_sentence in (False, True):
        a = reference.encode(texts, last_sentence=last_sentence)
        b = float32.encode(texts, last_sentence=last_sentence)
        pairs = [
            (a.sentiment_pooled, b.sentiment_pooled),
            (a.features, b.features),
            (a.sentiment_logits, b.sentiment_logits),
        ]
        if last_sentence:
            assert a.last_sentence_pooled is not None and b.last_sentence_pooled is not None
            pairs.append((a.last_sentence_pooled, b.last_sentence_pooled))
        else:
            assert b.last_sentence_pooled is None
        for x, y in pairs:
            assert x.shape == y.shape
            assert float(np.abs(x - y).max()) <= FLOAT32_TOLERANCE
    ours, theirs = reference.classify(texts), float32.classify(texts)
    for x, y in zip(ours, theirs, strict=True):
        assert (x.sentiment, x.touchpoint, x.moment) == (y.sentiment, y.touchpoint, y.moment)
        assert abs(x.severity - y.severity) <= FLOAT32_TOLERANCE


# int8 in the runtime (weights per output channel, activations per batch) against torch float32
# on the same slice. Measured on model y (2-core CPU): sentiment labels agree 97.0%, touchpoints
# 95.2%, moments 98.6% (close calls flip); the bounds are test_one_stack's for torch's int8.
INT8_MAX_ABS = 0.35
INT8_MEAN_ABS = 0.03
INT8_MIN_AGREEMENT = 0.90


@pytest.mark.slow
def test_int8_in_the_runtime_stays_close_to_float32(onnx_cache: Path, reference: Classifier, texts: list[str]) -> None:
    int8 = Classifier(runtime=ONNX_INT8)
    assert not int8.quantized, "the runtime quantizes; torch's int8 layers stay off"
    stripped = [t.strip() for t in texts]
    # The scores before the two thresholds (recovery detector, relevance gate), whose decisions near
    # the threshold may differ; the labels after them are held to the agreement bound.
    raws = [m.encode(stripped) for m in (int8, reference)]
    scores = [m.sentiment_probs(raw, stripped) for m, raw in zip((int8, reference), raws, strict=True)]
    touchpoints = [
        m.touchpoint_probs(raw, stripped, gate=False) for m, raw in zip((int8, reference), raws, strict=True)
    ]
    q, f = int8.classify(texts), reference.classify(texts)
    for a, b in (scores, touchpoints):
        diff = np.abs(a - b)
        assert 0 < diff.max() <= INT8_MAX_ABS, "int8 moves scores a little, never far"
        assert diff.mean() <= INT8_MEAN_ABS
        assert (a.argmax(1) == b.argmax(1)).mean() >= INT8_MIN_AGREEMENT
    assert np.mean([x.moment == y.moment for x, y in zip(q, f, strict=True)]) >= INT8_MIN_AGREEMENT
    assert np.mean([x.touchpoint == y.touchpoint for x, y in zip(q, f, strict=True)]) >= INT8_MIN_AGREEMENT


# torch-bf16 against torch float32 on the same slice. Measured on model yrb (2-core Xeon with AMX):
# sentiment scores max |d| 0.0077, mean 0.0006, labels agree 99.8%; touchpoint scores max 0.002;
# moments all agree. The bounds leave room for other CPUs' kernels, far inside int8's.
BF16_MAX_ABS = 0.05
BF16_MEAN_ABS = 0.003
BF16_MIN_AGREEMENT = 0.98
needs_bf16_units = pytest.mark.skipif(not bf16_is_native(), reason="this CPU has no bfloat16 units (AMX/AVX512-BF16)")


@needs_bf16_units
def test_bf16_stays_close_to_float32(reference: Classifier, texts: list[str]) -> None:
    bf16 = Classifier(runtime=TORCH_BF16)
    assert bf16.bf16 and bf16.network is None and not bf16.quantized
    stripped = [t.strip() for t in texts]
    raws = [m.encode(stripped) for m in (bf16, reference)]
    scores = [m.sentiment_probs(raw, stripped) for m, raw in zip((bf16, reference), raws, strict=True)]
    touchpoints = [
        m.touchpoint_probs(raw, stripped, gate=False) for m, raw in zip((bf16, reference), raws, strict=True)
    ]
    for a, b in (scores, touchpoints):
        diff = np.abs(a - b)
        assert 0 < diff.max() <= BF16_MAX_ABS, "bfloat16 moves scores a little, never far"
        assert diff.mean() <= BF16_MEAN_ABS
        assert (a.argmax(1) == b.argmax(1)).mean() >= BF16_MIN_AGREEMENT
    q, f = bf16.classify(texts), reference.classify(texts)
    for label in ("sentiment", "touchpoint", "moment"):
        assert (
            np.mean([getattr(x, label) == getattr(y, label) for x, y in zip(q, f, strict=True)]) >= BF16_MIN_AGREEMENT
        )


@needs_bf16_units
def test_bf16_scores_move_with_batch_mates_by_no_more_than_the_jitter(texts: list[str]) -> None:
    bf16 = Classifier(runtime=TORCH_BF16)
    sample = texts[:40]
    together = bf16.classify(sample)
    alone = [bf16.classify([t])[0] for t in sample]
    jitter = BATCH_JITTER[TORCH_BF16]
    for a, b in zip(together, alone, strict=True):
        assert (a.sentiment, a.touchpoint, a.moment) == (b.sentiment, b.touchpoint, b.moment)
        assert abs(a.severity - b.severity) <= jitter
        for name, value in a.sentiment_scores.items():
            assert abs(value - b.sentiment_scores[name]) <= jitter


@needs_bf16_units
def test_bf16_weights_stored_cast_give_what_autocast_would_have_cast(texts: list[str]) -> None:
    bf16 = Classifier(runtime=TORCH_BF16)
    linears = [m for part in (bf16.encoder, bf16.sentiment_top) for m in part.modules() if isinstance(m, nn.Linear)]
    assert linears and all(m.weight.dtype == torch.bfloat16 for m in linears), "stored cast, not cast per call"
    assert bf16.encoder.embeddings.word_embeddings.weight.dtype == torch.float32, "only matrix products"
    stored = bf16.encode([t.strip() for t in texts[:120]])
    for m in linears:  # back to float32 (exact): autocast now casts them on every call, as before
        m.float()
    cast_per_call = bf16.encode([t.strip() for t in texts[:120]])
    assert np.array_equal(stored.features, cast_per_call.features)
    assert np.array_equal(stored.sentiment_pooled, cast_per_call.sentiment_pooled)
    assert np.array_equal(stored.sentiment_logits, cast_per_call.sentiment_logits)
    # The float32 reference keeps float32 weights: outside autocast a bfloat16 weight would meet float32.
    assert all(
        m.weight.dtype == torch.float32 for m in Classifier(runtime=TORCH).encoder.modules() if isinstance(m, nn.Linear)
    )


def test_without_bf16_units_the_bf16_runtime_runs_float32(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    monkeypatch.delenv("MOMENTS_RUNTIME", raising=False)
    monkeypatch.setattr(runtime_module, "bf16_is_native", lambda: False)
    with caplog.at_level(logging.INFO, logger="moments.models"):
        assert choose_runtime(TORCH_BF16, {}) == TORCH
        assert choose_runtime(None, {"inference": {"runtime": TORCH_BF16}}) == TORCH
    assert any("no native bfloat16" in r.getMessage() for r in caplog.records)
    classifier = Classifier()  # the shipped manifest asks for torch-bf16
    assert classifier.runtime == TORCH and not classifier.bf16


def test_the_shipped_model_runs_bf16_where_the_cpu_has_the_units(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOMENTS_RUNTIME", raising=False)
    classifier = Classifier()
    assert classifier.manifest["inference"]["runtime"] == TORCH_BF16
    assert classifier.runtime == (TORCH_BF16 if bf16_is_native() else TORCH)
    assert classifier.bf16 == bf16_is_native()
    monkeypatch.setenv("MOMENTS_RUNTIME", TORCH)
    assert not Classifier().bf16, "MOMENTS_RUNTIME=torch runs the float32 reference anywhere"


def test_the_runtime_command_sets_a_models_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"model_version": "m-1", "inference": {"quantize": None}}))
    assert runtime_module.main([str(tmp_path), "--runtime", ONNX, "--version", "m-2"]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["inference"] == {"quantize": None, "runtime": ONNX} and manifest["model_version"] == "m-2"
    assert "m-2" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        runtime_module.main([str(tmp_path), "--runtime", "tensorrt"])
    assert exit_.value.code == 2
    with pytest.raises(ValueError, match="unknown runtime"):
        set_runtime(tmp_path, "tensorrt")
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest, "a refused runtime writes nothing"


def test_the_export_is_written_once_and_reused(onnx_cache: Path, float32: Classifier) -> None:
    assert float32.network is not None
    path = float32.network.path
    assert path.parent == onnx_cache / "onnx" and path.is_file()
    written = path.stat().st_mtime_ns
    again = Classifier(runtime=ONNX)
    assert again.network is not None and again.network.path == path
    assert path.stat().st_mtime_ns == written
    assert not [p for p in path.parent.iterdir() if p.is_dir()], "no temporary folder is left behind"


def test_other_weights_get_their_own_export(
    onnx_cache: Path, float32: Classifier, tmp_path: Path, artifacts_with: Callable[..., Path]
) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    other = artifacts_with(tmp_path)
    weights = dict(load_file(str(other / "weights.safetensors")))
    name = next(k for k in weights if k.startswith(("sentiment_lora.", "sentiment_top.")))
    weights[name] = weights[name] + torch.full_like(weights[name], 0.01)
    save_file(weights, str(other / "weights.safetensors"))
    changed = Classifier(other, runtime=ONNX)
    assert changed.network is not None and float32.network is not None
    assert changed.network.path != float32.network.path, "a stale export would run the old weights"
    text = ["the crew were wonderful, thank you!"]
    assert float(np.abs(changed.encode(text).features - float32.encode(text).features).max()) > FLOAT32_TOLERANCE


def test_the_runtime_comes_from_the_environment_then_the_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOMENTS_RUNTIME", raising=False)
    assert choose_runtime(None, {}) == TORCH
    assert choose_runtime(None, {"inference": {"runtime": ONNX}}) == ONNX
    monkeypatch.setenv("MOMENTS_RUNTIME", ONNX_INT8)
    assert choose_runtime(None, {"inference": {"runtime": ONNX}}) == ONNX_INT8
    assert choose_runtime(TORCH, {"inference": {"runtime": ONNX}}) == TORCH


def test_a_wrong_runtime_name_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOMENTS_RUNTIME", "tensorrt")
    with pytest.raises(ValueError, match=r"unknown runtime 'tensorrt'.*torch, torch-bf16, onnx, onnx-int8"):
        Classifier()


def test_torch_int8_and_the_runtime_do_not_mix(onnx_cache: Path) -> None:
    with pytest.raises(ValueError, match="quantize=True"):
        Classifier(runtime=ONNX, quantize=True)


def test_a_two_stack_model_refuses_the_runtime(
    onnx_cache: Path, tmp_path: Path, artifacts_with: Callable[..., Path]
) -> None:
    two_stack = artifacts_with(tmp_path, features_from="base", zero_shot_space="base")
    with pytest.raises(ValueError, match="runs two stacks"):
        Classifier(two_stack, runtime=ONNX)


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MOMENTS_CACHE_DIR", str(tmp_path / "a"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("MOMENTS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "moments"


def test_an_unwritable_cache_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MOMENTS_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(RuntimeError, match=r"cannot write the ONNX export.*MOMENTS_CACHE_DIR"):
        Classifier(runtime=ONNX)


def test_a_manifest_can_ship_the_runtime(onnx_cache: Path, tmp_path: Path, artifacts_with: Callable[..., Path]) -> None:
    folder = artifacts_with(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.setdefault("inference", {})["runtime"] = ONNX
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert Classifier(folder).runtime == ONNX
    shutil.rmtree(folder)


def test_the_command_line_takes_the_runtime(onnx_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from moments.cli import main
    from moments.records import Classification

    text = "Two hours on hold and still no refund"
    outputs = {}
    for runtime in (TORCH, ONNX):
        assert main(["classify", "--text", text, "--runtime", runtime]) == 0
        outputs[runtime] = Classification.model_validate_json(capsys.readouterr().out)
    ours, theirs = outputs[TORCH], outputs[ONNX]
    assert (ours.sentiment, ours.touchpoint, ours.moment) == (theirs.sentiment, theirs.touchpoint, theirs.moment)
    assert abs(ours.severity - theirs.severity) <= FLOAT32_TOLERANCE
    with pytest.raises(SystemExit) as exit_:
        main(["classify", "--text", text, "--runtime", "tensorrt"])
    assert exit_.value.code == 2
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err


def test_the_int8_export_is_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # onnxruntime's quantizer logs every tensor it skips at INFO on the root logger; a CLI run at INFO
    # (python -m models.recovery) printed two dozen such lines.
    import logging

    monkeypatch.setenv("MOMENTS_CACHE_DIR", str(tmp_path))
    with caplog.at_level(logging.INFO):
        Classifier(runtime=ONNX_INT8)
        assert logging.getLogger().level == logging.INFO, "the root logger's level is given back"
    assert not [r for r in caplog.records if "Quantization parameters" in r.getMessage()]
    assert not [r for r in caplog.records if "pre-processing" in r.getMessage()], "nor its advice to model builders"
    assert any("int8" in r.getMessage() for r in caplog.records if r.name == "moments.models")
