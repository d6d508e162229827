"""Where the network runs: torch (the reference) or ONNX Runtime, in float32 or int8.

Why: the encoder is most of a post's cost (issue 14's speed aim: 300 posts/s on 2 cores).
ONNX Runtime runs the same network faster on CPU, and its int8 dynamic quantization
runs it at more than twice torch's float32 rate. torch stays the reference: the runtime
is chosen per process, and ``tests/models/test_runtime.py`` holds float32 to torch within
:data:`FLOAT32_TOLERANCE`.

Runtimes (:data:`RUNTIMES`), chosen by ``Classifier(runtime=...)``, else ``MOMENTS_RUNTIME``,
else the manifest's ``inference.runtime``, else ``torch``:

* ``torch``: the network in torch, float32 (or int8 with ``MOMENTS_QUANTIZE=1``);
* ``torch-bf16``: the same network under torch's CPU autocast to bfloat16: matrix products in
  bfloat16 with float32 sums, on the CPU's bfloat16 units (Intel AMX or AVX512-BF16); LayerNorm,
  softmax and the heads stay float32. No export and no per-batch scales: a post's scores move with
  its batch mates by at most a rounding step (:data:`BATCH_JITTER`). About 1.7 times float32's rate end
  to end where the units exist; on a CPU without them it runs as ``torch`` (:func:`choose_runtime`);
* ``onnx``: the same network exported to ONNX and run by ONNX Runtime in float32; the
  same outputs to about 1e-6;
* ``onnx-int8``: that export with its matrix products quantized to int8 (weights per output
  channel; activations per batch, so a post's scores move slightly with its batch mates).
  Fastest, at a small accuracy cost measured in ``models/MODEL_CARD.md``.

Only the one stack a post goes through is exported (token ids in; the tuned layers' pool,
the touchpoint features and the last sentence's pool out). Calls that need the original
top layers too (a custom taxonomy scored in the base space, a two-stack model) run in
torch. The export is written once per model and runtime to the cache folder
(:func:`cache_dir`) and reused by every later process.

Command line (the runtime a model ships with, in its manifest)::

    python -m models.runtime ARTIFACTS --runtime torch-bf16 [--out DIR] [--version V]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from models.encoder import Batch, mean_pool

if TYPE_CHECKING:
    from models.classifier import Classifier

log = logging.getLogger("moments.models")

TORCH = "torch"
TORCH_BF16 = "torch-bf16"
ONNX = "onnx"
ONNX_INT8 = "onnx-int8"
RUNTIMES: tuple[str, ...] = (TORCH, TORCH_BF16, ONNX, ONNX_INT8)
TORCH_RUNTIMES: tuple[str, ...] = (TORCH, TORCH_BF16)
"""The runtimes that run the network in torch itself (no export)."""
BATCH_JITTER: dict[str, float] = {TORCH: 1e-5, ONNX: 1e-5, TORCH_BF16: 0.01}
"""How far a post's scores may move with the batch it is classified in, per runtime. float32 sums in
another order (~1e-6). bfloat16 rounds every matrix product's output, and the CPU's kernels depend
on the batch's shape, so a sum that lands near a rounding step moves one step: measured up to 0.0032
on 250 posts classified together and one by one, with no label changed. int8 in ONNX Runtime scales
activations per batch and is bounded by its parity tests instead."""
FLOAT32_TOLERANCE = 1e-4
"""The largest difference allowed between torch's and ONNX Runtime's float32 outputs (measured: ~4e-7)."""
OPSET = 17
OUTPUTS = ("pooled", "features", "last_pooled")


def choose_runtime(requested: str | None, manifest: dict[str, Any]) -> str:
    """The runtime to use: ``requested``, else ``MOMENTS_RUNTIME``, else the manifest's, else torch.

    ``torch-bf16`` on a CPU without native bfloat16 matrix units (:func:`bf16_is_native`) becomes
    ``torch``, with one log line: emulated bfloat16 is slower than float32 and no more accurate.

    Raises:
        ValueError: The name is not one of :data:`RUNTIMES`.
    """
    name = requested or os.environ.get("MOMENTS_RUNTIME") or (manifest.get("inference") or {}).get("runtime") or TORCH
    if name not in RUNTIMES:
        raise ValueError(
            f"unknown runtime {name!r} (MOMENTS_RUNTIME or runtime=): expected one of {', '.join(RUNTIMES)}"
        )
    if name == TORCH_BF16 and not bf16_is_native():
        log.info("runtime: this CPU has no native bfloat16 (AMX or AVX512-BF16); running %s in float32", TORCH)
        return TORCH
    return str(name)


def bf16_is_native() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX, or AVX512-BF16)."""
    cpu = torch.cpu
    try:
        return bool(cpu._is_amx_tile_supported() or cpu._is_avx512_bf16_supported())
    except AttributeError:  # a torch without these probes: assume not
        return False


