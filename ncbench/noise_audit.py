"""The noise audit: how the noise models' "noisy" training pairs look to people.

A noise model (``ncbench.data.noise_models``) declares a training pair noisy: caption *c* of image
*i* is given image *j*. Whether people would agree is measured here on datasets with human
judgments of image–caption pairs (Flickr8k's expert and CrowdFlower judgments, ``ncbench.data.
judgments``; on the ``flickr8k-xception`` card they cover all 1000 images). For each model and
seed the noise is generated on the **training split only**, exactly as a run does, and every noisy
pair (image *j*, caption id ``<name of i>#<k>``) is looked up in the judgment files. Per model,
pooled over the seeds and per seed:

* **noisy pairs**, and how many a model was asked for (an item it could not corrupt is short);
* **judged**: how many of them people judged (expert, crowd), and the share;
* among the judged ones, the **mean score** (expert: mean of three scores 1–4; crowd: fraction of
  yes) and the share people say **describes** the image (the majority verdict: expert score ≥ 3,
  crowd yes; ties have no verdict and are counted apart). This is the share of the "noisy" pairs
  that are in fact true matches;
* **mean similarity**: the cosine similarity of the pair's true image *i* and the given image *j*
  under one yardstick for all models (the dataset's own features, L2-normalised: the ``features``
  embedder of ``neighbour``), beside the random shuffle's (the shuffle is always audited too).

``partial`` keeps the image and changes one word of the caption, so no person ever judged the
noisy pair: its judgment columns are n/a (the reason is given) and it reports instead which word
class of its word list was replaced (``ncbench.data.wordlists``: person, colour, place, ...), read
off its texts against the captions.

Two references put the numbers in context: the **prevalence** among all judged pairs inside the
training split that are not true pairs (what a uniformly random judged pair gives), and the true
pairs people judged (how often people accept a caption of the image itself). A uniformly random
wrong pair is judged with the share *judged wrong pairs / all wrong pairs* of the split.

The judged pairs are not a random sample of pairs: the expert pairs were mostly proposed by
retrieval systems, so similar pairs are over-represented. Shares "describes" are therefore
conditional on a pair being judged; they compare models with each other and with the shuffle, not
with the whole population of pairs.

``ceiling_sweep`` serves the choice of ``neighbour``'s ``k`` and ``ceiling``: for each setting it
gives the quantities above as exact **expectations over the model's draw** (every eligible item is
equally likely to be chosen and moves to each of its image's ``m`` candidates with probability
1/m, so each candidate pair weighs 1/m), which need no seeds and use every judged candidate pair,
and how many items have no candidate under the ceiling (and so are passed over). Quantiles of the
top-k similarities come first, to pick the grid from.

Only what the judgment files cover can be measured: in Flickr8k only caption ``#2`` of each image
was judged, so at most a fifth of the noisy pairs can ever be judged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, astuple, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data.globalfeat import ImageTable, load_table, table_splits
from .data.judgments import CAPTION_ID, READERS
from .data.noise import check_ratio
from .data.noise_models import (
    KIND_NAMES, NEIGHBOUR, PARTIAL, SHUFFLED, NoiseInputs, build_params, embed_images, get_model,
    inputs_from_split, item_captions, n_chosen, neighbour_table, swap_similarity,
)
from .data.vocab import tokenize
from .data.wordlists import concept_table, word_classes
from .errors import ConfigError, DataError

YARDSTICK = "features"  # the similarity every model's swaps are measured with
PARTIAL_NA = "n/a: partial keeps the image and rewrites one word, so nobody judged the noisy pair"
DEFAULT_KS = (5, 10, 20)
DEFAULT_CEILINGS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6)
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
SIM_EDGES = (-1.0, 0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)


# ------------------------------------------------------------------------------ judgments on a split


@dataclass
class JudgmentIndex:
    """One judgment file resolved on a training split. A pair is keyed by ``j * n_captions + c``
    (given image number ``j``, caption row ``c``, both of the split); per distinct judged pair: its
    judgment lines, their summed score, how many said "describes" and how many had a verdict."""

    name: str
    file: str
    n_captions: int
    keys: np.ndarray  # sorted unique int64
    lines: np.ndarray
    score_sum: np.ndarray
    yes: np.ndarray
    verdicts: np.ndarray
    in_file: int = 0  # judgment lines in the file
    on_dataset: int = 0  # lines whose image and caption are in the dataset
    in_train: int = 0  # lines whose image and caption's image are both training images

    def true_pairs(self, cpi: int) -> np.ndarray:
        """Per judged pair: whether the caption is one of the given image's own."""
        return self.keys // self.n_captions == (self.keys % self.n_captions) // cpi

    def stats(self, keys: np.ndarray, weights: np.ndarray | None = None) -> "JudgedStats":
        """What people said about the pairs ``keys`` (each weighing ``weights``, default 1)."""
        keys = np.asarray(keys, dtype=np.int64)
        w = np.ones(len(keys)) if weights is None else np.asarray(weights, dtype=np.float64)
        pos = np.minimum(np.searchsorted(self.keys, keys), max(len(self.keys) - 1, 0))
        hit = (self.keys[pos] == keys) if len(self.keys) else np.zeros(len(keys), dtype=bool)
        wh, ph = w[hit], pos[hit]
        return JudgedStats(float(w.sum()), float(wh.sum()), float(wh @ self.lines[ph]), float(wh @ self.score_sum[ph]),
                           float(wh @ self.yes[ph]), float(wh @ self.verdicts[ph]))


