"""Noise models: how the chosen training items of a run are corrupted, beyond the papers' shuffle.

A run's noise protocol (``NoiseSpec``, in ``ncbench.data.noise``) has a *type*, which items are
chosen (``caption``: ⌊r·N_captions⌋ single captions; ``image``: ⌊r·N_images⌋ images, each with all
its captions), and a *model*, what happens to a chosen item. The models here are pure functions of
the training split's arrays, a ratio, a seed and their parameters; each is registered with a
generator version, which every result records beside the parameters and the sha256 of the output:

* ``shuffle`` (v1): the papers' random shuffle (``ncbench.data.noise.shuffle_captions`` /
  ``shuffle_images``, byte-identical to the index ncbench made before noise models existed);
* ``neighbour`` (v1), *hard* noise: a chosen item moves to an image drawn uniformly from the ``k``
  most similar **other** images of the training split under a frozen embedder whose similarity to
  the item's true image is at most ``ceiling`` (cosine; more similar images are skipped, so
  near-duplicates, likely true matches, are never made "noisy"). The default embedder is the
  dataset's own image features (region features mean-pooled), L2-normalised; its sha256 is
  recorded. Unlike a shuffle this is not a permutation: a popular image can receive several
  foreign captions, as on the web;
* ``partial`` (v1), *corrupted text* (FOIL-style): the image stays and one content word of the
  caption (object, colour, action or place; ``ncbench.data.wordlists``) is replaced by a word of
  the same class and another concept that is in the vocabulary. The noisy text of each corrupted
  caption row is the output (an override layer over the caption file), with its sha256; the pair
  counts as noisy for the detection metrics. Image-level: every caption of a chosen image;
* ``mixed`` (v1): ⌊α·n⌋ of the n chosen items (the first in the seeded choice order) get
  ``neighbour`` noise, the rest are shuffled among themselves as in ``shuffle``.

All models choose items in the order of one ``numpy.random.default_rng(seed).permutation`` (the
shuffle's own choice), so at the same seed and ratio ``neighbour`` moves the very captions that
``shuffle`` moves; an item a model cannot corrupt (no candidate image under the ceiling, no
replaceable word) is passed over for the next one in that order, and only if too few items
qualify is the realised ratio below the nominal one (reported, never hidden).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..atomic import read_regular
from ..errors import ConfigError, DataError
from .vocab import tokenize
from .wordlists import concept_table, word_classes

# what happened to each caption row
CLEAN, SHUFFLED, NEIGHBOUR, PARTIAL = 0, 1, 2, 3
KIND_NAMES = {CLEAN: "clean", SHUFFLED: "shuffled", NEIGHBOUR: "neighbour", PARTIAL: "partial"}


@dataclass(frozen=True)
class NoiseInputs:
    """What a noise model may look at: the clean training split, never the dev or test split."""

    true_rows: np.ndarray  # caption → its clean image row (int64)
    captions_per_image: int
    image_rows: np.ndarray  # distinct image → its feature row (int64)
    n_rows: int  # feature rows of the split
    images: np.ndarray | None = None  # training features (N_rows, D) or (N_rows, R, D), for the embedder
    captions: list[str] | None = None  # training captions, for ``partial``
    vocab_words: frozenset[str] | None = None  # words a replacement may use (None: any)
    word_list: str = "english"
    data_dir: Path | None = None  # where a relative ``embedder`` file is looked up

    @property
    def n_captions(self) -> int:
        return len(self.true_rows)

    @property
    def n_images(self) -> int:
        return len(self.image_rows)


@dataclass
class Corruption:
    """A model's output: the noisy caption → image-row index, the ground truth and provenance."""

    t2i: np.ndarray  # int64 (N_cap,)
    clean: np.ndarray  # bool (N_cap,): the pair is what the caption file says
    kind: np.ndarray  # int8 (N_cap,): CLEAN / SHUFFLED / NEIGHBOUR / PARTIAL
    texts: dict[int, str] = field(default_factory=dict)  # caption row → its corrupted text
    details: dict[str, Any] = field(default_factory=dict)  # e.g. the embedder's sha256


# ---------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class NoiseModel:
    name: str
    version: str
    params: type  # a dataclass of the model's parameters, with defaults
    generate: Callable[..., Corruption]  # (inputs, ratio, seed, noise_type, params) -> Corruption
    types: tuple[str, ...] = ("caption", "image")
    summary: str = ""


NOISE_MODELS: dict[str, NoiseModel] = {}


