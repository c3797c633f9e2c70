"""The loss-split mixture: which training pairs look clean (NCR co-divide, spec §3.3).

Per-sample losses are min-max normalised over the training set, a two-component 1-D Gaussian
mixture is fitted by EM, and the clean probability of a pair is the posterior of the component
with the **smaller mean** (chosen explicitly after EM, §8 row 16). The fit reproduces
``sklearn.mixture.GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4)`` with its
default k-means initialisation: Lloyd's algorithm in 1-D (a threshold between two centres),
hard responsibilities → first M-step, then EM iterations that stop when the mean log-likelihood
changes by less than ``tol``, and a final E-step. (k-means starts from ``mean ± std`` rather than
scikit-learn's random k-means++ seeds; in 1-D both reach the same split on bimodal losses.) No random initialisation is involved, so the
result is the same on every call; the tests check it against scikit-learn.
Everything is vectorised in torch, so it runs on the GPU beside the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .loops import accelerated, blocks

LOG_2PI = math.log(2 * math.pi)


def minmax(x: torch.Tensor) -> torch.Tensor:
    """``(x − min) / (max − min)``; a constant vector maps to zeros."""
    lo, hi = x.min(), x.max()
    span = hi - lo
    return (x - lo) / span if span > 0 else torch.zeros_like(x)


@dataclass
class GMM1D:
    means: torch.Tensor  # (2,)
    variances: torch.Tensor  # (2,)
    weights: torch.Tensor  # (2,)
    n_iter: int
    converged: bool

    def component_pdf(self, x: torch.Tensor) -> torch.Tensor:
        """Weighted component densities ``π_k N(x; μ_k, σ_k²)``, shape (2, N) (for plots)."""
        x = x.to(self.means.dtype)[None, :]
        var = self.variances[:, None]
        return self.weights[:, None] * torch.exp(-0.5 * (x - self.means[:, None]) ** 2 / var) / torch.sqrt(2 * math.pi * var)


def _kmeans_1d(x: torch.Tensor, max_iter: int = 300, grow: bool | None = None) -> torch.Tensor:
    """Two-cluster Lloyd iterations in 1-D, returning the hard assignment as a bool (True = upper).

    In one dimension an assignment is a threshold at the midpoint of the two centres, so each
    iteration is two O(N) reductions. Starts from ``mean ± std`` (no random draw). It stops when
    the assignment no longer changes or a cluster is empty; that test is kept on the device and
    read once per block of iterations (``loops.blocks``: every iteration on the CPU, blocks of
    4, 8, 16, … on an accelerator); a stopped assignment is frozen, so a later read gives the
    result of stopping at once."""
    spaced = accelerated(x.device, grow)
    mean, std = x.mean(), x.std()
    c0, c1 = mean - std, mean + std
    upper = x > (c0 + c1) / 2
    total, n = x.sum(), x.numel()
    stopped = torch.zeros((), dtype=torch.bool, device=x.device)
    for m in blocks(max_iter, 4 if spaced else 1, spaced):
        for _ in range(m):
            n1 = upper.sum()
            s1 = torch.where(upper, x, torch.zeros((), dtype=x.dtype)).sum()
            c0, c1 = (total - s1) / (n - n1), s1 / n1
            new = x > (c0 + c1) / 2
            stopped = stopped | (n1 == 0) | (n1 == n) | (new == upper).all()
            upper = torch.where(stopped, upper, new) if spaced else upper
        if bool(stopped):
            break
        if not spaced:
            upper = new
    return upper


def _moments(x: torch.Tensor, r1: torch.Tensor, reg: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """M-step for responsibilities ``r1`` of component 1 (component 0 gets ``1 − r1``)."""
    eps = 10 * torch.finfo(x.dtype).eps
    n = x.numel()
    n1 = r1.sum()
    n0 = n - n1
    s1, q1 = (r1 * x).sum(), (r1 * x * x).sum()
    s, q = x.sum(), (x * x).sum()
    n0e, n1e = n0 + eps, n1 + eps
    m0, m1 = (s - s1) / n0e, s1 / n1e
    v0 = (q - q1) / n0e - m0 * m0 + reg
    v1 = q1 / n1e - m1 * m1 + reg
    return torch.stack([m0, m1]), torch.stack([v0, v1]).clamp_min(reg), torch.stack([n0e, n1e]) / n


def _log_odds(x: torch.Tensor, g: GMM1D) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p_0(x), log p_1(x) − log p_0(x))`` of the weighted components, without (N, 2) temporaries."""
    a = g.weights.log() - 0.5 * (LOG_2PI + g.variances.log())
    l0 = a[0] - 0.5 * (x - g.means[0]) ** 2 / g.variances[0]
    l1 = a[1] - 0.5 * (x - g.means[1]) ** 2 / g.variances[1]
    return l0, l1 - l0