@dataclass
class JudgedStats:
    """People's judgments of a set of pairs (counts, or expected counts when weighted)."""

    pairs: float = 0.0
    judged: float = 0.0  # pairs with at least one judgment
    judgments: float = 0.0  # judgment lines over those pairs
    score_sum: float = 0.0
    yes: float = 0.0  # judgments whose majority says "describes"
    verdicts: float = 0.0  # judgments with a majority (not a tie)

    def __add__(self, other: "JudgedStats") -> "JudgedStats":
        return JudgedStats(*(a + b for a, b in zip(astuple(self), astuple(other))))

    @property
    def judged_share(self) -> float:
        return self.judged / self.pairs if self.pairs else float("nan")

    @property
    def mean_score(self) -> float:
        return self.score_sum / self.judgments if self.judgments else float("nan")

    @property
    def describes_share(self) -> float:
        return self.yes / self.verdicts if self.verdicts else float("nan")

    @property
    def ties(self) -> float:
        return self.judgments - self.verdicts

    def to_json(self) -> dict:
        return {**{k: _num(v) for k, v in asdict(self).items()}, "judged_share": _num(self.judged_share),
                "mean_score": _num(self.mean_score), "describes_share": _num(self.describes_share)}


def judgment_file(name: str, path: Path) -> Path:
    """A judgment file of kind ``name`` (``expert`` or ``crowd``), checked to exist."""
    if name not in READERS:
        raise ConfigError(f"unknown judgment kind {name!r} (known: {', '.join(READERS)})")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {name} judgment file not found")
    return path


def index_judgments(name: str, path: Path, table: ImageTable, cpi: int) -> JudgmentIndex:
    """Read a judgment file (``expert`` or ``crowd`` format) and key its pairs on the training split."""
    path = judgment_file(name, path)
    train_pos = {table.names[r]: p for p, r in enumerate(table.rows["train"])}
    known = set(table.names)
    n_cap = len(table.rows["train"]) * cpi
    judgments = READERS[name](path)
    keys, scores, verdicts, on_dataset = [], [], [], 0
    for j in judgments:
        m = CAPTION_ID.match(j.caption_id)
        cap_name, k = m["name"], int(m["k"])
        if j.image not in known or cap_name not in known or k >= cpi:
            continue
        on_dataset += 1
        if j.image in train_pos and cap_name in train_pos:
            keys.append(train_pos[j.image] * n_cap + train_pos[cap_name] * cpi + k)
            scores.append(j.score)
            verdicts.append(j.describes)
    keys_a, inverse = np.unique(np.asarray(keys, dtype=np.int64), return_inverse=True)
    inverse = inverse.reshape(-1)
    verdict = np.asarray(verdicts, dtype=np.float64)

    def per_pair(values) -> np.ndarray:
        return np.bincount(inverse, weights=np.asarray(values, dtype=np.float64), minlength=len(keys_a))

    return JudgmentIndex(name, str(path), n_cap, keys_a, per_pair(np.ones(len(keys))), per_pair(scores),
                         per_pair(verdict == 1.0), per_pair(~np.isnan(verdict)),
                         len(judgments), on_dataset, len(keys))