def noise_model(name: str, version: str, params: type, summary: str = "", types=("caption", "image")):
    """Register a generator ``fn(inputs, ratio, seed, noise_type, params) -> Corruption``."""

    def deco(fn):
        NOISE_MODELS[name] = NoiseModel(name, version, params, fn, tuple(types), summary)
        return fn

    return deco


def get_model(name: str) -> NoiseModel:
    if name not in NOISE_MODELS:
        raise ConfigError(f"unknown noise model {name!r} (known: {', '.join(NOISE_MODELS)})")
    return NOISE_MODELS[name]


def build_params(model: str, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """All parameters of ``model``: its defaults, overridden by ``given`` (values read from strings
    where needed), checked by the dataclass's ``check``."""
    m = get_model(model)
    names = {f.name: f for f in fields(m.params)}
    given = dict(given or {})
    unknown = sorted(set(given) - set(names))
    if unknown:
        known = ", ".join(names) or "none"
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)} for noise model {model!r} (known: {known})")
    values = {}
    for name, f in names.items():
        default = getattr(m.params(), name)
        v = given.get(name, default)
        if isinstance(v, str) and not isinstance(default, str):
            try:
                v = type(default)(v)
            except ValueError:
                raise ConfigError(f"noise model {model!r}: cannot read {name}={v!r} as {type(default).__name__}") from None
        values[name] = v
    p = m.params(**values)
    p.check()
    return values


# ----------------------------------------------------------------------------- shared machinery


