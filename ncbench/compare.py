"""Comparing two rows of a board: which result files they are, and the paired test between them.

A row is (method, backbone) within one (protocol, dataset, noise type, noise ratio); its results
are one per seed. ``compare_rows`` pairs two rows seed by seed (only seeds both have; each pair
must share its noise index and test set) and runs ``significance.paired_test`` on the view the
board shows (``full`` split, or the ``fold_mean`` of MS-COCO 1K). ``select_row`` finds a row's
results and refuses ambiguity (two configs of one run) and seeds made by different code
(``code_identity.code_hash_of``, as the boards do) with the files named.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .code_identity import code_hash_of, short
from .errors import ConfigError, ResultError
from .data.noise_spec import CAPTION_SHUFFLE, NoiseSpec
from .results import noise_of, noise_output_sha256, row_of
from .significance import PairedTest, Ranks, fold_shares, paired_test, rsum


def view_of(benchmark: str) -> str:
    """The test view a board's benchmark column reads: ``coco-1k`` the 5-fold mean, else the whole split."""
    return "fold_mean" if benchmark.endswith("-1k") else "full"


def view_ranks(result: dict[str, Any], view: str) -> Ranks:
    """A result's ranks in ``view``; a clear error when the file has none (or none per fold)."""
    where = result.get("_path") or result["identity"]["method"]
    stored = result.get("ranks")
    if not stored or "i2t" not in stored or "t2i" not in stored:
        raise ResultError(f"{where}: no per-query test ranks stored (a tuning trial, or a failed run)")
    ranks = Ranks.from_record(stored)
    if view == "fold_mean":
        if not ranks.folds:
            raise ResultError(f"{where}: no per-fold ranks stored (written before ncbench kept them): the 5-fold "
                              "view cannot be tested; compare on the whole split (--benchmark <dataset>-5k) or re-run")
        return ranks
    return Ranks(ranks.i2t, ranks.t2i)


@dataclass(frozen=True)
class RowKey:
    method: str  # as the board names the row: ``ncr``, or ``ncr@<tag>`` (``results.row_of``)
    backbone: str
    dataset: str
    noise_ratio: float
    noise: NoiseSpec = CAPTION_SHUFFLE  # the noise protocol (type, model, parameters)
    protocol_version: str | None = None  # None: the one protocol the results have

    @property
    def label(self) -> str:
        return f"{self.method} ({self.backbone})"


def in_row(result: dict[str, Any], key: RowKey, any_backbone: bool = False) -> bool:
    """Whether ``result`` is an ok result of the row ``key`` (of any backbone, with ``any_backbone``)."""
    ident = result["identity"]
    return (result.get("status") == "ok" and row_of(ident) == key.method
            and (any_backbone or ident["backbone"] == key.backbone)
            and ident["dataset"] == key.dataset and float(ident["noise_ratio"]) == float(key.noise_ratio)
            and noise_of(ident) == key.noise
            and (key.protocol_version is None or str(ident["protocol_version"]) == str(key.protocol_version)))


def select_row(results: list[dict[str, Any]], key: RowKey) -> dict[int, dict[str, Any]]:
    """seed → the ok result of this row; an error when a seed has results of several configs or
    protocol versions, or when its seeds were made by different code (they would be pooled silently
    otherwise; results without a code record count as one unknown code)."""
    found: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        if in_row(r, key):
            found.setdefault(int(r["identity"]["seed"]), []).append(r)
    for seed, rs in sorted(found.items()):
        if len(rs) > 1:
            raise ConfigError(f"{key.label}, seed {seed}: {len(rs)} results of different configs or protocols ("
                              + ", ".join(str(r.get("_path", "?")) for r in rs) + "); give --results of one of them")
    row = {seed: rs[0] for seed, rs in found.items()}
    codes = {code_hash_of(r) for r in row.values()}
    if len(codes) > 1:
        raise ConfigError(f"{key.label}: its seeds were made by different code ("
                          + ", ".join(f"seed {s}: code {short(code_hash_of(r))} ({r.get('_path', '?')})"
                                      for s, r in sorted(row.items()))
                          + "); they are not one row: run them again with one code, or accept the change")
    return row


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    dataset: str
    benchmark: str
    view: str
    noise_ratio: float
    noise: str  # the protocol's key: caption, image, caption-neighbour, ...
    seeds: list[int]
    rsum_a: float  # mean over the paired seeds, recomputed from the ranks
    rsum_b: float
    images: int
    captions: int
    test: PairedTest

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["test"]["ci95"] = list(self.test.ci95)
        return out


def compare_rows(a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]], key_a: RowKey, key_b: RowKey,
                 benchmark: str, resamples: int = 10_000, seed: int = 0) -> Comparison:
    """The paired test of row ``a`` against row ``b`` (seed → result each) on ``benchmark``'s view."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ConfigError(f"{key_a.label} (seeds {sorted(a) or 'none'}) and {key_b.label} (seeds {sorted(b) or 'none'}) "
                          "share no seed: a paired comparison needs runs of the same seeds")
    view = view_of(benchmark)
    shares, strata, sums_a, sums_b, ranks_a = [], None, [], [], None
    for s in seeds:
        na, nb = (noise_output_sha256(x[s]["identity"]) for x in (a, b))
        if na != nb:
            raise ResultError(f"seed {s}: {key_a.label} and {key_b.label} were trained on different noise indices "
                              f"({str(na)[:12]}… vs {str(nb)[:12]}…); they cannot be paired")
        ranks_a, ranks_b = view_ranks(a[s], view), view_ranks(b[s], view)
        try:
            row, strata = fold_shares(ranks_a, ranks_b)
        except ValueError as exc:
            raise ResultError(f"seed {s}: {a[s].get('_path')} vs {b[s].get('_path')}: {exc}") from None
        shares.append(row)
        sums_a.append(rsum(ranks_a))
        sums_b.append(rsum(ranks_b))
    test = paired_test(np.stack(shares), strata, resamples=resamples, seed=seed)
    return Comparison(key_a.label, key_b.label, key_a.dataset, benchmark, view, float(key_a.noise_ratio),
                      key_a.noise.key, seeds, float(np.mean(sums_a)), float(np.mean(sums_b)),
                      test.images, int(sum(f.t2i.size for f in ranks_a.folds) if ranks_a.folds else ranks_a.t2i.size),
                      test)