# ------------------------------------------------------------------------------------ the audit data


@dataclass
class AuditData:
    """A dataset's training split, its noise inputs and its judgments keyed on that split."""

    dataset: str
    table: ImageTable
    inputs: NoiseInputs
    judgments: dict[str, JudgmentIndex]

    @property
    def cpi(self) -> int:
        return self.inputs.captions_per_image

    def image_of_row(self, rows: np.ndarray) -> np.ndarray:
        """The image number of each feature row of the split."""
        return np.searchsorted(self.inputs.image_rows, rows)

    def keys(self, captions: np.ndarray, images: np.ndarray) -> np.ndarray:
        """The pair keys of (caption row, given image number) pairs."""
        return np.asarray(images, dtype=np.int64) * self.inputs.n_captions + np.asarray(captions, dtype=np.int64)

    def judged_captions(self) -> int:
        """Training captions that appear in some judgment (of any image)."""
        rows = set()
        for idx in self.judgments.values():
            rows.update((idx.keys % idx.n_captions).tolist())
        return len(rows)


def audit_data(dataset: str, table: ImageTable, cpi: int, files: dict[str, Path], word_list: str = "english",
               data_dir: Path | None = None) -> AuditData:
    """The audit's view of a loaded table: its training split and the judgment ``files``
    (``{"expert": path, "crowd": path}``, either may be absent)."""
    files = {k: v for k, v in files.items() if v is not None}
    if not files:
        raise ConfigError(f"the noise audit of {dataset!r} needs human judgments: an expert or a crowd file")
    train = next(s for s in table_splits(table, cpi) if s.name == "train")
    inputs = inputs_from_split(train, table.vocab, word_list, data_dir)
    return AuditData(dataset, table, inputs, {k: index_judgments(k, Path(p), table, cpi) for k, p in files.items()})


def load_audit_data(card, data_root: Path | None, expert: Path | None = None,
                    crowd: Path | None = None) -> AuditData:
    """Load a global-feature dataset card for the audit; ``expert``/``crowd`` replace the card's
    judgment files (the card's are relative to ``data_root``). ``partial`` uses the card's word list."""
    from .data.cards import GlobalFeatureCard

    if not isinstance(card, GlobalFeatureCard):
        raise ConfigError(f"dataset {card.name!r}: the noise audit needs a global-feature dataset (images by name), "
                          "such as flickr8k-xception")
    root = card.locate(data_root, None)
    src = card.judgments
    files = {"expert": expert or (root / src.expert if src and src.expert else None),
             "crowd": crowd or (root / src.crowd if src and src.crowd else None)}
    if not any(files.values()):
        raise ConfigError(f"dataset {card.name!r} has no human judgments; give an expert or a crowd judgment file")
    for name, path in files.items():  # before the (slower) features are read
        if path is not None:
            judgment_file(name, path)
    table = load_table(root, card.source, card.captions_per_image)
    return audit_data(card.name, table, card.captions_per_image, files, card.word_list, root)


# ------------------------------------------------------------------------------------- one model, seeds


@dataclass
class SeedAudit:
    seed: int
    nominal: int  # noisy pairs asked for: chosen items × their captions
    noisy: int
    by_kind: dict[str, int]
    judged: dict[str, JudgedStats]  # per judgment kind; empty for partial
    kind_judged: dict[str, dict[str, JudgedStats]]  # per noise kind (when a model mixes several)
    similarity_sum: float  # over noisy pairs whose image changed
    moved: int  # noisy pairs whose image changed
    word_classes: dict[str, int]  # partial: replaced word's class → count