def item_captions(inputs: NoiseInputs, noise_type: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per item (a caption, or an image with its captions): its image number and its caption rows."""
    cpi = inputs.captions_per_image
    if noise_type == "image":
        caps = np.arange(inputs.n_images * cpi, dtype=np.int64).reshape(inputs.n_images, cpi)
        return np.arange(inputs.n_images, dtype=np.int64), list(caps)
    caps = np.arange(inputs.n_captions, dtype=np.int64)
    return caps // cpi, [caps[i : i + 1] for i in range(len(caps))]


def choose(order: np.ndarray, eligible: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` items of ``order`` that are eligible (all of them if fewer are)."""
    ok = order[eligible[order]]
    return ok[:n]


def n_chosen(ratio: float, n_items: int) -> int:
    return int(ratio * n_items)


def embed_images(inputs: NoiseInputs, embedder: str) -> np.ndarray:
    """One L2-normalised float64 row per distinct training image: the dataset's own features
    (``features``; region features mean-pooled), or a ``.npy`` file of shape (N_images, D)."""
    if embedder == "features":
        if inputs.images is None:
            raise ConfigError("the neighbour noise model needs the training features")
        rows, images = inputs.image_rows, inputs.images
        x = np.empty((len(rows), images.shape[-1]), dtype=np.float64)
        step = max(1, (64 << 20) // max(1, int(np.prod(images.shape[1:])) * 8))  # 64 MiB of float64 at a time
        for a in range(0, len(rows), step):  # F30K's 29,000 × 36 × 2048 regions never sit in memory at once
            block = np.asarray(images[rows[a : a + step]], dtype=np.float64)
            x[a : a + step] = block.mean(axis=1) if block.ndim == 3 else block
    else:
        path = Path(embedder)
        if not path.is_absolute() and inputs.data_dir is not None:
            path = inputs.data_dir / path
        try:
            x = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: embedder file unreadable or not a .npy array ({exc})") from None
        if x.ndim != 2 or len(x) != inputs.n_images or not np.issubdtype(x.dtype, np.floating):
            raise DataError(f"{path}: expected a float array of shape ({inputs.n_images}, D), one row per "
                            f"training image, found {x.dtype} {x.shape}")
        x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise DataError(f"embedder {embedder!r}: the embeddings contain NaN or inf")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def embedding_sha256(emb: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(emb, dtype="<f8").tobytes()).hexdigest()


def neighbour_table(emb: np.ndarray, queries: np.ndarray, k: int, ceiling: float,
                    chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """For each query image: its ``k`` most similar other images whose cosine similarity to it is at
    most ``ceiling``, most similar first, ties by lower image number (``-1`` pads a row with fewer),
    and how many there are."""
    queries = np.asarray(queries, dtype=np.int64)
    n = len(emb)
    k_eff = max(0, min(k, n - 1))
    table = np.full((len(queries), k), -1, dtype=np.int64)
    counts = np.zeros(len(queries), dtype=np.int64)
    for c0 in range(0, len(queries), chunk):
        q = queries[c0 : c0 + chunk]
        s = emb[q] @ emb.T
        s[np.arange(len(q)), q] = -np.inf
        s[s > ceiling] = -np.inf
        if k_eff == 0:
            continue
        part = np.argpartition(-s, k_eff - 1, axis=1)[:, :k_eff]
        kth = np.take_along_axis(s, part, axis=1).min(axis=1)
        for r in range(len(q)):
            above = np.flatnonzero(s[r] > kth[r])
            tied = np.flatnonzero(s[r] == kth[r])
            pick = np.concatenate([above, tied[: k_eff - len(above)]])
            pick = pick[np.isfinite(s[r, pick])]
            pick = pick[np.lexsort((pick, -s[r, pick]))]
            table[c0 + r, : len(pick)] = pick
            counts[c0 + r] = len(pick)
    return table, counts


def swap_similarity(emb: np.ndarray, true_image: np.ndarray, new_image: np.ndarray) -> np.ndarray:
    """Cosine similarity of each moved pair's true image and the image it was given."""
    return np.einsum("ij,ij->i", emb[true_image], emb[new_image])


def _result(inputs: NoiseInputs, t2i: np.ndarray, kind: np.ndarray, texts: dict[int, str] | None = None,
            details: dict[str, Any] | None = None) -> Corruption:
    clean = (t2i == inputs.true_rows) & (kind != PARTIAL)
    kind = np.where(clean, CLEAN, kind).astype(np.int8)
    return Corruption(t2i, clean, kind, dict(texts or {}), dict(details or {}))


# ---------------------------------------------------------------------------------------- models


def check_ratio(ratio: float) -> float:
    if not (0.0 <= ratio < 1.0) or ratio != ratio:
        raise ConfigError(f"noise ratio must be in [0, 1), got {ratio}")
    return float(ratio)


def shuffle_captions(true_rows: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    """The papers' caption shuffle (the protocol's index since before noise models): permute the images of ``⌊ratio·N⌋`` randomly chosen captions."""
    ratio = check_ratio(ratio)
    rng = np.random.default_rng(seed)
    t2i = np.array(true_rows, dtype=np.int64, copy=True)
    n_noisy = int(ratio * len(t2i))
    selected = rng.permutation(len(t2i))[:n_noisy]
    t2i[selected] = rng.permutation(t2i[selected])
    return t2i


def shuffle_images(true_rows: np.ndarray, ratio: float, seed: int, n_rows: int | None = None) -> np.ndarray:
    """The DECL/RCL image shuffle: permute ``⌊ratio·N_img⌋`` randomly chosen image rows; every caption
    follows its image (``n_rows``: the number of image rows, default ``max(true_rows) + 1``)."""
    true_rows = np.asarray(true_rows, dtype=np.int64)
    n_rows = int(true_rows.max()) + 1 if n_rows is None and len(true_rows) else int(n_rows or 0)
    return shuffle_captions(np.arange(n_rows, dtype=np.int64), ratio, seed)[true_rows]




@dataclass(frozen=True)
class NoParams:
    def check(self) -> None:
        pass


@dataclass(frozen=True)
class NeighbourParams:
    k: int = 10  # candidates per image: the k most similar other images under the ceiling
    # cosine similarity above which a candidate is skipped. 0.85 from ``ncbench noise audit`` on
    # flickr8k-xception (the card the Flickr8k judgments cover), 50% noise: judged wrong pairs at or
    # above 0.85 are true matches for people 36-75% (expert) / 13-22% (crowd) of the time, below it at
    # most 21% / 9.4%; with k=10 the swaps' mean similarity stays 0.636 (0.646 without a ceiling,
    # 0.012 for a shuffle) and "noisy" pairs people call true matches fall from 39.2% to 32.1%
    # (expert) and 13.6% to 11.7% (crowd). The value is in the embedder's units: calibrated for
    # that card's features; on CLIP features a random pair already has similarity 0.54.
    ceiling: float = 0.85
    embedder: str = "features"  # the dataset's image features, or a .npy of one row per training image

    def check(self) -> None:
        if self.k < 1:
            raise ConfigError(f"noise model neighbour: k must be at least 1, got {self.k}")
        if not -1.0 <= self.ceiling <= 1.0:
            raise ConfigError(f"noise model neighbour: ceiling is a cosine similarity in [-1, 1], got {self.ceiling}")


@dataclass(frozen=True)
class PartialParams:
    words: str = "auto"  # the word list: auto (the dataset's), english or synthetic

    def check(self) -> None:
        if self.words not in ("auto", "english", "synthetic"):
            raise ConfigError(f"noise model partial: words must be auto, english or synthetic, got {self.words!r}")


@dataclass(frozen=True)
class MixedParams(NeighbourParams):
    alpha: float = 0.5  # the share of the chosen items given neighbour noise; the rest are shuffled

    def check(self) -> None:
        super().check()
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"noise model mixed: alpha must be in [0, 1], got {self.alpha}")


@noise_model("shuffle", "1", NoParams, "the papers' random shuffle (NCR/BiCro/CRCL caption-level, DECL/RCL image-level)")
def shuffle(inputs: NoiseInputs, ratio: float, seed: int, noise_type: str, params: dict) -> Corruption:
    if noise_type == "image":
        t2i = shuffle_images(inputs.true_rows, ratio, seed, inputs.n_rows)
    else:
        t2i = shuffle_captions(inputs.true_rows, ratio, seed)
    return _result(inputs, t2i, np.full(len(t2i), SHUFFLED, dtype=np.int8))


@dataclass
class Neighbours:
    """The candidates of every item's image under ``neighbour``'s parameters."""

    item_image: np.ndarray  # per item, its image number
    item_caps: list[np.ndarray]  # per item, its caption rows
    images: np.ndarray  # the distinct images of the items, ascending (rows of ``table``)
    table: np.ndarray  # (len(images), k) candidate images, -1 padded
    counts: np.ndarray  # candidates per image
    details: dict[str, Any]  # the embedder and its sha256

    @classmethod
    def build(cls, inputs: NoiseInputs, noise_type: str, params: dict) -> "Neighbours":
        emb = embed_images(inputs, params["embedder"])
        item_image, item_caps = item_captions(inputs, noise_type)
        images = np.unique(item_image)
        table, counts = neighbour_table(emb, images, params["k"], params["ceiling"])
        return cls(item_image, item_caps, images, table, counts,
                   {"embedder": params["embedder"], "embedder_sha256": embedding_sha256(emb)})

    @property
    def eligible(self) -> np.ndarray:
        """Per item: whether its image has a candidate at all."""
        return self.counts[np.searchsorted(self.images, self.item_image)] > 0

    def draw(self, items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The image each of ``items`` (eligible ones) is given: uniform over its image's candidates."""
        if not len(items):
            return np.zeros(0, dtype=np.int64)
        pos = np.searchsorted(self.images, self.item_image[items])
        return self.table[pos, rng.integers(0, self.counts[pos])]


def _assign(inputs: NoiseInputs, t2i: np.ndarray, kind: np.ndarray, item_caps: list[np.ndarray],
            items: np.ndarray, target_images: np.ndarray, what: int) -> None:
    for item, img in zip(items, target_images):
        rows = item_caps[item]
        t2i[rows] = inputs.image_rows[img]
        kind[rows] = what


@noise_model("neighbour", "1", NeighbourParams,
             "hard noise: moved to one of the k most similar other images (below a similarity ceiling)")
def neighbour(inputs: NoiseInputs, ratio: float, seed: int, noise_type: str, params: dict) -> Corruption:
    nb = Neighbours.build(inputs, noise_type, params)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(nb.item_image))
    chosen = choose(order, nb.eligible, n_chosen(ratio, len(nb.item_image)))
    t2i = np.array(inputs.true_rows, dtype=np.int64, copy=True)
    kind = np.zeros(len(t2i), dtype=np.int8)
    _assign(inputs, t2i, kind, nb.item_caps, chosen, nb.draw(chosen, rng), NEIGHBOUR)
    return _result(inputs, t2i, kind, details=nb.details)


@noise_model("mixed", "1", MixedParams, "a share alpha of the chosen items from neighbour, the rest shuffled")
def mixed(inputs: NoiseInputs, ratio: float, seed: int, noise_type: str, params: dict) -> Corruption:
    nb = Neighbours.build(inputs, noise_type, params)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(nb.item_image))
    chosen = order[: n_chosen(ratio, len(nb.item_image))]
    n_hard = int(params["alpha"] * len(chosen))
    hard = choose(chosen, nb.eligible, n_hard)  # in choice order; an item without candidates is shuffled
    easy = chosen[~np.isin(chosen, hard)]
    t2i = np.array(inputs.true_rows, dtype=np.int64, copy=True)
    kind = np.zeros(len(t2i), dtype=np.int8)
    _assign(inputs, t2i, kind, nb.item_caps, easy, rng.permutation(nb.item_image[easy]), SHUFFLED)
    _assign(inputs, t2i, kind, nb.item_caps, hard, nb.draw(hard, rng), NEIGHBOUR)
    return _result(inputs, t2i, kind, details={**nb.details, "hard_items": int(len(hard)), "chosen_items": int(len(chosen))})


def replaceable(tokens: list[str], table: dict[str, tuple[str, int]], classes: dict[str, list[list[str]]],
                vocab_words: frozenset[str] | None) -> list[tuple[int, list[str]]]:
    """The positions of a caption's tokens that ``partial`` may replace, each with its candidate
    replacements (same class, other concept, in the vocabulary), in list order."""
    out = []
    for i, tok in enumerate(tokens):
        if tok not in table:
            continue
        cls, concept = table[tok]
        cands = [w for k, words in enumerate(classes[cls]) if k != concept for w in words
                 if vocab_words is None or w in vocab_words]
        if cands:
            out.append((i, cands))
    return out


@noise_model("partial", "1", PartialParams, "corrupted text: one content word replaced by another of its class")
def partial(inputs: NoiseInputs, ratio: float, seed: int, noise_type: str, params: dict) -> Corruption:
    if inputs.captions is None:
        raise ConfigError("the partial noise model needs the training captions")
    classes = word_classes(inputs.word_list if params["words"] == "auto" else params["words"])
    table = concept_table(classes)
    options: list[list[tuple[int, list[str]]]] = []
    toks_all: list[list[str]] = []
    for cap in inputs.captions:
        toks = tokenize(cap)
        ok = tokenize(" ".join(toks)) == toks  # the corrupted text re-reads as the same tokens
        toks_all.append(toks)
        options.append(replaceable(toks, table, classes, inputs.vocab_words) if ok else [])
    item_image, item_caps = item_captions(inputs, noise_type)
    eligible = np.array([all(options[c] for c in caps) for caps in item_caps], dtype=bool)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(item_image))
    chosen = choose(order, eligible, n_chosen(ratio, len(item_image)))
    t2i = np.array(inputs.true_rows, dtype=np.int64, copy=True)
    kind = np.zeros(len(t2i), dtype=np.int8)
    texts: dict[int, str] = {}
    for item in chosen:
        for c in item_caps[item]:
            pos, cands = options[c][int(rng.integers(len(options[c])))]
            toks = list(toks_all[c])
            toks[pos] = cands[int(rng.integers(len(cands)))]
            texts[int(c)] = " ".join(toks)
            kind[c] = PARTIAL
    eligible_share = float(eligible.mean()) if len(eligible) else 0.0
    return _result(inputs, t2i, kind, texts, {"word_list": params["words"] if params["words"] != "auto" else inputs.word_list,
                                              "eligible_items": round(eligible_share, 6)})


# ---------------------------------------------------------------------------- caption overrides

TEXTS_FORMAT = "ncbench-caption-overrides"


def texts_sha256(texts: dict[int, str]) -> str:
    """sha256 of the override layer as it is stored (canonical JSON, rows ascending)."""
    return hashlib.sha256(texts_bytes(texts)).hexdigest()


def texts_bytes(texts: dict[int, str]) -> bytes:
    rows = sorted(texts)
    doc = {"format": TEXTS_FORMAT, "version": 1, "rows": rows, "texts": [texts[r] for r in rows]}
    return (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def read_texts(path: Path, n_captions: int) -> dict[int, str]:
    """An override file, checked: rows unique and in range, one string each."""
    try:
        doc = json.loads(read_regular(path, 1 << 30).decode("utf-8"))  # a shared folder: no link, FIFO or device
    except FileNotFoundError:
        raise DataError(f"{path}: caption override file not found (partial noise needs the index's texts)") from None
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DataError(f"{path}: not a caption override file ({exc})") from None
    if not (isinstance(doc, dict) and doc.get("format") == TEXTS_FORMAT and isinstance(doc.get("rows"), list)
            and isinstance(doc.get("texts"), list) and len(doc["rows"]) == len(doc["texts"])):
        raise DataError(f"{path}: expected {{'format': '{TEXTS_FORMAT}', 'rows': [...], 'texts': [...]}} of equal length")
    rows, texts = doc["rows"], doc["texts"]
    if not all(isinstance(r, int) and not isinstance(r, bool) and 0 <= r < n_captions for r in rows):
        raise DataError(f"{path}: caption rows must be integers in [0, {n_captions})")
    if len(set(rows)) != len(rows) or not all(isinstance(t, str) and 0 < len(t) <= 10_000 for t in texts):
        raise DataError(f"{path}: caption rows must be unique, each with a non-empty text of at most 10,000 characters")
    return dict(zip(rows, texts))


def inputs_from_split(split, vocab=None, word_list: str = "english", data_dir: Path | None = None) -> NoiseInputs:
    """The ``NoiseInputs`` of a loaded training ``Split`` (``ncbench.data.precomp``)."""
    return NoiseInputs(split.caption_to_row(), split.captions_per_image, split.image_rows(), split.n_rows,
                       split.images, split.captions,
                       None if vocab is None else frozenset(vocab.word2idx), word_list, data_dir)
