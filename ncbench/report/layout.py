"""The papers' table layout as data: tables → noise groups → rows → cells.

BiCro's Table 1 (``shared/docs/paper-tables.md``) is the model: rows grouped by noise ratio, then
method; one column group per benchmark (Flickr30K 1K beside MS-COCO 1K; MS-COCO 5K and CC152K
in tables of their own; any other dataset, such as ``synthetic``, alone), each with i2t
R@1/5/10, t2i R@1/5/10 and Sum. The best *measured* value of each column is marked within its
noise group (reported rows and the reference rows never are). Fairness columns follow (backbone,
ensemble size, selection rule, seeds, GPU-hours, how the recipe was chosen).

Two measured rows are references rather than contenders: the **floor** (a training-free method,
``probe``: a closed-form fit on the noisy pairs) and the **ceiling** (``clean_oracle``: trained on
the truly clean pairs only). A measured row whose mean rSum falls below the floor's in its noise
group is marked ``below_floor``: it learned less than a linear fit of word counts.

``build_agreement_boards`` lays out the human-agreement scores of ``ncbench detect`` the same way
(noise groups, method rows), with AUC and Spearman per judgment kind as the column groups.

The two noise protocols never share a table: caption-level results (NCR's protocol) and
image-level results (DECL/RCL's: all captions of a chosen image move together) are laid out as
separate boards, each titled with its protocol; reported rows join the boards of their own type.

A measured row of kind ``checkpoint`` (``ncbench evaluate``: the authors' released weights scored by
ncbench) carries the files behind it (``Row.released``, set by ``marks.mark_checkpoints``) and is
labelled ``released checkpoint``. A reported Sum that a checkpoint of the same method, backbone,
dataset, noise ratio and protocol was evaluated against carries that ``CheckpointCheck`` (✓ or ✗ with
Δ = evaluated − reported). Reported rows printed by an evaluation with a known bug carry it per
benchmark (``Row.eval_bugs``, from ``reported.EVAL_BUGS``), with a note under the table.

Measured rows accepted through ``ncbench submit`` carry their sources and code hashes
(``submitted``, set by ``marks.mark_provenance``) and are badged ``submitted`` (``dirty code`` when
accepted with ``--allow-dirty``); rows measured here have none.

``build_boards`` turns the aggregated frame (and, when asked, the reported rows) into ``Board``
objects; the Markdown, HTML and LaTeX renderers only format them, so all three show the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from .. import PROTOCOL_VERSION
from ..data.noise_spec import CAPTION_SHUFFLE, NoiseSpec
from .aggregate import AGREEMENT_METRICS, METRICS
from .reported import EVAL_BUGS, ReportedRow

# (key, title, benchmarks in column order); other benchmarks get a table of their own
TABLES = (
    ("f30k-coco1k", "Flickr30K 1K and MS-COCO 1K", ("f30k", "coco-1k")),
    ("coco5k", "MS-COCO 5K", ("coco-5k",)),
    ("cc152k", "CC152K (real noise)", ("cc152k",)),
    ("now", "NoW (real noise), by caption tokeniser", ("now", "now-bpe", "now-jieba")),
)
LABELS = {"f30k": "Flickr30K", "coco-1k": "MS-COCO 1K", "coco-5k": "MS-COCO 5K", "cc152k": "CC152K",
          "now": "NoW (bert)", "now-bpe": "NoW (bpe)", "now-jieba": "NoW (jieba)", "synthetic": "Synthetic",
          "expert": "Expert judgments (all pairs)", "crowd": "CrowdFlower judgments (all pairs)",
          "expert-heldout": "Expert (held-out pairs)", "crowd-heldout": "CrowdFlower (held-out pairs)"}
SHORT = {"f30k": "F30K", "coco-1k": "COCO 1K", "coco-5k": "COCO 5K", "cc152k": "CC152K", "synthetic": "Synth",
         "now": "NoW bert", "now-bpe": "NoW bpe", "now-jieba": "NoW jieba",
         "expert": "Expert", "crowd": "Crowd", "expert-heldout": "Expert held-out", "crowd-heldout": "Crowd held-out"}
REAL_NOISE_BENCHMARKS = {"cc152k", "now", "now-bpe", "now-jieba"}  # noise as collected, none injected
METRIC_HEADERS = ("i2t R@1", "R@5", "R@10", "t2i R@1", "R@5", "R@10", "Sum")
AGREEMENT_HEADERS = ("AUC", "Spearman ρ")
AGREEMENT_BENCHMARKS = ("expert", "crowd", "expert-heldout", "crowd-heldout")


CHECK_TOLERANCE = 1.0  # rSum: |evaluated − reported| within it is ✓ (see ``marks.CHECK_NOTE`` for why)
CHECK_OK, CHECK_FAIL = "✓", "✗"  # a reported Sum the released checkpoint gives / does not give
EVAL_BUG_MARK = "§"  # a reported row printed by an evaluation with a known bug
RELEASED = "released checkpoint"  # the label of a measured row of kind ``checkpoint``


@dataclass(frozen=True)
class Released:
    """The released checkpoint(s) behind a measured row of kind ``checkpoint``."""

    row: str  # its row on the boards: ``ncr@checkpoint``
    files: tuple[str, ...]  # ``ncr.pth.tar (sha256 1a2b3c4d5e6f)``, one per file
    source: str = ""  # where the files are from (``--source``), "" when not given
    claims: float | None = None  # the rSum the user said the files should give (``--claims``)

    def text(self) -> str:
        return f"{', '.join(self.files) or 'no file recorded'}; source {self.source or 'not given'}"


@dataclass(frozen=True)
class CheckpointCheck:
    """A reported Sum checked against a released checkpoint's evaluation on the same benchmark."""

    released: Released
    evaluated: float
    reported: float
    tolerance: float = CHECK_TOLERANCE

    @property
    def delta(self) -> float:
        return round(self.evaluated - self.reported, 1)

    @property
    def ok(self) -> bool:
        return abs(self.delta) <= self.tolerance