@dataclass
class ModelAudit:
    model: str
    params: dict[str, Any]
    seeds: list[SeedAudit]
    note: str = ""

    def pooled(self, kind: str, noise_kind: str | None = None) -> JudgedStats:
        out = JudgedStats()
        for s in self.seeds:
            part = s.judged if noise_kind is None else s.kind_judged.get(noise_kind, {})
            out = out + part.get(kind, JudgedStats())
        return out

    @property
    def noisy(self) -> int:
        return sum(s.noisy for s in self.seeds)

    @property
    def nominal(self) -> int:
        return sum(s.nominal for s in self.seeds)

    @property
    def mean_similarity(self) -> float:
        moved = sum(s.moved for s in self.seeds)
        return sum(s.similarity_sum for s in self.seeds) / moved if moved else float("nan")

    @property
    def noise_kinds(self) -> list[str]:
        return sorted({k for s in self.seeds for k in s.kind_judged})

    @property
    def word_classes(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for s in self.seeds:
            total.update(s.word_classes)
        return dict(total)

    def to_json(self) -> dict:
        kinds = sorted({k for s in self.seeds for k in s.judged})
        return {
            "model": self.model, "params": self.params, "note": self.note or None,
            "noisy_pairs": self.noisy, "nominal_pairs": self.nominal, "mean_similarity": _num(self.mean_similarity),
            "judged": {k: self.pooled(k).to_json() for k in kinds},
            "by_noise_kind": {nk: {k: self.pooled(k, nk).to_json() for k in kinds} for nk in self.noise_kinds},
            "word_classes": self.word_classes or None,
            "seeds": [{"seed": s.seed, "noisy_pairs": s.noisy, "nominal_pairs": s.nominal, "by_kind": s.by_kind,
                       "mean_similarity": _num(s.similarity_sum / s.moved if s.moved else float("nan")),
                       "judged": {k: v.to_json() for k, v in s.judged.items()},
                       **({"word_classes": s.word_classes} if s.word_classes else {})} for s in self.seeds],
        }


def replaced_classes(inputs: NoiseInputs, texts: dict[int, str], word_list: str) -> dict[str, int]:
    """For ``partial``'s texts: how many replaced a word of each class (``other`` if the texts do
    not differ from the caption in exactly one word of the list)."""
    table = concept_table(word_classes(word_list))
    out: Counter[str] = Counter()
    for c, text in texts.items():
        old, new = tokenize(inputs.captions[c]), tokenize(text)
        diff = [t for t, u in zip(old, new) if t != u] if len(old) == len(new) else []
        out[table[diff[0]][0] if len(diff) == 1 and diff[0] in table else "other"] += 1
    return dict(sorted(out.items()))


def audit_seed(data: AuditData, model: str, params: dict, ratio: float, seed: int, noise_type: str,
               yardstick: np.ndarray) -> SeedAudit:
    """Generate one model's noise on the training split and look up its noisy pairs."""
    inputs = data.inputs
    out = get_model(model).generate(inputs, ratio, seed, noise_type, params)
    noisy = np.flatnonzero(~out.clean)
    n_items = len(item_captions(inputs, noise_type)[0])
    nominal = n_chosen(ratio, n_items) * (inputs.captions_per_image if noise_type == "image" else 1)
    kinds = out.kind[noisy]
    by_kind = {KIND_NAMES[int(k)]: int((kinds == k).sum()) for k in np.unique(kinds)}
    true_img = data.image_of_row(inputs.true_rows[noisy])
    given = data.image_of_row(out.t2i[noisy])
    moved = given != true_img  # every noisy pair but partial's
    sim = swap_similarity(yardstick, true_img[moved], given[moved])
    judged, kind_judged, classes = {}, {}, {}
    if np.any(kinds == PARTIAL):
        classes = replaced_classes(inputs, out.texts, out.details.get("word_list", inputs.word_list))
    if moved.any():
        keys, moved_kinds = data.keys(noisy[moved], given[moved]), kinds[moved]
        judged = {k: idx.stats(keys) for k, idx in data.judgments.items()}
        present = [k for k in (SHUFFLED, NEIGHBOUR) if np.any(moved_kinds == k)]
        if len(present) > 1:
            kind_judged = {KIND_NAMES[nk]: {k: idx.stats(keys[moved_kinds == nk]) for k, idx in data.judgments.items()}
                           for nk in present}
    return SeedAudit(seed, int(nominal), len(noisy), by_kind, judged, kind_judged, float(sim.sum()), int(moved.sum()),
                     classes)


@dataclass
class Reference:
    """People's judgments of the judged training pairs that are not true pairs, and of the true ones."""

    wrong: dict[str, JudgedStats]
    true: dict[str, JudgedStats]
    random_judged_share: dict[str, float]  # share of all wrong pairs of the split that are judged

    def to_json(self) -> dict:
        return {"judged_wrong_pairs": {k: v.to_json() for k, v in self.wrong.items()},
                "judged_true_pairs": {k: v.to_json() for k, v in self.true.items()},
                "random_wrong_pair_judged_share": {k: _num(v) for k, v in self.random_judged_share.items()}}


def reference(data: AuditData) -> Reference:
    wrong, true, share = {}, {}, {}
    n_wrong = data.inputs.n_captions * (data.inputs.n_images - 1)
    for k, idx in data.judgments.items():
        is_true = idx.true_pairs(data.cpi)
        wrong[k] = idx.stats(idx.keys[~is_true])
        true[k] = idx.stats(idx.keys[is_true])
        share[k] = wrong[k].judged / n_wrong if n_wrong else float("nan")
    return Reference(wrong, true, share)


@dataclass
class AuditReport:
    dataset: str
    ratio: float
    seeds: list[int]
    noise_type: str
    n_images: int
    n_captions: int
    judged_captions: int
    judgment_files: dict[str, dict[str, Any]]
    reference: Reference
    models: list[ModelAudit]
    yardstick: str = YARDSTICK

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "split": "train", "ratio": self.ratio, "seeds": self.seeds,
                "noise_type": self.noise_type, "images": self.n_images, "captions": self.n_captions,
                "judged_captions": self.judged_captions, "similarity": self.yardstick,
                "judgment_files": self.judgment_files, "reference": self.reference.to_json(),
                "models": [m.to_json() for m in self.models]}

    def render(self) -> str:
        return render_audit(self)


