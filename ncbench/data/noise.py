"""Noise injection as the papers do it, and noise-index files.

NCR-style caption-level noise (methods-and-protocol §1.3): choose ``⌊r · N_cap⌋`` captions at random
and permute their image indices among themselves. A selected caption that receives its own image
back counts as clean, so the realised ratio is a hair below ``r``. The index is drawn with its own
``numpy.random.default_rng(seed)`` (the official code uses NumPy's global RNG) and saved in the
official format: a 1-D int64 ``.npy`` mapping caption row → image row. An existing file, such as
the ones BiCro or L2RM ship, is loaded verbatim. Every run records the index's sha256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_atomic
from ..errors import ConfigError, DataError


@dataclass(frozen=True)
class NoiseIndex:
    """Caption row → image row after noise, with the ground-truth clean mask."""

    t2i: np.ndarray  # int64 (N_cap,)
    clean: np.ndarray  # bool (N_cap,): t2i == the caption's true image row
    ratio: float  # nominal ratio asked for (or given with a file)
    sha256: str
    source: str  # "generated:seed=<s>" or the file path

    @property
    def realised_ratio(self) -> float:
        return float(1.0 - self.clean.mean()) if len(self.clean) else 0.0


def check_ratio(ratio: float) -> float:
    if not (0.0 <= ratio < 1.0) or ratio != ratio:
        raise ConfigError(f"noise ratio must be in [0, 1), got {ratio}")
    return float(ratio)


def array_sha256(t2i: np.ndarray) -> str:
    """sha256 of the index as it is stored in an ``.npy`` file (int64, little-endian, C order)."""
    return hashlib.sha256(np.ascontiguousarray(t2i, dtype="<i8").tobytes()).hexdigest()


def shuffle_captions(true_rows: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    """The papers' caption shuffle: permute the images of ``⌊ratio·N⌋`` randomly chosen captions."""
    ratio = check_ratio(ratio)
    rng = np.random.default_rng(seed)
    t2i = np.array(true_rows, dtype=np.int64, copy=True)
    n_noisy = int(ratio * len(t2i))
    selected = rng.permutation(len(t2i))[:n_noisy]
    t2i[selected] = rng.permutation(t2i[selected])
    return t2i


def make_noise_index(true_rows: np.ndarray, ratio: float, seed: int) -> NoiseIndex:
    t2i = shuffle_captions(true_rows, ratio, seed)
    return NoiseIndex(t2i, t2i == true_rows, ratio, array_sha256(t2i), f"generated:seed={seed}")


def validate_index(t2i: np.ndarray, n_captions: int, n_rows: int, where: str) -> np.ndarray:
    if t2i.ndim != 1 or not np.issubdtype(t2i.dtype, np.integer):
        raise DataError(f"{where}: expected a 1-D integer array, found {t2i.dtype} of shape {t2i.shape}")
    if len(t2i) != n_captions:
        raise DataError(f"{where}: expected {n_captions} entries (one per training caption), found {len(t2i)}")
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


def load_noise_index(path: str | Path, true_rows: np.ndarray, n_rows: int, ratio: float | None = None) -> NoiseIndex:
    """Load an index file verbatim after checking its length and value range."""
    t2i = validate_index(read_index_file(path), len(true_rows), n_rows, str(path))
    clean = t2i == true_rows
    nominal = float(1.0 - clean.mean()) if ratio is None else ratio
    return NoiseIndex(t2i, clean, nominal, array_sha256(t2i), str(path))


def save_noise_index(index: NoiseIndex, path: str | Path) -> None:
    """Write the index atomically in the official format (int64 ``.npy``)."""
    write_atomic(path, lambda f: np.save(f, np.ascontiguousarray(index.t2i, dtype=np.int64)))


def obtain_noise_index(
    true_rows: np.ndarray, n_rows: int, ratio: float, seed: int, path: str | Path | None
) -> NoiseIndex:
    """The index for a run: load ``path`` if it exists, else generate it (and save it there)."""
    ratio = check_ratio(ratio)
    if path is not None and Path(path).exists():
        return load_noise_index(path, true_rows, n_rows, ratio)
    index = make_noise_index(true_rows, ratio, seed)
    if path is not None:
        save_noise_index(index, path)
        index = NoiseIndex(index.t2i, index.clean, ratio, index.sha256, str(path))
    return index
