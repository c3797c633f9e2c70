"""Noise injection as the papers do it, and noise-index files, in both noise protocols.

* **caption-level** (NCR, BiCro, CRCL; methods-and-protocol §1.3): choose ``⌊r · N_cap⌋`` captions at
  random and permute their image indices among themselves;
* **image-level** (DECL, RCL, L2RM; methods-beyond §1): choose ``⌊r · N_img⌋`` images and permute
  them among themselves, so all captions of a chosen image point to the same wrong image (RCL's
  ``data.py``: ``shuffle(inx); noisy = inx[:int(r·N)]; noisy_inx[noisy] = shuffled(noisy)``).

A selected item that receives its own image back counts as clean, so the realised ratio is a hair
below ``r``. The index is drawn with its own ``numpy.random.default_rng(seed)`` (the official code
uses NumPy's global RNG) and saved in the official format: a 1-D int64 ``.npy`` mapping caption row
→ image row. Existing files are loaded verbatim: per-caption ones (BiCro's, L2RM's) and per-image
ones (RCL's, one entry per image row, expanded to its captions). The type a file holds is detected
from its content (``detect_noise_type``), and a file of the other type than the run declares is
refused, so an image-level index can never be trained as caption-level. A file's realised ratio
must match the nominal ratio it is given for (``check_realised``), so a clean index can never be
filed as 60% noise; an index ncbench generated and cached is compared with a fresh generation by its
sha256 (``obtain_noise_index``), so a modified cache is refused. Every run records the sha256 of the
per-caption index (RCL's per-image file and L2RM's ``np.repeat`` of it hash alike).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomic
from ..errors import ConfigError, DataError
from .noise_models import (  # noqa: F401  (check_ratio and the shuffles are part of this module's interface)
    check_ratio, get_model, read_texts, shuffle_captions, shuffle_images, texts_bytes, texts_sha256,
)

NOISE_TYPES = ("caption", "image")


@dataclass(frozen=True)
class NoiseIndex:
    """Caption row → image row after noise, with the ground-truth clean mask; for noise that
    corrupts text (``partial``), the noisy text of each corrupted caption row."""

    t2i: np.ndarray  # int64 (N_cap,)
    clean: np.ndarray  # bool (N_cap,): the pair is the one the caption file gives
    ratio: float  # nominal ratio asked for (or given with a file)
    sha256: str  # of the per-caption index (int64 .npy content)
    source: str  # "generated:seed=<s>" or the file path
    noise_type: str = "caption"  # the protocol's type: caption | image
    texts: dict[int, str] = field(default_factory=dict)  # caption row → corrupted text (partial)
    texts_sha256: str | None = None  # of the override file's content (``noise_models.texts_bytes``)
    details: dict[str, Any] = field(default_factory=dict)  # the model's record, e.g. the embedder's sha256

    @property
    def realised_ratio(self) -> float:
        return float(1.0 - self.clean.mean()) if len(self.clean) else 0.0


def check_noise_type(noise_type: str) -> str:
    if noise_type not in NOISE_TYPES:
        raise ConfigError(f"noise type must be one of {', '.join(NOISE_TYPES)}, got {noise_type!r}")
    return noise_type


def array_sha256(t2i: np.ndarray) -> str:
    """sha256 of the index as it is stored in an ``.npy`` file (int64, little-endian, C order)."""
    return hashlib.sha256(np.ascontiguousarray(t2i, dtype="<i8").tobytes()).hexdigest()


def make_noise_index(true_rows: np.ndarray, ratio: float, seed: int, noise_type: str = "caption",
                     n_rows: int | None = None) -> NoiseIndex:
    if check_noise_type(noise_type) == "image":
        t2i = shuffle_images(true_rows, ratio, seed, n_rows)
    else:
        t2i = shuffle_captions(true_rows, ratio, seed)
    return NoiseIndex(t2i, t2i == true_rows, ratio, array_sha256(t2i), f"generated:seed={seed}", noise_type)


def detect_noise_type(t2i: np.ndarray, true_rows: np.ndarray) -> str:
    """``none`` (no caption moved), ``image`` (every image's captions are either all in place or all
    moved to one and the same other image) or ``caption`` (anything else)."""
    t2i, true_rows = np.asarray(t2i), np.asarray(true_rows)
    moved = t2i != true_rows
    if not moved.any():
        return "none"
    order = np.argsort(true_rows, kind="stable")
    rows, targets = true_rows[order], t2i[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    first = np.repeat(targets[starts], np.diff(np.r_[starts, len(rows)]))
    return "image" if bool((targets == first).all()) else "caption"


def per_caption(index: np.ndarray, true_rows: np.ndarray, n_rows: int, where: str) -> tuple[np.ndarray, str]:
    """A file's array as a per-caption index, and its layout: ``per-caption`` (one entry per caption)
    or ``per-image`` (RCL's: one entry per image row, ``index[i]`` = the image its captions get)."""
    if index.ndim == 1 and len(index) == n_rows and len(index) != len(true_rows):
        validate_index(index, n_rows, n_rows, where, unit="image row")
        return index.astype(np.int64, copy=False)[true_rows], "per-image"
    return index, "per-caption"


def validate_index(t2i: np.ndarray, n_captions: int, n_rows: int, where: str, unit: str = "training caption") -> np.ndarray:
    if t2i.ndim != 1 or not np.issubdtype(t2i.dtype, np.integer):
        raise DataError(f"{where}: expected a 1-D integer array, found {t2i.dtype} of shape {t2i.shape}")
    if len(t2i) != n_captions:
        extra = f" or {n_rows} (one per image row)" if unit == "training caption" and n_rows != n_captions else ""
        raise DataError(f"{where}: expected {n_captions} entries (one per {unit}){extra}, found {len(t2i)}")
    if len(t2i) and (t2i.min() < 0 or t2i.max() >= n_rows):
        raise DataError(
            f"{where}: image indices must lie in [0, {n_rows}), found range [{t2i.min()}, {t2i.max()}]"
        )
    return t2i.astype(np.int64, copy=False)


def read_index_file(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: noise index file not found")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: truncated or not a .npy array ({exc})") from None


# How far a file's realised ratio may fall below the nominal one. The papers' files fall a hair short
# (a selected caption or image that receives its own image back counts as clean; ⌊r·N⌋ rounds
# down): measured on all 18 shipped files (BiCro, L2RM, RCL for F30K; RCL for COCO), the worst gap is
# 7e-5 (L2RM/RCL F30K 0.6: 0.59993). On small datasets the same effect is a few items: ncbench's own
# generator fell short by at most 15 captions (caption-level, 1500 captions, 8000 draws) or 7 image
# rows (image-level), with a tail halving per further item. So the realised ratio must lie in
# [nominal - max(RATIO_TOLERANCE, RATIO_SLACK_STEPS steps), nominal + one step], one step being one
# caption (caption-level) or one image row (image-level) of the training split.
RATIO_TOLERANCE = 0.001
RATIO_SLACK_STEPS = 40


def check_realised(where: str, realised: float, nominal: float, n_units: int, noise_type: str) -> None:
    """Refuse an index whose realised ratio is not the ``nominal`` one it is given for (``n_units``:
    captions for caption-level noise, image rows for image-level; one of them is one step)."""
    step = 1.0 / max(n_units, 1)
    below = max(RATIO_TOLERANCE, RATIO_SLACK_STEPS * step)
    if not (nominal - below - 1e-9 <= realised <= nominal + step + 1e-9):  # 1e-9: float rounding at the bounds
        raise DataError(
            f"{where}: realised noise ratio {realised:.5f} does not match the nominal {nominal:g} it is given for "
            f"(tolerance: {below:.5f} below, {step:.5f} above, i.e. one {'image row' if noise_type == 'image' else 'caption'}); "
            f"pass the --noise value the file was made for (ncbench noise info {where})")


def load_noise_index(path: str | Path, true_rows: np.ndarray, n_rows: int, ratio: float | None = None,
                     noise_type: str = "caption") -> NoiseIndex:
    """Load an index file verbatim (per-caption or per-image) after checking its length, value range,
    that it holds noise of the declared ``noise_type`` and, with a nominal ``ratio``, that its realised
    ratio matches it (``check_realised``)."""
    check_noise_type(noise_type)
    raw, _ = per_caption(read_index_file(path), true_rows, n_rows, str(path))
    t2i = validate_index(raw, len(true_rows), n_rows, str(path))
    found = detect_noise_type(t2i, true_rows)
    if found not in ("none", noise_type):
        raise DataError(f"{path}: holds {found}-level noise but the run declares {noise_type}-level "
                        f"(pass --noise-type {found} to train with it under the {found}-level protocol)")
    clean = t2i == true_rows
    realised = float(1.0 - clean.mean()) if len(clean) else 0.0
    if ratio is not None:
        check_realised(str(path), realised, ratio, n_rows if noise_type == "image" else len(true_rows), noise_type)
    return NoiseIndex(t2i, clean, realised if ratio is None else ratio, array_sha256(t2i), str(path), noise_type)


def save_noise_index(index: NoiseIndex, path: str | Path) -> None:
    """Write the index atomically in the official format (int64 ``.npy``)."""
    write_atomic(path, lambda f: np.save(f, np.ascontiguousarray(index.t2i, dtype=np.int64)))


def obtain_noise_index(
    true_rows: np.ndarray, n_rows: int, ratio: float, seed: int, path: str | Path | None, noise_type: str = "caption"
) -> NoiseIndex:
    """The index for a run, generated; with ``path``, cached there: written on first use, and later
    compared with the fresh generation (``check_cached``), so a modified cache is never trained on."""
    ratio = check_ratio(ratio)
    index = make_noise_index(true_rows, ratio, seed, noise_type, n_rows)
    if path is None:
        return index
    if Path(path).exists():
        check_cached(Path(path), index, seed)
    else:
        save_noise_index(index, path)
    return NoiseIndex(index.t2i, index.clean, ratio, index.sha256, str(path), noise_type)


def check_cached(path: Path, index: NoiseIndex, seed: int) -> None:
    """Refuse a cached generated index that is not ``index`` (by the sha256 of its content)."""
    raw = read_index_file(path)
    same = raw.shape == index.t2i.shape and np.issubdtype(raw.dtype, np.integer) and array_sha256(raw) == index.sha256
    if not same:
        found = (f"sha256 {array_sha256(raw)[:12]}…" if np.issubdtype(raw.dtype, np.integer) and raw.ndim == 1
                 else f"a {raw.dtype} array of shape {raw.shape}")
        raise DataError(
            f"{path}: this cached noise index is not the one ncbench generates for {index.noise_type}-level ratio "
            f"{index.ratio:g}, noise seed {seed} ({found} instead of sha256 {index.sha256[:12]}…): it was "
            f"modified or replaced. Delete it to have it generated again, or train with a deliberate index "
            f"through --noise-file")


def describe_index_file(path: str | Path, captions_per_image: int = 5) -> dict:
    """What ``ncbench noise info`` reports about a file without knowing its dataset: its layout (a
    per-caption file indexes ``len/cpi`` image rows; anything indexing beyond that is per-image),
    the noise type found in it, the realised ratio and the sha256 of the per-caption index."""
    raw = read_index_file(path)
    validate_index(raw, len(raw), max(len(raw), 1), str(path), unit="entry")
    n = len(raw)
    caption_layout = n and n % captions_per_image == 0 and int(raw.max()) < n // captions_per_image
    n_rows = n // captions_per_image if caption_layout else n
    true = np.arange(n_rows * captions_per_image, dtype=np.int64) // captions_per_image
    t2i, layout = per_caption(raw.astype(np.int64), true, n_rows, str(path))
    return {"layout": layout, "entries": n, "captions": len(t2i), "noise_type": detect_noise_type(t2i, true),
            "min": int(raw.min()) if n else 0, "max": int(raw.max()) if n else 0,
            "realised": float((t2i != true).mean()) if len(t2i) else 0.0, "sha256": array_sha256(t2i)}


# ------------------------------------------------------------------ noise protocols (NoiseSpec)


def texts_path(index_path: str | Path) -> Path:
    """Where the corrupted texts of an index file live (``partial`` noise): ``<stem>.texts.json``."""
    index_path = Path(index_path)
    return index_path.with_name(index_path.stem + ".texts.json")


def generate_noise(spec, inputs, ratio: float, seed: int) -> NoiseIndex:
    """The noise of protocol ``spec`` (``NoiseSpec``) on a training split (``noise_models.NoiseInputs``);
    the papers' shuffle through ``make_noise_index``, so its indices stay byte-identical."""
    ratio = check_ratio(ratio)
    if spec.is_papers:
        return make_noise_index(inputs.true_rows, ratio, seed, spec.type, inputs.n_rows)
    out = get_model(spec.model).generate(inputs, ratio, seed, spec.type, spec.params_dict)
    return NoiseIndex(out.t2i, out.clean, ratio, array_sha256(out.t2i), f"generated:seed={seed}", spec.type,
                      out.texts, texts_sha256(out.texts) if out.texts else None, out.details)


def obtain_noise(spec, inputs, ratio: float, seed: int, path: str | Path | None) -> NoiseIndex:
    """The generated noise of a run, cached at ``path`` (with its texts beside it) and, when the cache
    exists, compared with the fresh generation, index and texts alike."""
    if spec.is_papers:
        return obtain_noise_index(inputs.true_rows, inputs.n_rows, ratio, seed, path, spec.type)
    index = generate_noise(spec, inputs, ratio, seed)
    if path is None:
        return index
    path, tpath = Path(path), texts_path(path)
    if path.exists():
        check_cached(path, index, seed)
        if index.texts and (not tpath.is_file() or texts_sha256(read_texts(tpath, len(index.t2i))) != index.texts_sha256):
            raise DataError(f"{tpath}: the cached corrupted texts are missing or not the ones ncbench generates for "
                            f"{spec.label} noise at ratio {ratio:g}, noise seed {seed}: delete {path} and {tpath} to "
                            f"have them generated again")
    else:
        if index.texts:
            write_atomic(tpath, lambda f: f.write(texts_bytes(index.texts)))
        save_noise_index(index, path)
    return replace(index, source=str(path))


def load_noise(spec, path: str | Path, inputs, ratio: float | None) -> NoiseIndex:
    """A noise file given for protocol ``spec`` (``--noise-file``), loaded verbatim: the index and,
    for text-corrupting models, its texts file; the realised ratio is checked against ``ratio``."""
    if spec.model != "partial":
        return load_noise_index(path, inputs.true_rows, inputs.n_rows, ratio, spec.type)
    index = load_noise_index(path, inputs.true_rows, inputs.n_rows, None, spec.type)
    if not index.clean.all():
        raise DataError(f"{path}: partial noise keeps every caption's image, but this index moves "
                        f"{int((~index.clean).sum())} caption(s)")
    tpath = texts_path(path)
    texts = read_texts(tpath, len(inputs.true_rows))
    clean = index.clean.copy()
    clean[list(texts)] = False
    realised = float(1.0 - clean.mean()) if len(clean) else 0.0
    if ratio is not None:
        check_realised(str(tpath), realised, ratio, inputs.n_rows if spec.type == "image" else len(inputs.true_rows),
                       spec.type)
    return replace(index, clean=clean, ratio=realised if ratio is None else ratio, texts=texts,
                   texts_sha256=texts_sha256(texts))


def noisy_split(split, index: NoiseIndex, vocab):
    """The training ``Split`` as the run sees it: each corrupted caption row's text (and tokens)
    replaced by its noisy text (the override layer of ``partial`` noise); the split itself when
    the noise corrupts no text."""
    if not index.texts:
        return split
    captions, tokens = list(split.captions), list(split.tokens)
    for row, text in index.texts.items():
        captions[row] = text
        tokens[row] = vocab.encode(text)
    return replace(split, captions=captions, tokens=tokens)