def _check_run(ratio: float, seeds: list[int], noise_type: str) -> None:
    check_ratio(ratio)
    if not seeds:
        raise ConfigError("the noise audit needs at least one seed")
    if noise_type not in ("caption", "image"):
        raise ConfigError(f"noise type must be caption or image, got {noise_type!r}")


def audit_noise(data: AuditData, models: list[tuple[str, dict]], ratio: float, seeds: list[int],
                noise_type: str = "caption") -> AuditReport:
    """Audit each ``(model, params)`` at ``ratio`` over ``seeds`` on the training split; the random
    shuffle is audited first whether listed or not, as the reference."""
    _check_run(ratio, seeds, noise_type)
    models = list(models)
    if not any(name == "shuffle" for name, _ in models):
        models.insert(0, ("shuffle", {}))
    yardstick = embed_images(data.inputs, YARDSTICK)
    audits = []
    for name, given in models:
        params = build_params(name, given)
        if noise_type not in get_model(name).types:
            raise ConfigError(f"noise model {name!r} has no {noise_type}-level noise")
        per_seed = [audit_seed(data, name, params, ratio, s, noise_type, yardstick) for s in seeds]
        audits.append(ModelAudit(name, params, per_seed, PARTIAL_NA if name == "partial" else ""))
    files = {k: {"file": i.file, "lines": i.in_file, "on_dataset": i.on_dataset, "in_train": i.in_train,
                 "pairs_in_train": int(len(i.keys)), "true_pairs_in_train": int(i.true_pairs(data.cpi).sum())}
             for k, i in data.judgments.items()}
    return AuditReport(data.dataset, ratio, list(seeds), noise_type, data.inputs.n_images, data.inputs.n_captions,
                       data.judged_captions(), files, reference(data), audits)


# ------------------------------------------------------------------------------------- ceiling sweep


@dataclass
class SweepRow:
    k: int
    ceiling: float
    no_candidate: int  # items with no candidate image under the ceiling (never corrupted)
    short: int  # of the items asked for at the ratio, how many cannot be had
    mean_similarity: float  # expected over the draw
    judged: dict[str, JudgedStats]  # expected (weights: probability of each candidate pair)
    judged_candidates: dict[str, int]  # distinct candidate pairs people judged (the evidence)

    def to_json(self) -> dict:
        return {"k": self.k, "ceiling": self.ceiling, "no_candidate_items": self.no_candidate,
                "short_items": self.short,
                "mean_similarity": _num(self.mean_similarity), "judged_candidate_pairs": self.judged_candidates,
                "expected": {k: {"judged_share": _num(v.judged_share), "mean_score": _num(v.mean_score),
                                 "describes_share": _num(v.describes_share)} for k, v in self.judged.items()}}


