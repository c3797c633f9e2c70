"""Global-feature datasets: one precomputed embedding per image (CLIP and the like) plus captions.

Layout under ``--data-root`` (paths relative to it, given by the card):

* ``features``: a float ``.npy`` of shape (N, D), one row per image;
* ``names``: the row order, one image name per line (N lines);
* ``captions``: either the Flickr8k token format (``<image>#<k><TAB>caption``; only the images in
  ``names`` are used, each needs exactly ``captions_per_image`` captions) or one caption per line,
  ``captions_per_image`` consecutive lines per row of ``features``;
* splits: official lists (``split_files``: train/dev/test image-name files, restricted to the
  images present) or a seeded split (``split_sizes``: train/dev/test image counts drawn with
  ``numpy.random.default_rng(split_seed)``).

Features are transformed once (``transform``): ``l2`` (unit rows, for CLIP), ``log_standardise``
(log of class posteriors, then per-dimension standardisation with the *training* mean and std, for
softmax outputs such as Xception's) or ``none``. The vocabulary is built from the training
captions (words seen at least ``vocab_threshold`` times). Everything is small and held in memory;
each split is a ``Split`` with one feature row per image, as the precomp loader gives, so every
method, backbone and the noise protocol work unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .precomp import Split, check_caption, load_features, read_text, warn_empty
from .vocab import Vocabulary

TOKEN_LINE = re.compile(r"^(?P<name>[^\t#]+)#(?P<k>\d+)\t(?P<caption>.*)$")
TRANSFORMS = ("none", "l2", "log_standardise")


def numbered_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """The non-empty lines of a text file, stripped, with their line numbers."""
    return [(i, line.strip()) for i, line in enumerate(read_text(path, what).splitlines(), 1) if line.strip()]


def read_lines(path: Path, what: str) -> list[str]:
    """The non-empty lines of a text file, stripped."""
    return [line for _, line in numbered_lines(path, what)]


def read_token_captions(path: Path, names: list[str], cpi: int) -> list[list[str]]:
    """Captions per image in ``names`` order from a Flickr8k-style token file (or one per line)."""
    lines = numbered_lines(path, "caption file")
    if lines and TOKEN_LINE.fullmatch(lines[0][1]):
        wanted = set(names)
        by_image: dict[str, dict[int, str]] = {}
        for i, line in lines:
            m = TOKEN_LINE.fullmatch(line)
            if m is None:
                raise DataError(f"{path}:{i}: expected '<image>#<k><TAB>caption', found {line[:60]!r}")
            if m["name"] in wanted:
                by_image.setdefault(m["name"], {})[int(m["k"])] = check_caption(path, i, m["caption"].strip())
        out = []
        for name in names:
            caps = by_image.get(name, {})
            if len(caps) != cpi:
                raise DataError(f"{path}: image {name} has {len(caps)} caption(s), expected {cpi}")
            out.append([caps[k] for k in sorted(caps)])
        warn_empty(path, [c for caps in out for c in caps])
        return out
    if len(lines) != cpi * len(names):
        raise DataError(f"{path}: {len(lines)} caption lines, expected {cpi} per image × {len(names)} images "
                        f"= {cpi * len(names)}")
    captions = [check_caption(path, i, line) for i, line in lines]
    return [captions[i * cpi:(i + 1) * cpi] for i in range(len(names))]


def split_rows(names: list[str], split_files: list[Path] | None, sizes: tuple[int, int, int] | None,
               seed: int) -> list[np.ndarray]:
    """Row indices of train, dev and test."""
    if split_files:
        index = {n: i for i, n in enumerate(names)}
        parts = []
        for f in split_files:
            rows = [index[n] for n in read_lines(f, "split list") if n in index]
            if not rows:
                raise DataError(f"{f}: none of its images are among the {len(names)} with features")
            parts.append(np.asarray(rows, dtype=np.int64))
        return parts
    if sizes is None:
        raise DataError("a global-feature card needs split_files or split_sizes")
    if sum(sizes) > len(names):
        raise DataError(f"split sizes {sizes} need {sum(sizes)} images, the features hold {len(names)}")
    perm = np.random.default_rng(seed).permutation(len(names))
    a, b, c = sizes
    return [np.sort(perm[:a]), np.sort(perm[a:a + b]), np.sort(perm[a + b:a + b + c])]


def transform_features(feats: np.ndarray, train_rows: np.ndarray, how: str) -> np.ndarray:
    x = np.asarray(feats, dtype=np.float64)
    if how == "l2":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    elif how == "log_standardise":
        x = np.log(np.clip(x, 1e-8, None))
        mean, std = x[train_rows].mean(axis=0), x[train_rows].std(axis=0)
        x = (x - mean) / np.where(std > 1e-8, std, 1.0)
    elif how != "none":
        raise DataError(f"unknown feature transform {how!r}; choose from {', '.join(TRANSFORMS)}")
    return x.astype(np.float32)


@dataclass(frozen=True)
class GlobalSource:
    """Where a global-feature dataset's files are, relative to ``--data-root``, and how to split them."""

    features: str
    names: str
    captions: str
    split_files: tuple[str, str, str] | None = None
    split_sizes: tuple[int, int, int] | None = None
    split_seed: int = 0
    transform: str = "l2"
    vocab_threshold: int = 2


