"""Training building blocks: trunk caches, top-layer fine-tuning, bias tuning, metrics.

Kept separate from :mod:`models.train` (the command) so experiments and tests can
reuse the pieces.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.encoder import LORA_PREFIX, TUNED_TOP_PREFIX, SplitEncoder, Tokenizer, extended_mask, mean_pool

Progress = Callable[[int], None]

FEEDBACK_WEIGHT = 5.0
"""How much one care-team correction counts against one training post (``--feedback-weight``)."""


@dataclass
class TrunkCache:
    """Trunk outputs of many texts, stored flat (fp16) with per-text offsets."""

    hidden: torch.Tensor  # (total_tokens, H) float16
    offsets: torch.Tensor  # (N + 1,) int64
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def lengths(self) -> np.ndarray:
        """Token count per text."""
        return (self.offsets[1:] - self.offsets[:-1]).numpy()

    def batch(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded float32 hidden states (B, L, H) and attention mask (B, L) for rows ``idx``."""
        lens = [int(self.offsets[i + 1] - self.offsets[i]) for i in idx]
        width = max(lens)
        out = torch.zeros((len(idx), width, self.hidden.shape[1]), dtype=torch.float32)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, (i, n) in enumerate(zip(idx, lens, strict=True)):
            start = int(self.offsets[i])
            out[row, :n] = self.hidden[start : start + n].float()
            mask[row, :n] = 1
        return out, mask

    @staticmethod
    def concat(caches: Sequence[TrunkCache]) -> TrunkCache:
        """One cache holding the rows of several, in order."""
        hidden = torch.cat([c.hidden for c in caches])
        offs = [caches[0].offsets]
        base = int(caches[0].offsets[-1])
        for c in caches[1:]:
            offs.append(c.offsets[1:] + base)
            base += int(c.offsets[-1])
        return TrunkCache(hidden, torch.cat(offs), torch.cat([c.labels for c in caches]))


def build_trunk_cache(
    encoder: SplitEncoder,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    labels: Sequence[int],
    batch_size: int = 128,
    progress: Progress | None = None,
) -> TrunkCache:
    """Run the frozen trunk once over ``texts`` (length-sorted batches) and keep its outputs."""
    ids = tokenizer.encode(texts)
    lens = np.array([len(x) for x in ids], dtype=np.int64)
    order = np.argsort(lens, kind="stable")
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lens)
    hidden = torch.empty((int(offsets[-1]), encoder.hidden_size), dtype=torch.float16)
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            idx = order[start : start + batch_size]
            out = encoder.run_trunk(tokenizer.pad([ids[j] for j in idx])).half()
            for row, j in enumerate(idx):
                hidden[offsets[j] : offsets[j + 1]] = out[row, : lens[j]]
            if progress:
                progress(len(idx))
    return TrunkCache(hidden, torch.from_numpy(offsets), torch.tensor(list(labels), dtype=torch.long))


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update: ``W x + (alpha / r) * B A x``.

    Why (Hu et al., 2021): tuning every encoder layer this way costs a few hundred
    thousand parameters instead of 22 M, so the artifacts stay small, and ``B`` starts
    at zero, so training starts from the pretrained function exactly.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale


def add_lora(top: nn.ModuleList, rank: int, alpha: float) -> list[str]:
    """Freeze ``top`` except its LayerNorms and wrap every linear layer in a :class:`LoRALinear`.

    Returns:
        The wrapped layers' names (relative to ``top``).
    """
    for p in top.parameters():
        p.requires_grad_(False)
    names = [name for name, m in top.named_modules() if isinstance(m, nn.Linear)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = top.get_submodule(parent_name) if parent_name else top
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha))
    for m in top.modules():
        if isinstance(m, nn.LayerNorm):
            for p in m.parameters():
                p.requires_grad_(True)
    return names