@dataclass
class SweepReport:
    dataset: str
    ratio: float
    noise_type: str
    items: int
    quantiles: dict[int, list[float]]  # k → quantiles (QUANTILES) of each image's k-th similarity
    rows: list[SweepRow]
    uniform: SweepRow  # every other image a candidate: what a uniformly random wrong pair gives
    by_similarity: list[tuple[float, float, dict[str, JudgedStats]]]  # judged wrong pairs per similarity bin
    embedder: str = YARDSTICK

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "ratio": self.ratio, "noise_type": self.noise_type, "items": self.items,
                "embedder": self.embedder, "quantile_levels": list(QUANTILES),
                "kth_similarity_quantiles": {str(k): v for k, v in self.quantiles.items()},
                "uniform": self.uniform.to_json(), "rows": [r.to_json() for r in self.rows],
                "judged_wrong_pairs_by_similarity": [{"from": lo, "to": hi, **{k: v.to_json() for k, v in per.items()}}
                                                     for lo, hi, per in self.by_similarity]}

    def render(self) -> str:
        return render_sweep(self)


def candidate_similarity(emb: np.ndarray, table: np.ndarray, chunk: int = 512) -> np.ndarray:
    """The similarity of image ``i`` to each of its candidates ``table[i]`` (NaN where padded)."""
    out = np.full(table.shape, np.nan)
    for c0 in range(0, len(table), chunk):
        t = table[c0:c0 + chunk]
        s = np.take_along_axis(emb[c0:c0 + chunk] @ emb.T, np.maximum(t, 0), axis=1)
        out[c0:c0 + chunk] = np.where(t >= 0, s, np.nan)
    return out


def kth_similarity_quantiles(emb: np.ndarray, ks: list[int]) -> dict[int, list[float]]:
    """Per k: quantiles over the images of the similarity of each image's k-th most similar other."""
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    top = -np.sort(-sims, axis=1)
    return {k: [round(float(q), 4) for q in np.quantile(top[:, min(k, len(emb) - 1) - 1], QUANTILES)]
            for k in ks if len(emb) > 1}