@dataclass
class Cell:
    mean: float
    std: float = math.nan
    ci95: float = math.nan
    n: int = 1  # seeds this cell's statistics cover
    seeds: int | None = None  # seeds of its row, where that is more than ``n`` (a value undefined for some)
    best: bool = False
    digits: int = 1
    printed: float | None = None  # a reported Sum as printed, where it differs from the sum of the recalls
    p_value: float | None = None  # Sum: paired permutation p against the best row of its group (``marks``)
    tied: bool = False  # Sum: not significantly below the best of its noise group (``marks``)
    checks: list[CheckpointCheck] = field(default_factory=list)  # reported Sum: released checkpoints evaluated

    def text(self) -> str:
        if math.isnan(self.mean):
            return "n/a"
        fewer = f" (n = {self.n})" if self.seeds is not None and self.n < self.seeds else ""
        if self.n > 1 and not math.isnan(self.std):
            return f"{self.mean:.{self.digits}f} ± {self.std:.{self.digits}f}{fewer}"
        if self.printed is not None:
            return f"{self.mean:.{self.digits}f} (printed {self.printed:.{self.digits}f})"
        return f"{self.mean:.{self.digits}f}{fewer}"


@dataclass
class Row:
    method: str
    backbone: str
    cells: dict[str, dict[str, Cell]]  # benchmark → metric → cell (benchmark absent: no result)
    reported: bool = False
    source: str | None = None  # reported rows: key of the source
    note: str = ""
    ensemble_size: int | None = None
    selection: str = ""
    seeds: dict[str, int] = field(default_factory=dict)  # benchmark → n seeds
    gpu_hours: float | None = None
    mixed: bool = False  # measured on a noise index other than the table's (only with --allow-mixed)
    reference: str = ""  # measured reference rows: "floor" (training-free) or "ceiling" (ground truth)
    recipe: str = ""  # how the options were chosen (``aggregate.recipe_label``)
    below_floor: list[str] = field(default_factory=list)  # benchmarks where its mean rSum is below the floor's
    copy_of: str = ""  # reported: the published result this row is a copy of (``reported.csv``)
    conflict: bool = False  # reported: another published copy of the same result disagrees
    submitted: list[str] = field(default_factory=list)  # sources of its seeds accepted by ``ncbench submit``
    code_hashes: list[str] = field(default_factory=list)  # of its submitted seeds ("unknown" for none recorded)
    dirty_code: bool = False  # a submitted seed was made by uncommitted or unrecorded code (``--allow-dirty``)
    differs: bool = False  # a seed has two different results (local and accepted): ``marks.mark_provenance``
    released: list[Released] = field(default_factory=list)  # a ``checkpoint`` row: its files (``marks``)
    eval_bugs: dict[str, str] = field(default_factory=dict)  # reported: benchmark → ``EVAL_BUGS`` key

    def cells_of(self, metric: str) -> list[Cell]:
        """This row's cells of ``metric``, one per benchmark it has."""
        return [cells[metric] for cells in self.cells.values() if metric in cells]

    def seeds_text(self) -> str:
        ns = sorted(set(self.seeds.values()))
        return "/".join(str(n) for n in ns) if ns else "—"