def fit_gmm_1d(x: torch.Tensor, max_iter: int = 10, tol: float = 1e-2, reg_covar: float = 5e-4,
               grow: bool | None = None) -> GMM1D:
    """EM for a two-component 1-D Gaussian mixture, initialised by k-means (scikit-learn's recipe).

    With two components the responsibilities are a sigmoid of the log-odds and the log-likelihood
    is ``log p_0 + softplus(log-odds)``, so every step is a handful of O(N) vector operations.
    (Variances are computed from second moments, ``E[x²] − μ²``; inputs are min-max normalised, so
    this is as accurate as the two-pass form.) The stopping rule (the mean log-likelihood changed by
    less than ``tol``) is evaluated on the device and read once per block of iterations: every
    iteration on the CPU, all ``max_iter`` at once on an accelerator (one read); the fit of the
    iteration that met it is returned, exactly as if the loop had stopped there."""
    x = x.to(torch.float64).flatten()
    spaced = accelerated(x.device, grow)
    gmm = GMM1D(*_moments(x, _kmeans_1d(x, grow=grow).to(x.dtype), reg_covar), 0, False)
    prev = torch.tensor(-math.inf, dtype=x.dtype, device=x.device)
    it = 0
    for m in blocks(max_iter, max_iter if spaced else 1, False):
        fits, lowers = [], [prev]
        for _ in range(m):
            l0, odds = _log_odds(x, gmm)
            it += 1
            gmm = GMM1D(*_moments(x, torch.sigmoid(odds), reg_covar), it, False)
            fits.append(gmm)
            lowers.append((l0 + torch.nn.functional.softplus(odds)).mean())
        lower = torch.stack(lowers)
        met = (lower[1:] - lower[:-1]).abs() < tol
        if bool(met.any()):
            gmm = fits[int(met.to(torch.uint8).argmax())]
            gmm.converged = True
            break
        prev = lower[-1]
    return gmm


@dataclass
class SplitFit:
    """A fitted loss split: the normalised losses, each pair's clean probability, the mixture and
    which of its components is the clean (low-loss) one. Kept for diagnostics and plots."""

    x: torch.Tensor  # normalised per-sample losses (float64)
    prob: torch.Tensor  # clean probability per pair, in the losses' dtype
    mixture: "GMM1D | BMM1D"
    clean_component: int


def gmm_split(losses: torch.Tensor, max_iter: int = 10, tol: float = 1e-2, reg_covar: float = 5e-4) -> SplitFit:
    """NCR's co-divide: min-max normalise, fit the GMM, posterior of the low-mean component."""
    x = minmax(losses.to(torch.float64).flatten())
    gmm = fit_gmm_1d(x, max_iter, tol, reg_covar)
    _, odds = _log_odds(x, gmm)  # log p_1 − log p_0
    k = int(gmm.means.argmin())
    return SplitFit(x, torch.sigmoid(-odds if k == 0 else odds).to(losses.dtype), gmm, k)


def clean_posterior(losses: torch.Tensor, max_iter: int = 10, tol: float = 1e-2, reg_covar: float = 5e-4) -> torch.Tensor:
    """NCR's clean probability per pair (``gmm_split(...).prob``)."""
    return gmm_split(losses, max_iter, tol, reg_covar).prob


