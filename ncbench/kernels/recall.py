"""Retrieval ranks and recall@K for a similarity matrix (one implementation for every dataset).

``sims`` has one row per image and one column per caption; caption ``c`` belongs to image
``c // captions_per_image``. Ranks are 0-based: the position of the ground truth in the descending
sort (for image→text, the best of the image's captions). Both directions are computed in chunks,
so the extra memory is bounded by ``chunk_elems`` comparisons whatever the matrix size (a COCO 5K
matrix is 5,000 × 25,000), and on whatever device the chunks are moved to.

Ties with a *negative* are counted against the query: a ground truth tied with ``t`` negatives is
ranked behind all of them. (The official code uses ``np.argsort``, which breaks ties arbitrarily;
with real-valued scores the two agree, but a collapsed model that scores everything equally gets
recall 0 here instead of an arbitrary or perfect value.) Ground truths never count against each
other: an image whose two captions tie for its best score (a duplicated caption) has rank 0 if no
negative scores as high, as in the official ``min`` over its captions' positions.

Scores are compared in their own floating dtype (float64 stays float64: a ground truth 1e-9 above
a negative wins); integer or half-precision inputs are compared in float32.
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_CHUNK_ELEMS = 1 << 18  # elements compared per block on the CPU: small blocks stay in cache (measured fastest)
#: on an accelerator: few, large blocks (each block is ~6 kernel launches; at 2^18 a COCO 5K matrix
#: took 500 blocks, 77 ms on an H200 for what one read of the matrix does in 0.12 ms); 2^25 elements
#: keep the block's temporaries (a bool per element and direction) at 64 MB
ACCELERATOR_CHUNK_ELEMS = 1 << 25


def default_chunk(device: torch.device) -> int:
    """Elements compared per block on ``device`` (the results never depend on it)."""
    return DEFAULT_CHUNK_ELEMS if torch.device(device).type == "cpu" else ACCELERATOR_CHUNK_ELEMS


def _compare_dtype(sims) -> torch.dtype:
    """float64 inputs stay float64; everything else (float32, half, bf16, integers) is float32."""
    dtype = sims.dtype if isinstance(sims, torch.Tensor) else torch.from_numpy(np.empty(0, dtype=np.asarray(sims[:0]).dtype)).dtype
    return torch.float64 if dtype == torch.float64 else torch.float32


def _as_tensor(block, device, dtype) -> torch.Tensor:
    if isinstance(block, torch.Tensor):
        return block.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(block), device=device).to(dtype)


def _check(sims, cpi: int, device) -> tuple[int, int, torch.device]:
    n_img, n_cap = sims.shape
    if n_cap != n_img * cpi:
        raise ValueError(f"similarity matrix {tuple(sims.shape)} does not have {cpi} captions per image")
    return n_img, n_cap, torch.device(device or (sims.device if isinstance(sims, torch.Tensor) else "cpu"))


def ranks(sims, captions_per_image: int, chunk_elems: int | None = None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(i2t, t2i)`` 0-based ranks in one pass over row blocks of ``sims``.

    Image→text: only the image's best ground-truth score ``m`` matters; its rank is the number of
    negatives (captions of other images) scoring ``≥ m``.
    Text→image: the number of images scoring ``≥`` the caption's own image, minus itself, summed
    block by block. One comparison per element and direction, rows read contiguously; blocks of
    ``chunk_elems`` elements (``default_chunk`` of the device when None)."""
    cpi = captions_per_image
    n_img, n_cap, device = _check(sims, cpi, device)
    chunk_elems = chunk_elems or default_chunk(device)
    c = np.arange(n_cap)
    own = (torch.from_numpy(c // cpi), torch.from_numpy(c)) if isinstance(sims, torch.Tensor) else (c // cpi, c)
    dtype = _compare_dtype(sims)
    gt_cap = _as_tensor(sims[own], device, dtype)  # each caption's score with its own image, (n_cap,)
    rows = max(1, chunk_elems // max(1, n_cap))
    r_i = torch.empty(n_img, dtype=torch.long, device=device)
    r_t = torch.zeros(n_cap, dtype=torch.long, device=device)
    offs = torch.arange(cpi, device=device)
    for r0 in range(0, n_img, rows):
        s = _as_tensor(sims[r0 : r0 + rows], device, dtype)  # (c, n_cap)
        img = torch.arange(r0, r0 + s.shape[0], device=device)
        gt = s.gather(1, img[:, None] * cpi + offs)  # (c, cpi)
        best = gt.max(dim=1, keepdim=True).values
        r_i[r0 : r0 + s.shape[0]] = (s >= best).sum(1) - (gt >= best).sum(1)
        r_t += (s >= gt_cap).sum(0)
    return r_i, r_t - 1


def i2t_ranks(sims, captions_per_image: int, chunk_elems: int | None = None, device=None) -> torch.Tensor:
    """For each image, the 0-based rank of its best-ranked ground-truth caption (a convenience
    view of ``ranks``, which computes both directions in the same pass: call it for both)."""
    return ranks(sims, captions_per_image, chunk_elems, device)[0]


def t2i_ranks(sims, captions_per_image: int, chunk_elems: int | None = None, device=None) -> torch.Tensor:
    """For each caption, the 0-based rank of its image among all images (a view of ``ranks``)."""
    return ranks(sims, captions_per_image, chunk_elems, device)[1]


def recall_at(ranks: torch.Tensor, ks=(1, 5, 10)) -> list[float]:
    """Percentage of queries whose rank is below each K."""
    return [100.0 * float((ranks < k).double().mean()) for k in ks]


def median_rank(ranks: torch.Tensor) -> float:
    """floor(median of 0-based ranks) + 1, as the official evaluation prints it."""
    return float(np.floor(np.median(ranks.cpu().numpy())) + 1)


def mean_rank(ranks: torch.Tensor) -> float:
    return float(ranks.double().mean()) + 1.0