@dataclass
class NoiseGroup:
    ratio: float
    label: str
    rows: list[Row]


@dataclass
class Board:
    key: str
    title: str
    protocol: str
    benchmarks: list[str]
    groups: list[NoiseGroup]
    sources: dict[str, str]  # source key → citation, for the reported rows shown
    metrics: tuple[str, ...] = METRICS  # the columns of each benchmark's group
    headers: tuple[str, ...] = METRIC_HEADERS
    notes: list[str] = field(default_factory=list)  # extra lines under the table
    noise: NoiseSpec = CAPTION_SHUFFLE  # the noise protocol of every row (type, model, parameters)

    @property
    def is_retrieval(self) -> bool:
        return self.metrics == METRICS

    @property
    def has_measured(self) -> bool:
        return any(not r.reported for g in self.groups for r in g.rows)

    def benchmark_label(self, b: str) -> str:
        return LABELS.get(b, b)


def noise_label(ratio: float, benchmarks: list[str]) -> str:
    if ratio == 0 and all(b in REAL_NOISE_BENCHMARKS for b in benchmarks):
        return "real"
    return f"{ratio:.0%}"


def table_of(benchmark: str) -> tuple[str, str, tuple[str, ...]]:
    for key, title, benches in TABLES:
        if benchmark in benches:
            return key, title, benches
    return benchmark, LABELS.get(benchmark, benchmark), (benchmark,)


def noise_title(noise: NoiseSpec) -> str:
    """``caption-level noise``, ``image-level noise``, ``caption-level noise, neighbour model v1 (k=10, ...)``."""
    return f"{noise.type}-level noise{noise.model_title}"


def typed_table(key: str, title: str, benches: tuple[str, ...], noise: NoiseSpec) -> tuple[str, str]:
    """A board's key and title for one noise protocol: ``f30k-coco1k`` / ``f30k-coco1k-image`` /
    ``synthetic-neighbour``, titled with the protocol (tables of real-noise benchmarks only have no
    injected noise protocol)."""
    if all(b in REAL_NOISE_BENCHMARKS for b in benches):
        return key, title
    return key + noise.suffix(), f"{title}, {noise_title(noise)}"


def _measured_rows(block: pd.DataFrame, metrics: tuple[str, ...] = METRICS, digits: int = 1) -> list[Row]:
    rows = []
    for (method, backbone), g in block.groupby(["method", "backbone"], sort=True):
        cells, seeds = {}, {}
        for _, r in g.iterrows():
            cells[r.benchmark] = {m: Cell(float(r[f"{m}_mean"]), float(r[f"{m}_std"]), float(r[f"{m}_ci95"]),
                                          int(r[f"{m}_n"]), seeds=int(r.n), digits=digits) for m in metrics}
            seeds[r.benchmark] = int(r.n)
        first = g.iloc[0]
        rows.append(Row(
            method=str(method), backbone=str(backbone), cells=cells, ensemble_size=int(g["ensemble_size"].max()),
            selection=str(first.selection), seeds=seeds,
            gpu_hours=float(g.loc[g.benchmark == first.benchmark, "gpu_hours"].sum()),
            mixed=bool(g["mixed"].any()), reference=str(first.get("reference", "") or ""),
            recipe=str(first.get("recipe", "") or ""),
        ))
    return rows