@dataclass
class ImageTable:
    """Every image of a global-feature dataset: its name, transformed feature row, captions and split.

    The splits hold the same rows; the table is what code needing images by *name* uses (the
    human-judgment benchmark, ``ncbench.data.judgments``)."""

    names: list[str]
    features: np.ndarray  # (N, D) float32, transformed
    captions: list[list[str]]
    rows: dict[str, np.ndarray]  # split name → row indices
    vocab: Vocabulary
    source: str = ""

    def split_of_rows(self) -> np.ndarray:
        """Per row, the name of its split ("" for rows in none)."""
        out = np.full(len(self.names), "", dtype=object)
        for split, idx in self.rows.items():
            out[idx] = split
        return out


def load_table(root: Path, src: GlobalSource, cpi: int) -> ImageTable:
    """Read, check and transform a global-feature dataset; build its vocabulary."""
    root = Path(root)
    feats = load_features(root / src.features)
    if feats.ndim != 2:
        raise DataError(f"{root / src.features}: expected one global feature per image, shape (N, D); found {feats.shape}")
    names = read_lines(root / src.names, "row-order file")
    if len(names) != feats.shape[0]:
        raise DataError(f"{root / src.names}: {len(names)} names but {root / src.features} has {feats.shape[0]} rows")
    captions = read_token_captions(root / src.captions, names, cpi)
    files = [root / f for f in src.split_files] if src.split_files else None
    rows = dict(zip(("train", "dev", "test"), split_rows(names, files, src.split_sizes, src.split_seed)))
    x = transform_features(feats, rows["train"], src.transform)
    vocab = Vocabulary.build((c for r in rows["train"] for c in captions[r]), threshold=src.vocab_threshold)
    return ImageTable(names, x, captions, rows, vocab, str(root / src.features))


def table_splits(table: ImageTable, cpi: int) -> list[Split]:
    """The train, dev and test ``Split`` of a table (one feature row per image)."""
    splits = []
    for split, idx in table.rows.items():
        caps = [c for r in idx for c in table.captions[r]]
        splits.append(Split(split, table.features[idx], caps, cpi, cpi, [table.vocab.encode(c) for c in caps],
                            source=f"{table.source} [{split}: {len(idx)} images]"))
    return splits


def load_global(root: Path, src: GlobalSource, cpi: int) -> tuple[Vocabulary, list[Split]]:
    """Vocabulary and the train/dev/test splits of a global-feature dataset."""
    table = load_table(root, src, cpi)
    return table.vocab, table_splits(table, cpi)
