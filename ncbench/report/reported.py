"""The papers' published numbers: loading ``ncbench.reference/reported.csv`` and its sources.

These rows are **reported, not reproduced**: they are typed in from the papers (with the source
of each), never computed by ncbench, and every renderer marks them as reported. The file lives in
the repository at ``leaderboards/reference/`` and is installed as package data. Each row names its
noise protocol (``noise_type``: caption-level as NCR, BiCro and CRCL; image-level as DECL, RCL and
L2RM; real-noise CC152K rows are filed as ``caption``, the type of every run without injected
noise), so a reported row only ever joins a table of its own protocol. The Sum shown is always the
sum of the six printed recalls; where the paper printed another Sum (beyond rounding), the row keeps
it as ``printed_rsum`` and the boards show both.

Rows computed by an evaluation with a known bug carry it as ``eval_bug`` (a key of ``EVAL_BUGS``), from
the optional ``eval_bug`` column (bugs identified by reading the paper's code) or recognised from the
numbers: an MS-COCO 1K row whose printed Sum is ``2 × (i2t R@1 + R@5 + R@10)`` rather than the sum of
its recalls was printed by the NCR-family ``mean_metrics[10]*6``. The boards mark such rows (§) and
say what the bug is. The column was added after the first rows: a row without it has none recorded.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from importlib import resources

from ..data.noise import NOISE_TYPES
from ..data.noise_spec import NoiseSpec
from ..errors import ResultError
from .aggregate import METRICS

REAL_NOISE = "real"
RECALLS = METRICS[:-1]
SUM_TOLERANCE = 0.3  # six recalls rounded to 0.1 (a Sum from unrounded recalls may differ by up to 0.3)
FOLD5_X6 = "fold5-rsum-x6"
EVAL_BUGS = {  # key → what the evaluation did wrong (shown under the boards)
    FOLD5_X6: ("5-fold MS-COCO 1K Sum printed as `mean_metrics[10]*6` = 2 × (i2t R@1 + R@5 + R@10), the "
               "NCR-family evaluation.py bug (kuanghuei/SCAN#23, fixed in vsepp PR#43); the Sum shown is recomputed "
               "from the recalls"),
    "fold5-t2i-r10": ("5-fold MS-COCO 1K t2i R@10 accumulated from i2t R@10 (NPC's eval.py: `t2i_R10 = "
                      "t2i_R10 + results['i2t_R@10']`): the printed t2i R@10, and so the Sum, are not t2i's; every "
                      "COCO 1K row of its README has t2i R@10 = i2t R@10"),
}


@dataclass(frozen=True)
class ReportedRow:
    source: str  # key into sources.csv
    method: str  # as printed in the paper
    backbone: str  # "" when the paper does not say
    ensemble_size: int | None
    benchmark: str  # f30k, coco-1k, coco-5k, cc152k
    noise_ratio: float  # 0.0 for "real" (CC152K carries its own noise)
    metrics: dict[str, float]
    note: str
    noise_type: str = "caption"  # the noise protocol of the paper's run: caption | image
    printed_rsum: float | None = None  # the paper's Sum where it differs from its recalls' (metrics has the recomputed one)
    copy_of: str = ""  # rows with the same key are published copies of one result (they may disagree: flagged)
    eval_bug: str = ""  # a key of EVAL_BUGS: the evaluation that printed these numbers had that bug

    @property
    def noise(self) -> NoiseSpec:
        """The paper's noise protocol: every published table uses a random shuffle of its type."""
        return NoiseSpec.make(self.noise_type)


def _read(name: str) -> str:
    return resources.files("ncbench.reference").joinpath(name).read_text(encoding="utf-8")


def load_sources() -> dict[str, str]:
    return {r["source"]: r["citation"] for r in csv.DictReader(io.StringIO(_read("sources.csv")))}


def load_reported(text: str | None = None) -> list[ReportedRow]:
    """Parse the reference file (or ``text`` in its format); a malformed row is an error naming it."""
    text = _read("reported.csv") if text is None else text
    sources = load_sources()
    rows = []
    for i, r in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        where = f"reported.csv line {i}"
        try:
            metrics = {m: float(r[m]) for m in METRICS}
            noise = 0.0 if r["noise"] == REAL_NOISE else float(r["noise"])
            ens = int(r["ensemble_size"]) if r["ensemble_size"] else None
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultError(f"{where}: malformed row ({exc})") from None
        if r["source"] not in sources:
            raise ResultError(f"{where}: unknown source {r['source']!r} (add it to sources.csv)")
        if any(math.isnan(v) for v in metrics.values()):
            raise ResultError(f"{where}: NaN in the numbers")
        printed = None
        recomputed = round(sum(metrics[m] for m in RECALLS), 1)
        if abs(recomputed - metrics["rsum"]) > SUM_TOLERANCE:
            printed, metrics["rsum"] = metrics["rsum"], recomputed
        kind = (r.get("noise_type") or "").strip()
        if kind not in NOISE_TYPES:
            raise ResultError(f"{where}: noise_type must be one of {', '.join(NOISE_TYPES)}, got {kind!r}")
        bug = (r.get("eval_bug") or "").strip() or _recognised_bug(r["benchmark"], metrics, printed)
        if bug and bug not in EVAL_BUGS:
            raise ResultError(f"{where}: eval_bug must be one of {', '.join(EVAL_BUGS)}, got {bug!r}")
        rows.append(ReportedRow(r["source"], r["method"], r["backbone"], ens, r["benchmark"], noise, metrics,
                                r.get("note") or "", kind, printed, (r.get("copy_of") or "").strip(), bug))
    return rows


def _recognised_bug(benchmark: str, metrics: dict[str, float], printed: float | None) -> str:
    """``FOLD5_X6`` where an MS-COCO 1K row's printed Sum is twice its i2t recalls (not their sum)."""
    i2t = sum(metrics[m] for m in RECALLS[:3])
    if benchmark == "coco-1k" and printed is not None and abs(printed - 2 * i2t) <= SUM_TOLERANCE:
        return FOLD5_X6
    return ""