def store_linears_in_bf16(*modules: nn.Module) -> int:
    """Keep the matrix-product weights (and biases) of ``modules`` in bfloat16; return how many.

    Why: autocast casts a float32 weight to bfloat16 on every call, and caches the cast only for
    weights that require grad, which frozen inference weights do not: the same cast ran for every
    linear layer in every batch (~8% of ``classify``'s time). Storing them cast gives the very same
    products (autocast would have made exactly these bfloat16 values) without the work. Only for a
    network that runs under autocast (``torch-bf16``): outside it a bfloat16 weight meets float32
    inputs. LayerNorms, embeddings and the heads stay float32.
    """
    count = 0
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, nn.Linear) and layer.weight.dtype == torch.float32:
                layer.to(torch.bfloat16)
                count += 1
    return count


def cache_dir() -> Path:
    """Where exported networks are kept: ``MOMENTS_CACHE_DIR``, else ``$XDG_CACHE_HOME/moments``, else
    ``~/.cache/moments``."""
    if env := os.environ.get("MOMENTS_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "moments"


class OneStack(nn.Module):
    """What ``Classifier.encode`` computes for a one-stack model, as one module to export."""

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        # Registered as submodules, so that the export stores their weights as initializers
        # (the int8 pass quantizes only matrix products whose weights are initializers).
        self.encoder = classifier.encoder
        self.sentiment_top = classifier.sentiment_top
        self.feature_layers = list(classifier.feature_layers)

    def forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor, last_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from models.classifier import tuned_outputs

        trunk, pools = self.encoder.run_trunk_pooled(Batch(input_ids, mask), self.feature_layers)
        tuned, pooled, features = tuned_outputs(
            self.encoder, self.sentiment_top, self.feature_layers, trunk, pools, mask
        )
        assert features is not None  # a one-stack model reads its features from the tuned layers
        return pooled, features, mean_pool(tuned, last_mask)


def _model_key(classifier: Classifier) -> str:
    """What the export depends on: the weights, the network's shape, and the exporting versions."""
    import onnxruntime

    from models.data import sha256_file

    digest = hashlib.sha256(sha256_file(classifier.artifacts_dir / "weights.safetensors").encode())
    digest.update(repr((classifier.manifest.get("base_model"), classifier.feature_layers, OPSET)).encode())
    digest.update(f"{torch.__version__} {onnxruntime.__version__}".encode())
    return digest.hexdigest()[:16]


def export(classifier: Classifier, runtime: str) -> Path:
    """The ONNX file of ``classifier``'s one-stack network for ``runtime``, exported once and cached.

    Written to a temporary name and renamed into place, so processes exporting at the same
    time never read half a file.
    """
    folder = cache_dir() / "onnx"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RuntimeError(
            f"cannot write the ONNX export to {folder} ({error}); set MOMENTS_CACHE_DIR to a writable folder"
        ) from error
    stem = f"{classifier.model_version}-{_model_key(classifier)}"
    path = folder / f"{stem}-{runtime}.onnx"
    if path.is_file():
        return path
    if runtime == ONNX_INT8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        source = export(classifier, ONNX)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            part = Path(tmp) / path.name
            # The quantizer reports every tensor it leaves alone on the root logger (dozens of INFO lines),
            # and warns there that the graph could be pre-processed first: advice for whoever builds
            # models, not for a user whose first int8 run this is. Errors still show.
            root = logging.getLogger()
            level = root.level
            root.setLevel(max(level, logging.ERROR))
            try:
                quantize_dynamic(str(source), str(part), weight_type=QuantType.QInt8, per_channel=True)
            finally:
                root.setLevel(level)
            os.replace(part, path)
        log.info("runtime: wrote %s (int8)", path)
        return path
    network = OneStack(classifier).eval()
    sample = classifier._pad(classifier.tokenizer.encode(["a post to trace the network with", "and another"]))
    dynamic = {0: "batch", 1: "tokens"}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        part = Path(tmp) / path.name
        with torch.inference_mode(), warnings.catch_warnings():
            # transformers' attention asks "q_length > 1 and attention_mask is None"; the mask is always
            # given, so the traced answer (not causal) holds for every input, and the warning is noise.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                network,
                (sample[0], sample[1], sample[1]),
                str(part),
                dynamo=False,
                input_names=["input_ids", "mask", "last_mask"],
                output_names=list(OUTPUTS),
                dynamic_axes={
                    "input_ids": dynamic,
                    "mask": dynamic,
                    "last_mask": dynamic,
                    **{name: {0: "batch"} for name in OUTPUTS},
                },
                opset_version=OPSET,
            )
        os.replace(part, path)
    log.info("runtime: wrote %s", path)
    return path


