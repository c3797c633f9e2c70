"""The retrieval protocol: similarity matrices of a (possibly ensembled) model and R@K metrics.

``similarity_matrix`` encodes each image once and every caption, then scores them in blocks with
the backbone's ``score`` (so cross-attention backbones never build all pairs at once) and averages
over the method's networks (NCR/BiCro evaluate ``(S_A + S_B) / 2``). ``retrieval_metrics`` computes
i2t/t2i R@1/5/10, medr, meanr and rSum with the chunked kernels. ``evaluate_split`` applies a
dataset's test protocol: one ranking over the split, and for MS-COCO also the mean over five
consecutive 1K folds with rSum taken from the averaged recalls (not the official misprint, §8.7).
A split that names sub-benchmarks of its queries (``subsets``, e.g. ``synthetic-scenes``' ``binding``
queries, whose hard distractor has the same bag of words) gets each scored from the same ranks,
restricted to its image and caption queries (``subset_metrics``).
``detection_metrics`` and ``split_histogram`` score and record a method's clean/noisy estimate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from .backbones.base import Backbone
from .data.batching import gather_rows, pad_tokens
from .data.precomp import Split
from .errors import TrainingError
from .kernels.recall import mean_rank, median_rank, ranks, recall_at
from .precision import compute


@dataclass
class RetrievalMetrics:
    i2t_r1: float
    i2t_r5: float
    i2t_r10: float
    t2i_r1: float
    t2i_r5: float
    t2i_r10: float
    rsum: float
    i2t_medr: float
    i2t_meanr: float
    t2i_medr: float
    t2i_meanr: float

    RECALLS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def mean(cls, items: list["RetrievalMetrics"]) -> "RetrievalMetrics":
        avg = {f.name: float(np.mean([getattr(m, f.name) for m in items])) for f in fields(cls)}
        avg["rsum"] = sum(avg[k] for k in cls.RECALLS)
        return cls(**avg)


def retrieval_metrics(sims, captions_per_image: int, device=None) -> tuple[RetrievalMetrics, torch.Tensor, torch.Tensor]:
    """Metrics and the per-query ranks (i2t per image, t2i per caption) of one similarity matrix."""
    if isinstance(sims, np.ndarray) and not np.isfinite(sims).all():
        raise TrainingError("similarity matrix contains NaN or inf; the model has diverged")
    ri, rt = ranks(sims, captions_per_image, device=device)
    return metrics_of_ranks(ri, rt), ri.cpu(), rt.cpu()


def metrics_of_ranks(ri: torch.Tensor, rt: torch.Tensor) -> RetrievalMetrics:
    """R@K, medr and meanr of 0-based i2t (per image) and t2i (per caption) ranks."""
    r_i, r_t = recall_at(ri), recall_at(rt)
    return RetrievalMetrics(
        *r_i, *r_t, sum(r_i) + sum(r_t), median_rank(ri), mean_rank(ri), median_rank(rt), mean_rank(rt)
    )


def subset_metrics(ri: torch.Tensor, rt: torch.Tensor, images: np.ndarray, captions: np.ndarray) -> dict[str, Any]:
    """A sub-benchmark's metrics: the ranks of its image and caption queries only (ranked against the
    whole split, as in the full figure), and how many queries it has."""
    sub = metrics_of_ranks(ri[torch.as_tensor(images, dtype=torch.long)], rt[torch.as_tensor(captions, dtype=torch.long)])
    return {"metrics": sub.to_dict(), "images": int(len(images)), "captions": int(len(captions))}


@torch.no_grad()
def encode_images(net: Backbone, images: np.ndarray, rows: np.ndarray, device: torch.device,
                  batch_size: int = 256) -> torch.Tensor:
    """Embeddings of the given feature rows."""
    net.eval()
    cuda = device.type == "cuda"  # page-locked chunks, copied without blocking
    return torch.cat([net.encode_images(gather_rows(images, rows[i : i + batch_size], pin=cuda).to(device, non_blocking=cuda))
                      for i in range(0, len(rows), batch_size)])


@torch.no_grad()
def encode_captions(net: Backbone, tokens: list[np.ndarray], device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Embeddings of encoded captions (per-word embeddings padded to the longest caption)."""
    net.eval()
    cap = []
    for c0 in range(0, len(tokens), batch_size):
        padded, lengths = pad_tokens(tokens[c0 : c0 + batch_size])
        cap.append(net.encode_captions(padded.to(device), lengths.to(device)))
    return _pad_cat(cap)


