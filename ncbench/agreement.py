"""Agreement of a method's correspondence estimate with human judgments (``ncbench detect``).

For every judged pair the trained method gives its own estimate that the caption describes the
image (``Method.correspondence``). Per kind of judgment (expert, crowd) and per subset of pairs:

* ``auc``: ROC AUC of the estimate for the majority verdict "describes" vs "does not describe"
  (ties left out); 0.5 is chance. Ties in the estimate count half, as in the Mann–Whitney U;
* ``spearman``: Spearman rank correlation of the estimate with the mean human score;
* ``n``, ``n_describes``, ``n_not``: pairs, and pairs with each verdict.

Subsets: ``all`` judged pairs, and ``heldout``: pairs whose image and caption both come from
test-split images, which the model never saw in training or model selection (most judged images
are in the training split, where the model saw them with their own, possibly shuffled, captions).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from scipy import stats

from .data.judgments import JudgedPairs
from .engine.correspondence import PairContext
from .errors import TrainingError


def auc(score: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC AUC of ``score`` for the boolean ``positive`` (None without both classes); scikit-learn's,
    as for the injected-noise detection AUC (``evaluate.detection_metrics``)."""
    from sklearn.metrics import roc_auc_score

    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return None
    return float(roc_auc_score(positive, score))


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rho (None when either side is constant or there are fewer than 3 values)."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(stats.spearmanr(a, b).statistic)


def agreement_metrics(estimate: np.ndarray, human: np.ndarray, describes: np.ndarray) -> dict[str, Any]:
    decided = ~np.isnan(describes)
    return {
        "n": len(estimate),
        "n_describes": int((describes == 1).sum()),
        "n_not": int((describes == 0).sum()),
        "auc": auc(estimate[decided], describes[decided] == 1),
        "spearman": spearman(estimate, human),
    }


def agreement(estimate: np.ndarray, judged: JudgedPairs) -> dict[str, dict[str, Any]]:
    """``{kind: {"all": metrics, "heldout": metrics}}`` for a per-pair estimate."""
    estimate = np.asarray(estimate, dtype=np.float64)
    if estimate.shape != (len(judged),):
        raise ValueError(f"expected one estimate per judged pair ({len(judged)}), got shape {estimate.shape}")
    out = {}
    for name, js in judged.sets.items():
        est = estimate[js.pair]
        held = judged.heldout[js.pair]
        out[name] = {
            "file": js.file,
            "all": agreement_metrics(est, js.score, js.describes),
            "heldout": agreement_metrics(est[held], js.score[held], js.describes[held]),
        }
    return out


def human_agreement(method, judged: JudgedPairs, device: torch.device) -> dict[str, Any]:
    """Score the judged pairs with a trained method and compare with the judgments (result block)."""
    t0 = time.perf_counter()
    estimate = method.correspondence(PairContext(judged, device))
    if not np.isfinite(estimate).all():
        raise TrainingError(f"{type(method).__name__}.correspondence gave non-finite values for judged pairs")
    return {
        "estimate": method.correspondence_estimate,
        "pairs": judged.description,
        **agreement(estimate, judged),
        "seconds": round(time.perf_counter() - t0, 3),
    }