def mark_below_floor(rows: list[Row], benchmarks: list[str]) -> None:
    """Mark each contender (measured, not a reference) whose mean rSum is below the floor row's."""
    floors = [r for r in rows if r.reference == "floor"]
    for b in benchmarks:
        limits = [f.cells[b]["rsum"].mean for f in floors if b in f.cells and "rsum" in f.cells[b]]
        if not limits:
            continue
        for r in rows:
            cell = r.cells.get(b, {}).get("rsum")
            if not r.reported and not r.reference and cell is not None and cell.mean < max(limits):
                r.below_floor.append(b)


def _reported_rows(reported: list[ReportedRow], benches: tuple[str, ...], ratio: float, noise: NoiseSpec) -> list[Row]:
    """Reported rows of one noise group, merged across benchmarks by (source, method, backbone)."""
    merged: dict[tuple[str, str, str], Row] = {}
    for rep in reported:
        if rep.benchmark not in benches or rep.noise_ratio != ratio or rep.noise != noise:
            continue
        key = (rep.source, rep.method, rep.backbone)
        row = merged.setdefault(key, Row(rep.method, rep.backbone, {}, reported=True, source=rep.source,
                                         note=rep.note, ensemble_size=rep.ensemble_size, selection="—",
                                         copy_of=rep.copy_of))
        row.cells[rep.benchmark] = {m: Cell(v, printed=rep.printed_rsum if m == "rsum" else None)
                                    for m, v in rep.metrics.items()}
        if rep.eval_bug:
            row.eval_bugs[rep.benchmark] = rep.eval_bug
    rows = list(merged.values())
    _flag_conflicts(rows)
    return rows


def _flag_conflicts(rows: list[Row]) -> None:
    """Mark reported rows of one noise group that are copies of the same published result (the same
    ``copy_of`` key, e.g. CREAM's 80% row as printed in UCPM and in IN2R) but disagree on a shared
    benchmark: all stay on the board, none is chosen. Re-runs by other papers are not copies."""
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            if not a.copy_of or a.copy_of != b.copy_of:
                continue
            shared = set(a.cells) & set(b.cells)
            if any(a.cells[k][m].mean != b.cells[k][m].mean for k in shared for m in a.cells[k] if m in b.cells[k]):
                a.conflict = b.conflict = True


def _mark_best(rows: list[Row], benchmarks: list[str], metrics: tuple[str, ...] = METRICS, digits: int = 1) -> None:
    measured = [r for r in rows if not r.reported and not r.reference]
    if len(measured) < 2:
        return
    for b in benchmarks:
        for m in metrics:
            cells = [r.cells[b][m] for r in measured if b in r.cells and not math.isnan(r.cells[b][m].mean)]
            if cells:
                top = max(c.mean for c in cells)
                for c in cells:
                    c.best = round(c.mean, digits) == round(top, digits)