def expected_neighbour(data: AuditData, emb: np.ndarray, k: int, ceiling: float, ratio: float,
                       noise_type: str) -> SweepRow:
    """``neighbour``'s noise in expectation over its draw: each candidate pair of an eligible item
    weighs 1/m (m: the candidates of its image), as every eligible item is equally likely chosen."""
    table, counts = neighbour_table(emb, np.arange(data.inputs.n_images), k, ceiling)
    item_image = item_captions(data.inputs, noise_type)[0]
    eligible = counts[item_image] > 0
    ok = counts > 0
    image_sim = np.nansum(candidate_similarity(emb, table), axis=1)[ok] / counts[ok]
    cap_image = np.arange(data.inputs.n_captions) // data.cpi
    c_all = np.repeat(np.arange(data.inputs.n_captions), table.shape[1])
    j_all = table[cap_image].reshape(-1)
    c_all, j_all = c_all[j_all >= 0], j_all[j_all >= 0]
    keys, w = data.keys(c_all, j_all), 1.0 / counts[c_all // data.cpi]
    judged = {name: idx.stats(keys, w) for name, idx in data.judgments.items()}
    evidence = {name: int(idx.stats(keys).judged) for name, idx in data.judgments.items()}  # keys are distinct
    short = max(0, n_chosen(ratio, len(item_image)) - int(eligible.sum()))
    return SweepRow(k, ceiling, int((~eligible).sum()), short, float(image_sim.mean()) if ok.any() else float("nan"),
                    judged, evidence)


def describes_by_similarity(data: AuditData, emb: np.ndarray, edges=SIM_EDGES) -> list[tuple[float, float, dict]]:
    """The judged wrong pairs of the training split by the similarity of the caption's image to
    the given image: per bin [lo, hi) (the last one closed), what people said."""
    wrong, sim = {}, {}
    for name, idx in data.judgments.items():
        wrong[name] = idx.keys[~idx.true_pairs(data.cpi)]
        true_image, given = (wrong[name] % idx.n_captions) // data.cpi, wrong[name] // idx.n_captions
        sim[name] = np.clip(swap_similarity(emb, true_image, given), -1.0, 1.0)
    out = []
    for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        last = b == len(edges) - 2
        inside = {n: (s >= lo) & ((s <= hi) if last else (s < hi)) for n, s in sim.items()}
        out.append((float(lo), float(hi), {n: idx.stats(wrong[n][inside[n]]) for n, idx in data.judgments.items()}))
    return out


def ceiling_sweep(data: AuditData, ratio: float, ks=DEFAULT_KS, ceilings=DEFAULT_CEILINGS,
                  noise_type: str = "caption", embedder: str = YARDSTICK) -> SweepReport:
    """``neighbour`` at ``ratio`` for every ``k`` × ``ceiling``, in expectation over its draw."""
    _check_run(ratio, [0], noise_type)
    for k, c in [(k, c) for k in ks for c in ceilings]:
        build_params("neighbour", {"k": k, "ceiling": c, "embedder": embedder})
    emb = embed_images(data.inputs, embedder)
    rows = [expected_neighbour(data, emb, k, c, ratio, noise_type) for k in ks for c in ceilings]
    uniform = expected_neighbour(data, emb, max(1, data.inputs.n_images - 1), 1.0, ratio, noise_type)
    n_items = len(item_captions(data.inputs, noise_type)[0])
    return SweepReport(data.dataset, ratio, noise_type, n_items, kth_similarity_quantiles(emb, list(ks)), rows,
                       uniform, describes_by_similarity(data, emb), embedder)


# ----------------------------------------------------------------------------------------- rendering


def _num(x: float) -> float | None:
    return None if x != x else round(float(x), 6)


def _pct(x: float, digits: int = 1) -> str:
    return "–" if x != x else f"{100 * x:.{digits}f}%"


def _f(x: float, digits: int = 2) -> str:
    return "–" if x != x else f"{x:.{digits}f}"


def _judged_cells(s: JudgedStats | None) -> list[str]:
    """judged (share) | mean score | describes (yes/verdicts = share)."""
    if s is None:
        return ["n/a"] * 3
    ties = f", {s.ties:g} tied" if s.ties else ""
    return [f"{s.judged:g} ({_pct(s.judged_share, 2)})", _f(s.mean_score),
            f"{s.yes:g}/{s.verdicts:g} = {_pct(s.describes_share)}{ties}" if s.verdicts else "–"]


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def _params_text(p: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items() if k != "embedder" or v != YARDSTICK) or "–"


def _judged_head(kinds: list[str]) -> list[str]:
    return [h for k in kinds for h in (f"{k} judged", f"{k} mean score", f"{k} describes")]


def render_audit(r: AuditReport) -> str:
    kinds = list(r.judgment_files)
    lines = [f"Noise audit: {r.dataset}, training split ({r.n_images} images, {r.n_captions} captions), "
             f"{r.noise_type}-level noise at ratio {r.ratio:g}, seeds {', '.join(map(str, r.seeds))}.", ""]
    for k, f in r.judgment_files.items():
        lines.append(f"* {k} judgments ({f['file']}): {f['lines']} lines, {f['on_dataset']} on this dataset, "
                     f"{f['in_train']} inside the training split ({f['pairs_in_train']} pairs, "
                     f"{f['true_pairs_in_train']} of them true pairs)")
    lines += [f"* {r.judged_captions} of the {r.n_captions} training captions were ever judged (with any image); "
              "a noisy pair can only be judged if its caption is one of them",
              f"* similarity: cosine of the true and the given image under the '{r.yardstick}' embedder "
              "(the dataset's features, L2-normalised); describes: the judges' majority "
              "(expert score ≥ 3, crowd yes)",
              ""]
    head = ["model", "params", "noisy pairs", "mean sim."] + _judged_head(kinds)
    rows = []
    for m in r.models:
        rows.append([m.model, _params_text(m.params), f"{m.noisy} of {m.nominal}", _f(m.mean_similarity)]
                    + [c for k in kinds for c in (_judged_cells(None) if m.note else _judged_cells(m.pooled(k)))])
        for nk in m.noise_kinds:
            rows.append([f"  {m.model}: {nk} part", "", str(sum(s.by_kind.get(nk, 0) for s in m.seeds)), ""]
                        + [c for k in kinds for c in _judged_cells(m.pooled(k, nk))])
    ref = r.reference
    for what, stats in (("wrong", ref.wrong), ("true", ref.true)):
        rows.append([f"reference: all judged {what} pairs", "in the training split", "", ""]
                    + [c for k in kinds for c in [f"{stats[k].judged:g}", *_judged_cells(stats[k])[1:]]])
    lines += [f"Pooled over {len(r.seeds)} seed(s):", ""] + _table(head, rows)
    lines += ["", "A uniformly random wrong pair of the training split is judged with probability "
              + ", ".join(f"{k} {_pct(v, 3)}" for k, v in ref.random_judged_share.items()) + "."]
    for m in r.models:
        lines += ["", f"### {m.model} ({_params_text(m.params)})", ""]
        if m.note:
            lines += [m.note + ".", ""]
        seed_rows = [[str(s.seed), f"{s.noisy} of {s.nominal}", ", ".join(f"{k} {v}" for k, v in s.by_kind.items()),
                      _f(s.similarity_sum / s.moved if s.moved else float("nan"))]
                     + [c for k in kinds for c in _judged_cells(s.judged.get(k))] for s in m.seeds]
        lines += _table(["seed", "noisy pairs", "kinds", "mean sim."] + _judged_head(kinds), seed_rows)
        if m.word_classes:
            total = sum(m.word_classes.values())
            lines += ["", "Replaced word's class (all seeds): " + ", ".join(
                f"{c} {n} ({_pct(n / total)})" for c, n in m.word_classes.items()) + "."]
    return "\n".join(lines) + "\n"


def render_sweep(s: SweepReport) -> str:
    lines = [f"Neighbour ceiling sweep: {s.dataset}, {s.noise_type}-level at ratio {s.ratio:g} ({s.items} items), "
             f"similarity under the '{s.embedder}' embedder; expectations over the model's draw.", "",
             "Similarity of each image's k-th most similar other image (quantiles over the training images):", ""]
    lines += _table(["k"] + [f"q{int(100 * q)}" for q in QUANTILES],
                    [[str(k)] + [f"{v:.3f}" for v in qs] for k, qs in s.quantiles.items()])
    kinds = list(s.uniform.judged)
    head = ["k", "ceiling", "items without candidate", "short at ratio", "mean sim."] + [
        h for k in kinds for h in (f"{k} judged", f"{k} judged pairs", f"{k} mean score", f"{k} describes")]

    def row(r: SweepRow, k_text: str, c_text: str) -> list[str]:
        return [k_text, c_text, str(r.no_candidate), str(r.short), _f(r.mean_similarity, 3)] + [
            c for k in kinds for c in (_pct(r.judged[k].judged_share, 2), str(r.judged_candidates[k]),
                                       _f(r.judged[k].mean_score), _pct(r.judged[k].describes_share))]

    rows = [row(s.uniform, "all", "1 (uniform wrong image)")] + [row(r, str(r.k), f"{r.ceiling:g}") for r in s.rows]
    lines += ["", *_table(head, rows), "",
              "judged pairs: distinct candidate pairs people judged (the evidence behind the shares); "
              "describes: expected share of the judged noisy pairs whose judges' majority says the caption describes "
              "the image.", "", "All judged wrong pairs of the training split by the similarity of the caption's "
              "image to the judged image:", ""]
    bins = [[f"[{lo:g}, {hi:g}{']' if i == len(s.by_similarity) - 1 else ')'}"]
            + [c for k in kinds for c in (f"{per[k].judged:g}", _f(per[k].mean_score), _judged_cells(per[k])[2])]
            for i, (lo, hi, per) in enumerate(s.by_similarity)]
    lines += _table(["similarity"] + [h for k in kinds for h in (f"{k} pairs", f"{k} mean score", f"{k} describes")],
                    bins)
    return "\n".join(lines) + "\n"