def lora_tensors(top: nn.ModuleList) -> dict[str, torch.Tensor]:
    """What a LoRA-tuned top stores: the adapters (``sentiment_lora.*``) and the tuned LayerNorms
    (``sentiment_top.*``), in the form :func:`models.encoder.tuned_top` merges back."""
    out: dict[str, torch.Tensor] = {}
    for name, m in top.named_modules():
        if isinstance(m, LoRALinear):
            out[f"{LORA_PREFIX}{name}.a"] = m.lora_a.detach().float().contiguous()
            out[f"{LORA_PREFIX}{name}.b"] = m.lora_b.detach().float().contiguous()
        elif isinstance(m, nn.LayerNorm):
            out[f"{TUNED_TOP_PREFIX}{name}.weight"] = m.weight.detach().float().contiguous()
            out[f"{TUNED_TOP_PREFIX}{name}.bias"] = m.bias.detach().float().contiguous()
    return out


def load_lora_tensors(top: nn.ModuleList, stored: dict[str, torch.Tensor]) -> None:
    """Put what :func:`lora_tensors` stored back into a top wrapped by :func:`add_lora`.

    Raises:
        ValueError: The stored adapters or LayerNorms do not fit ``top``.
    """
    state = {k[len(TUNED_TOP_PREFIX) :]: v for k, v in stored.items() if k.startswith(TUNED_TOP_PREFIX)}
    for key, value in stored.items():
        if key.startswith(LORA_PREFIX):
            name, _, part = key[len(LORA_PREFIX) :].rpartition(".")
            state[f"{name}.lora_{part}"] = value
    result = top.load_state_dict(state, strict=False)
    unfilled = [k for k in result.missing_keys if "lora_" in k or "LayerNorm" in k]
    if unfilled or result.unexpected_keys:
        raise ValueError(f"stored adapters do not fit these layers: {(unfilled + result.unexpected_keys)[:3]}")