def build_boards(agg: pd.DataFrame, reported: list[ReportedRow] | None = None,
                 sources: dict[str, str] | None = None) -> list[Board]:
    """One board per (protocol, table, noise protocol): a board never ranks runs of different noise
    types or models together. Reported rows (all the papers' shuffles) join the current protocol's
    tables of their own noise type."""
    reported = reported or []
    keys: dict[tuple[str, str, NoiseSpec], tuple[str, tuple[str, ...]]] = {}
    if "noise" not in agg:  # an aggregate of results from before noise protocols were recorded
        agg = agg.assign(noise=CAPTION_SHUFFLE)
    for protocol, benchmark, kind in agg[["protocol_version", "benchmark", "noise"]].drop_duplicates().itertuples(index=False):
        key, title, benches = table_of(benchmark)
        keys[(str(protocol), key, kind)] = (title, benches)
    for rep in reported:
        key, title, benches = table_of(rep.benchmark)
        keys.setdefault((PROTOCOL_VERSION, key, rep.noise), (title, benches))
    order = [t[0] for t in TABLES]

    def rank(item):
        (protocol, key, kind), _ = item
        return protocol, order.index(key) if key in order else -1, key, kind.sort_key()

    boards = []
    for (protocol, key, kind), (title, benches) in sorted(keys.items(), key=rank):
        block = agg[(agg.protocol_version.astype(str) == protocol) & agg.benchmark.isin(benches) & (agg.noise == kind)]
        reps = [r for r in reported if r.noise == kind] if protocol == PROTOCOL_VERSION else []
        ratios = sorted(set(block.noise_ratio.astype(float)) | {r.noise_ratio for r in reps if r.benchmark in benches})
        present = [b for b in benches if b in set(block.benchmark) or any(r.benchmark == b for r in reps)]
        groups = []
        for ratio in ratios:
            rows = _measured_rows(block[block.noise_ratio == ratio]) + _reported_rows(reps, benches, ratio, kind)
            if rows:
                _mark_best(rows, present)
                mark_below_floor(rows, present)
                groups.append(NoiseGroup(ratio, noise_label(ratio, present), rows))
        used = {r.source for g in groups for r in g.rows if r.reported}
        board_key, board_title = typed_table(key, title, benches, kind)
        boards.append(Board(board_key, board_title, protocol, present, groups,
                            {s: (sources or {}).get(s, s) for s in sorted(used)}, notes=eval_bug_notes(groups),
                            noise=kind))
    return boards


def eval_bug_notes(groups: list[NoiseGroup]) -> list[str]:
    """One note per reported row and bug: which benchmarks' numbers the bug printed, and what it is."""
    notes = []
    for g in groups:
        for row in g.rows:
            for bug in sorted(set(row.eval_bugs.values())):
                where = ", ".join(SHORT.get(b, b) for b, v in row.eval_bugs.items() if v == bug)
                notes.append(f"{EVAL_BUG_MARK} {row.method} (reported, {row.source}), noise {g.label}, {where}: "
                             f"{EVAL_BUGS[bug]}.")
    return notes


def build_agreement_boards(agg: pd.DataFrame, estimates: dict[str, str] | None = None) -> list[Board]:
    """One board per (protocol, dataset) of human-agreement scores (``ncbench detect``): column
    groups expert / crowd over all judged pairs and over held-out pairs, AUC and Spearman each;
    ``estimates`` (method → what its score is) become the notes under the table."""
    boards = []
    if "noise" not in agg:
        agg = agg.assign(noise=CAPTION_SHUFFLE)
    for (protocol, dataset, kind), block in agg.groupby(["protocol_version", "dataset", "noise"], sort=True):
        present = [b for b in AGREEMENT_BENCHMARKS if b in set(block.benchmark)]
        groups = []
        for ratio in sorted(set(block.noise_ratio.astype(float))):
            rows = _measured_rows(block[block.noise_ratio == ratio], AGREEMENT_METRICS, digits=3)
            _mark_best(rows, present, AGREEMENT_METRICS, digits=3)
            groups.append(NoiseGroup(ratio, noise_label(ratio, present), rows))
        methods = sorted({r.method for g in groups for r in g.rows})
        notes = [f"{m}: {(estimates or {}).get(m, 'estimate not recorded')}" for m in methods]
        key = f"human-{dataset}{kind.suffix()}"
        title = f"Noise detection vs human judgments ({dataset}, {noise_title(kind)})"
        boards.append(Board(key, title, str(protocol), present, groups, {}, AGREEMENT_METRICS, AGREEMENT_HEADERS,
                            notes, noise=kind))
    return boards