class OnnxNetwork:
    """The one-stack network in an ONNX Runtime session (float32 or int8)."""

    def __init__(self, classifier: Classifier, runtime: str, threads: int) -> None:
        import onnxruntime as ort

        if runtime not in (ONNX, ONNX_INT8):
            raise ValueError(f"OnnxNetwork runs {ONNX!r} or {ONNX_INT8!r}, not {runtime!r}")
        self.runtime = runtime
        self.path = export(classifier, runtime)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about unused initializers are noise here
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def run(
        self, input_ids: torch.Tensor, mask: torch.Tensor, last_mask: torch.Tensor | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(tuned layers' pool, touchpoint features, last sentence's pool or None) for one padded batch."""
        feeds = {
            "input_ids": input_ids.numpy(),
            "mask": mask.numpy(),
            # Without a last-sentence mask the third output is not wanted; the full mask keeps it cheap.
            "last_mask": (last_mask if last_mask is not None else mask).numpy(),
        }
        pooled, features, last = self.session.run(list(OUTPUTS), feeds)
        return pooled, features, last if last_mask is not None else None


def set_runtime(artifacts: Path, runtime: str, version: str | None = None) -> dict[str, Any]:
    """Write ``runtime`` as the model's default (``inference.runtime``), and ``version`` as its new
    ``model_version`` when given; returns the manifest written."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    path = artifacts / "manifest.json"
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    manifest.setdefault("inference", {})["runtime"] = runtime
    if version:
        manifest["model_version"] = version
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.runtime ARTIFACTS --runtime R [--out DIR] [--version V]``."""
    from models.refit import refit_parser, start

    parser = refit_parser(
        "python -m models.runtime",
        "Set the runtime a model runs in by default (its manifest's inference.runtime); MOMENTS_RUNTIME and "
        "--runtime still override it per process.",
        "runtime",
        version=True,
        data=False,
    )
    parser.add_argument("--runtime", required=True, choices=RUNTIMES, help="the model's default runtime")
    args = parser.parse_args(argv)
    target = start(args)
    manifest = set_runtime(target, args.runtime, args.version)
    print(f"{manifest['model_version']} in {target} runs in {args.runtime} by default")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