def split_clean(prob: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``prob > threshold``; if that marks *every* pair clean, the threshold is raised to the value at
    position ⌊N/100⌋ of the sorted probabilities so that about 1% is treated as noisy (NCR's
    ``split_prob``, for any N: below 100 pairs the smallest probability, and every pair tied with it,
    becomes noisy)."""
    clean = prob > threshold
    if bool(clean.all()) and prob.numel() > 0:
        clean = prob > prob.sort().values[prob.numel() // 100]
    return clean


# -- Beta mixture (BiCro, spec §4.3) -----------------------------------------------------------
@dataclass
class BMM1D:
    alphas: torch.Tensor  # (2,)
    betas: torch.Tensor  # (2,)
    weights: torch.Tensor  # (2,)

    def log_pdf(self, x: torch.Tensor) -> torch.Tensor:
        """``log Beta(x; α_k, β_k)`` for every sample and component, (N, 2)."""
        a, b = self.alphas[None, :], self.betas[None, :]
        log_norm = torch.lgamma(a + b) - torch.lgamma(a) - torch.lgamma(b)
        return log_norm + (a - 1) * torch.log(x)[:, None] + (b - 1) * torch.log1p(-x)[:, None]

    def responsibilities(self, x: torch.Tensor, floor: float = 1e-12) -> torch.Tensor:
        """``r_k ∝ π_k Beta(x; α_k, β_k)``, floored at ``floor`` and renormalised (as the official code)."""
        r = (self.weights[None, :].log() + self.log_pdf(x)).exp().clamp_min(floor)
        return r / r.sum(dim=1, keepdim=True)

    @property
    def means(self) -> torch.Tensor:
        return self.alphas / (self.alphas + self.betas)

    def component_pdf(self, x: torch.Tensor) -> torch.Tensor:
        """Weighted component densities ``π_k Beta(x; α_k, β_k)``, shape (2, N) (for plots)."""
        return (self.weights[None, :].log() + self.log_pdf(x.to(self.alphas.dtype))).exp().T

    def posterior(self, x: torch.Tensor, k: int, eps: float = 1e-12) -> torch.Tensor:
        """``π_k p_k(x) / (Σ_j π_j p_j(x) + eps)``, the official posterior."""
        joint = (self.weights[None, :].log() + self.log_pdf(x)).exp()
        return joint[:, k] / (joint.sum(dim=1) + eps)


def _beta_moments(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted method of moments: ``α = x̄ (x̄(1−x̄)/s² − 1)``, ``β = α (1−x̄)/x̄``."""
    mean = (w * x).sum() / w.sum()
    var = (w * (x - mean) ** 2).sum() / w.sum()
    alpha = mean * (mean * (1 - mean) / var - 1)
    return alpha, alpha * (1 - mean) / mean


def fit_bmm_1d(x: torch.Tensor, max_iter: int = 10, eps: float = 1e-4) -> BMM1D:
    """BiCro's two-component Beta mixture: inputs clipped to ``[eps, 1 − eps]``, components initialised
    ``α = (1, 2)``, ``β = (2, 1)`` (component 0 decreasing = low loss), weights ½; ``max_iter`` EM
    iterations with a weighted method-of-moments M-step."""
    x = x.to(torch.float64).flatten().clamp(eps, 1 - eps)
    t = lambda v: torch.tensor(v, dtype=x.dtype, device=x.device)  # noqa: E731
    bmm = BMM1D(t([1.0, 2.0]), t([2.0, 1.0]), t([0.5, 0.5]))
    for _ in range(max_iter):
        r = bmm.responsibilities(x)
        params = [_beta_moments(x, r[:, k]) for k in range(2)]
        w = r.sum(dim=0)
        bmm = BMM1D(torch.stack([p[0] for p in params]), torch.stack([p[1] for p in params]), w / w.sum())
    return bmm


def bmm_split(losses: torch.Tensor, max_iter: int = 10, eps: float = 1e-4, clean_at: float | None = None) -> SplitFit:
    """BiCro's division: min-max normalise, clip, fit the Beta mixture, and take the posterior
    of the component with the lower mean, chosen *after* EM (the official code assumes component 0
    and evaluates the density on unclipped losses, which gives NaN at exact 0/1, §4.7 4b). With
    ``clean_at`` the clean component is instead the one with the larger posterior at that point
    (L2RM's ``BMM_pred``, at x = 10⁻³)."""
    x = minmax(losses.to(torch.float64).flatten()).clamp(eps, 1 - eps)
    bmm = fit_bmm_1d(x, max_iter, eps)
    if clean_at is None:
        k = int(bmm.means.argmin())
    else:
        at = torch.tensor([clean_at], dtype=x.dtype, device=x.device)
        k = int(torch.stack([bmm.posterior(at, j) for j in range(2)]).argmax())
    return SplitFit(x, bmm.posterior(x, k).to(losses.dtype), bmm, k)


def bmm_clean_posterior(losses: torch.Tensor, max_iter: int = 10, eps: float = 1e-4) -> torch.Tensor:
    """BiCro's clean probability per pair (``bmm_split(...).prob``)."""
    return bmm_split(losses, max_iter, eps).prob