def encode_split(net: Backbone, split: Split, device: torch.device, batch_size: int = 256):
    """Embeddings of every distinct image and every caption of ``split``."""
    return (encode_images(net, split.images, split.image_rows(), device, batch_size),
            encode_captions(net, split.tokens, device, batch_size))


def _pad_cat(pieces: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate caption embeddings; per-word embeddings (B, L, E) are padded to the longest L."""
    if pieces[0].ndim == 2:
        return torch.cat(pieces)
    longest = max(p.shape[1] for p in pieces)
    return torch.cat([torch.nn.functional.pad(p, (0, 0, 0, longest - p.shape[1])) for p in pieces])


@torch.no_grad()
def similarity_matrix(nets: list[Backbone], split: Split, device: torch.device, block: int = 1000,
                      precision: str = "fp32") -> np.ndarray:
    """``(n_images, n_captions)`` float32 similarities averaged over ``nets``: each network encodes
    the split once (eval mode), then scores it in ``block`` images × ``block`` · cpi captions tiles
    with its test-time scoring (``Backbone.test_scores``, ``score`` unless the backbone restructures
    it: SGR/SAF's restructured evaluation, which bounds its memory further inside); ``precision`` as
    ``--precision``."""
    total = np.zeros((split.n_images, split.n_captions), dtype=np.float32)
    for net in nets:
        scores = getattr(net, "test_scores", net.score)  # a network that is not a Backbone has score only
        with compute(device, precision):
            img, cap = encode_split(net, split, device)
            for i0 in range(0, img.shape[0], block):
                for c0 in range(0, cap.shape[0], block * split.captions_per_image):
                    s = scores(img[i0 : i0 + block], cap[c0 : c0 + block * split.captions_per_image])
                    total[i0 : i0 + s.shape[0], c0 : c0 + s.shape[1]] += s.float().cpu().numpy()
    total /= len(nets)
    return total


@dataclass
class SplitEvaluation:
    full: RetrievalMetrics
    ranks_i2t: list[int]
    ranks_t2i: list[int]
    fold_mean: RetrievalMetrics | None = None
    folds: list[RetrievalMetrics] | None = None
    fold_ranks: list[tuple[list[int], list[int]]] | None = None  # (i2t, t2i) per fold, indices within the fold
    subsets: dict[str, dict[str, Any]] | None = None  # name → subset_metrics, for a split that names subsets

    @property
    def primary(self) -> RetrievalMetrics:
        """The headline figure: the fold mean where folds exist (COCO 1K), else the full split."""
        return self.fold_mean or self.full

    def ranks_record(self) -> dict:
        """The per-query ranks a result stores (``ncbench.significance`` reads them): the whole split,
        and per fold where the headline figure is a fold mean."""
        out: dict = {"i2t": self.ranks_i2t, "t2i": self.ranks_t2i}
        if self.fold_ranks:
            out["folds"] = [{"i2t": i, "t2i": t} for i, t in self.fold_ranks]
        return out

    def to_dict(self) -> dict:
        out = {"full": self.full.to_dict(), "primary": "fold_mean" if self.fold_mean else "full"}
        if self.fold_mean is not None:
            out["fold_mean"] = self.fold_mean.to_dict()
            out["folds"] = [f.to_dict() for f in self.folds or []]
        if self.subsets:
            out["subsets"] = self.subsets
        return out


def evaluate_split(nets: list[Backbone], split: Split, device: torch.device, folds: int = 1,
                   precision: str = "fp32") -> SplitEvaluation:
    sims = similarity_matrix(nets, split, device, precision=precision)
    cpi = split.captions_per_image
    full, ri, rt = retrieval_metrics(sims, cpi, device=device)
    result = SplitEvaluation(full, ri.tolist(), rt.tolist())
    subsets = getattr(split, "subsets", None) or {}  # data.scenes.SplitWithSubsets
    if subsets:
        result.subsets = {name: subset_metrics(ri, rt, q.images, q.captions) for name, q in subsets.items()}
    if folds > 1:
        n = split.n_images // folds
        per_fold = [retrieval_metrics(sims[k * n : (k + 1) * n, k * n * cpi : (k + 1) * n * cpi], cpi, device=device)
                    for k in range(folds)]
        result.folds = [m for m, _, _ in per_fold]
        result.fold_mean = RetrievalMetrics.mean(result.folds)
        result.fold_ranks = [(ri.tolist(), rt.tolist()) for _, ri, rt in per_fold]
    return result


# -- noise detection --------------------------------------------------------------------------
def detection_metrics(
    prob: np.ndarray, split: np.ndarray, labels: np.ndarray | None, true_clean: np.ndarray,
    subsets: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """How well a method's clean/noisy estimate matches the injected noise.

    ``auc``: ROC AUC of the clean probability for "truly clean" (None if only one class exists);
    ``clean_precision`` / ``clean_recall``: of the pairs the method treats as clean, the fraction
    truly clean, and of the truly clean pairs, the fraction it found; ``noisy_precision`` /
    ``noisy_recall`` likewise for the noisy side; ``label_clean`` / ``label_noisy``: the mean soft
    label the method trained truly clean / truly noisy pairs with (pairs it did not label are left out);
    ``subsets`` (a division into more parts, e.g. CREAM's clean / hard / noisy): per part its share of
    the pairs (``fraction``) and the share of its pairs that are truly clean (``true_clean``).
    """
    from sklearn.metrics import roc_auc_score

    true_clean = np.asarray(true_clean, dtype=bool)
    split = np.asarray(split, dtype=bool)

    def ratio(a: int, b: int) -> float | None:
        return float(a / b) if b else None

    both = true_clean.any() and (~true_clean).any()
    out: dict[str, float | None] = {
        "auc": float(roc_auc_score(true_clean, prob)) if both else None,
        "clean_precision": ratio(int((split & true_clean).sum()), int(split.sum())),
        "clean_recall": ratio(int((split & true_clean).sum()), int(true_clean.sum())),
        "noisy_precision": ratio(int((~split & ~true_clean).sum()), int((~split).sum())),
        "noisy_recall": ratio(int((~split & ~true_clean).sum()), int((~true_clean).sum())),
        "label_clean": None,
        "label_noisy": None,
    }
    if labels is not None:
        for key, mask in (("label_clean", true_clean), ("label_noisy", ~true_clean)):
            vals = labels[mask]
            vals = vals[~np.isnan(vals)]
            out[key] = float(vals.mean()) if vals.size else None
    if subsets:
        out["subsets"] = {name: {"fraction": float(np.mean(mask)) if len(mask) else None,
                                 "true_clean": ratio(int((mask & true_clean).sum()), int(mask.sum()))}
                          for name, mask in ((n, np.asarray(m, dtype=bool)) for n, m in subsets.items())}
    return out


def split_histogram(fit, true_clean: np.ndarray, bins: int = 40, grid: int = 101) -> dict[str, Any]:
    """A compact record of one loss split for plotting: histograms of the normalised per-sample
    losses of truly clean and truly noisy pairs (``bins`` equal bins on [0, 1]) and the fitted
    mixture's weighted component densities on ``grid`` points (density units: they integrate to
    the component weights, so they overlay a density-normalised histogram)."""
    from .kernels.mixture import GMM1D

    x = fit.x.detach().double().cpu().numpy()
    true_clean = np.asarray(true_clean, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    xs = torch.linspace(1e-3, 1 - 1e-3, grid, dtype=torch.float64)
    pdf = fit.mixture.component_pdf(xs.to(fit.x.device)).cpu().numpy()
    return {
        "kind": "gmm" if isinstance(fit.mixture, GMM1D) else "bmm",
        "edges": edges.round(6).tolist(),
        "clean_counts": np.histogram(x[true_clean], edges)[0].tolist(),
        "noisy_counts": np.histogram(x[~true_clean], edges)[0].tolist(),
        "grid": xs.numpy().round(6).tolist(),
        "component_pdf": [[round(float(v), 6) for v in row] for row in pdf],
        "clean_component": int(fit.clean_component),
    }