class SentimentBranch(nn.Module):
    """A trainable copy of the encoder's top layer(s) plus a linear sentiment head.

    Args:
        encoder: The split encoder whose top layers are copied.
        n_classes: Sentiment classes.
        lora_rank: 0 tunes every weight of the copy; ``r > 0`` tunes rank-``r``
            adapters on its linear layers (and its LayerNorms) instead.
        lora_alpha: Adapter scale numerator (the update is scaled by ``alpha / r``).
    """

    def __init__(self, encoder: SplitEncoder, n_classes: int = 3, lora_rank: int = 0, lora_alpha: float = 16.0) -> None:
        super().__init__()
        self.top = copy.deepcopy(encoder.top)
        self.lora = {"rank": lora_rank, "alpha": lora_alpha} if lora_rank > 0 else None
        if lora_rank > 0:
            add_lora(self.top, lora_rank, lora_alpha)
        else:
            for p in self.top.parameters():
                p.requires_grad_(True)
        self.head = nn.Linear(encoder.hidden_size, n_classes)

    def top_tensors(self) -> dict[str, torch.Tensor]:
        """The tuned layers as the artifacts store them (see :func:`models.encoder.tuned_top`).

        Full copies are stored as float16 (half the bytes; loading casts them back to the
        float32 they run as); adapters as float32 (they are small).
        """
        if self.lora is not None:
            return lora_tensors(self.top)
        return {f"{TUNED_TOP_PREFIX}{k}": v.detach().half().contiguous() for k, v in self.top.state_dict().items()}

    def pooled(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled output of the tuned top layer(s)."""
        mask = extended_mask(attention_mask, hidden.dtype)
        for layer in self.top:
            hidden = layer(hidden, mask)
        return mean_pool(hidden, attention_mask)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sentiment logits (B, C)."""
        return self.head(self.pooled(hidden, attention_mask))


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar-length rows (less padding, same randomness across runs with a seed)."""
    perm = rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches: list[np.ndarray] = []
    for s in range(0, len(perm), chunk):
        part = perm[s : s + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


@dataclass
class FitConfig:
    """Hyper-parameters of the sentiment top-layer fine-tune."""

    epochs: float = 2.0
    batch_size: int = 32
    lr_top: float = 4e-5
    lr_head: float = 2e-3
    weight_decay: float = 0.01
    warmup: float = 0.06
    logit_adjust: float = 1.0  # tau of the logit-adjusted loss; 0 = plain cross-entropy
    seed: int = 13


def fit_sentiment(
    branch: SentimentBranch,
    train: TrunkCache,
    cfg: FitConfig,
    progress: Progress | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> None:
    """Fine-tune the branch on a trunk cache with the logit-adjusted loss.

    Why logit adjustment (Menon et al., 2021): adding ``tau * log(prior)`` to the
    logits during training and dropping it at inference makes the model's argmax
    target the *balanced* error, which is what macro-averaged recall measures and
    what a test set with a different class balance needs.
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    counts = torch.bincount(train.labels, minlength=branch.head.out_features).float()
    log_prior = torch.log(counts / counts.sum())
    adjust = cfg.logit_adjust * log_prior
    params = [
        {
            "params": [p for p in branch.top.parameters() if p.requires_grad],
            "lr": cfg.lr_top,
            "weight_decay": cfg.weight_decay,
        },
        {"params": list(branch.head.parameters()), "lr": cfg.lr_head, "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(params)
    lengths = train.lengths()
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = max(1, int(steps_per_epoch * cfg.epochs))
    warm = max(1, int(total * cfg.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    branch.train()
    step, epoch = 0, 0
    while step < total:
        for idx in length_bucketed_batches(lengths, cfg.batch_size, rng):
            if step >= total:
                break
            hidden, mask = train.batch(idx.tolist())
            logits = branch(hidden, mask) + adjust
            loss = nn.functional.cross_entropy(logits, train.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if progress:
                progress(len(idx))
        epoch += 1
        if on_epoch:
            branch.eval()
            on_epoch(epoch)
            branch.train()
    branch.eval()


def branch_logits(branch: SentimentBranch, cache: TrunkCache, batch_size: int = 256) -> np.ndarray:
    """Logits of the branch over every row of a cache (inference mode, length-sorted)."""
    order = np.argsort(cache.lengths(), kind="stable")
    out = np.zeros((len(cache), branch.head.out_features), dtype=np.float32)
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            hidden, mask = cache.batch(idx.tolist())
            out[idx] = branch(hidden, mask).numpy()
    return out


def branch_pooled(top: nn.ModuleList, cache: TrunkCache, batch_size: int = 256) -> np.ndarray:
    """Mean-pooled output of a top-layer stack over every row of a cache."""
    order = np.argsort(cache.lengths(), kind="stable")
    out = np.zeros((len(cache), cache.hidden.shape[1]), dtype=np.float32)
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            hidden, mask = cache.batch(idx.tolist())
            m = extended_mask(mask, hidden.dtype)
            for layer in top:
                hidden = layer(hidden, m)
            out[idx] = mean_pool(hidden, mask).numpy()
    return out


# --- metrics -----------------------------------------------------------------------


def confusion(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted."""
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def macro_recall(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n: int) -> float:
    """Macro-averaged recall (TweetEval's official sentiment metric)."""
    m = confusion(y_true, y_pred, n)
    support = m.sum(1)
    return float(np.mean(np.diag(m)[support > 0] / support[support > 0]))


def per_class_f1(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """F1 per class (0 where a class is neither predicted nor present)."""
    m = confusion(y_true, y_pred, n)
    tp = np.diag(m).astype(float)
    prec = np.divide(tp, m.sum(0), out=np.zeros(n), where=m.sum(0) > 0)
    rec = np.divide(tp, m.sum(1), out=np.zeros(n), where=m.sum(1) > 0)
    return np.divide(2 * prec * rec, prec + rec, out=np.zeros(n), where=(prec + rec) > 0)


def macro_f1(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n: int) -> float:
    """Macro-averaged F1 over classes present in ``y_true``."""
    present = np.bincount(np.asarray(y_true), minlength=n) > 0
    return float(per_class_f1(y_true, y_pred, n)[present].mean())


def tune_biases(
    logits: np.ndarray,
    labels: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    grid: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Per-class additive logit biases that maximise ``metric`` (coordinate search; class 0 fixed at 0).

    Only ever call this with validation data: tuning on test would make the test number a lie.
    """
    grid = grid if grid is not None else np.round(np.arange(-2.0, 2.01, 0.05), 2)
    n = logits.shape[1]
    bias = np.zeros(n, dtype=np.float32)
    best = metric(labels, (logits + bias).argmax(1))
    for _ in range(3):
        for c in range(1, n):
            for v in grid:
                trial = bias.copy()
                trial[c] = v
                score = metric(labels, (logits + trial).argmax(1))
                if score > best + 1e-9:
                    best, bias = score, trial
    return bias, best


def biases_generalise(
    logits: np.ndarray,
    labels: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    repeats: int = 20,
    seed: int = 13,
) -> tuple[bool, float, float]:
    """Do decision biases tuned on validation data help on validation data they were *not* tuned on?

    Repeated 2-fold splits of the validation set: tune biases on one half, score the
    other half with and without them. Why: on 2,000 TweetEval val tweets a bias grid
    search can fit noise; this keeps the biases only when they carry over.

    Returns:
        ``(keep, held_out_with_biases, held_out_without)`` (means over all folds).
    """
    rng = np.random.default_rng(seed)
    with_b: list[float] = []
    without: list[float] = []
    half = len(labels) // 2
    for _ in range(repeats):
        idx = rng.permutation(len(labels))
        for fit_idx, score_idx in ((idx[:half], idx[half:]), (idx[half:], idx[:half])):
            bias, _ = tune_biases(logits[fit_idx], labels[fit_idx], metric)
            with_b.append(metric(labels[score_idx], (logits[score_idx] + bias).argmax(1)))
            without.append(metric(labels[score_idx], logits[score_idx].argmax(1)))
    held_with, held_without = float(np.mean(with_b)), float(np.mean(without))
    return held_with > held_without, held_with, held_without


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn`` takes (for progress logs)."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def linear_probe(branch: SentimentBranch, cache: TrunkCache, seed: int = 13, c: float = 1.0) -> None:
    """Initialise the branch's head with a class-balanced logistic regression on its (frozen) features.

    Linear probing before fine-tuning (LP-FT) keeps the first fine-tuning steps from
    wrecking the pretrained top layer with a random head's gradients, and on its own
    is the cheap fallback model (``--epochs 0``).
    """
    from sklearn.linear_model import LogisticRegression

    x = branch_pooled(branch.top, cache)
    y = cache.labels.numpy()
    model = LogisticRegression(C=c, max_iter=1000, class_weight="balanced", random_state=seed)
    model.fit(x, y)
    with torch.no_grad():
        branch.head.weight.copy_(torch.from_numpy(model.coef_).float())
        branch.head.bias.copy_(torch.from_numpy(model.intercept_).float())


def store_linear_head(artifacts: Path, name: str, weight: np.ndarray, bias: np.ndarray) -> None:
    """Write a linear head's ``{name}.weight`` and ``{name}.bias`` into an artifacts folder's
    ``weights.safetensors`` (float32), replacing earlier ones and keeping every other tensor."""
    from safetensors.torch import load_file, save_file

    weights_path = artifacts / "weights.safetensors"
    tensors = dict(load_file(str(weights_path)))
    tensors[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32))
    tensors[f"{name}.bias"] = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))
    save_file(tensors, str(weights_path))


def logistic_probability(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """P(class 1) per row of a binary logistic regression's inputs (logits clipped, so no overflow)."""
    z = np.clip(x @ weight.reshape(-1) + float(np.asarray(bias).reshape(-1)[0]), -40.0, 40.0)
    return np.asarray(1.0 / (1.0 + np.exp(-z)))
