"""Loader for the SCAN "precomp" layout used by NCR, BiCro and CRCL.

A split ``{split}`` of a dataset folder consists of ``{split}_ims.npy`` (float features of shape
``(N_rows, D)`` or ``(N_rows, R, D)``, e.g. 36 regions × 2048) and ``{split}_caps.txt`` (one caption
per line, ``captions_per_image`` consecutive lines per image) or ``{split}_caps.tsv`` (CC152K:
``id<TAB>caption``). Image rows are stored either once per image (``im_div = captions_per_image``,
F30K/COCO train) or once per caption (``im_div = 1``, F30K dev); caption row ``c`` belongs to image
row ``c // im_div``. Features are memory-mapped, so COCO-sized files need not fit in RAM; they are
checked for NaN and infinity at load, a block of rows at a time (``first_nonfinite_row``), so a bad
input file is named rather than blamed on the model when the loss turns NaN.

Captions are bounded: a line longer than ``MAX_CAPTION_CHARS`` characters is refused with its file
and line number (a caption is padded into every batch it is in, so one runaway line would make each
such batch huge). Empty caption lines are kept (the count must match the images) but named in a
warning on stderr.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .vocab import Vocabulary

# The longest captions of the datasets ncbench reads have 412 characters (CC152K test; F30K 380,
# COCO 248, Flickr8k 227), at most 103 tokens. 2,000 characters (hence at most 2,000 tokens) leaves
# room for any real caption and refuses a runaway line before it is tokenised.
MAX_CAPTION_CHARS = 2000
FINITE_CHECK_BYTES = 1 << 26  # rows of features checked for NaN/inf per block (64 MiB)


@dataclass
class Split:
    """One split of a precomp dataset, as stored on disk (no noise applied)."""

    name: str
    images: np.ndarray  # memory-mapped (N_rows, D) or (N_rows, R, D)
    captions: list[str]
    captions_per_image: int
    im_div: int
    tokens: list[np.ndarray] = field(default_factory=list, repr=False)
    source: str = ""

    @property
    def n_captions(self) -> int:
        return len(self.captions)

    @property
    def n_images(self) -> int:
        """Distinct images (not rows)."""
        return self.n_captions // self.captions_per_image

    @property
    def n_rows(self) -> int:
        return int(self.images.shape[0])

    def caption_to_row(self) -> np.ndarray:
        """The clean caption → image-row index (int64), i.e. ``c // im_div``."""
        return np.arange(self.n_captions, dtype=np.int64) // self.im_div

    def image_rows(self) -> np.ndarray:
        """One feature row per distinct image, in image order."""
        return np.arange(self.n_images, dtype=np.int64) * (self.captions_per_image // self.im_div)


def load_features(path: Path) -> np.ndarray:
    """Memory-map a feature ``.npy``; a missing, unreadable, truncated, misshapen or non-finite file is
    a DataError."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: feature file not found (expected a float .npy of shape (N, D) or (N, R, D))") from None
    except OSError as exc:
        if exc.errno is None:  # numpy's own complaint about the content
            raise DataError(f"{path}: truncated or not a .npy array ({exc})") from None
        raise DataError(f"{path}: cannot read the feature file ({exc.strerror})") from None
    except (ValueError, EOFError) as exc:
        raise DataError(f"{path}: truncated or not a .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray) or arr.ndim not in (2, 3):
        shape = getattr(arr, "shape", None)
        raise DataError(f"{path}: expected an array of rank 2 (N, D) or 3 (N, R, D), found shape {shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{path}: expected float features, found dtype {arr.dtype}")
    if arr.shape[0] == 0:
        raise DataError(f"{path}: has no rows")
    check_finite(arr, path)
    return arr


def first_nonfinite_row(arr: np.ndarray, block_bytes: int = FINITE_CHECK_BYTES) -> int | None:
    """The first row of ``arr`` holding a NaN or an infinity (None: none does), read a block of rows
    at a time, so a memory-mapped file is never loaded whole."""
    step = max(1, block_bytes // max(arr[0].nbytes, 1))
    for start in range(0, arr.shape[0], step):
        ok = np.isfinite(np.asarray(arr[start:start + step])).reshape(min(step, arr.shape[0] - start), -1).all(axis=1)
        if not ok.all():
            return start + int(np.argmin(ok))
    return None


def check_finite(arr: np.ndarray, path: Path) -> None:
    """Refuse features holding NaN or infinity, naming the file and the first bad row."""
    try:
        row = first_nonfinite_row(arr)
    except OSError as exc:  # a memory map that cannot be read (a file truncated after mapping, I/O error)
        raise DataError(f"{path}: cannot read the features ({exc.strerror or exc})") from None
    if row is not None:
        raise DataError(f"{path}: features hold NaN or infinity (first in row {row}); the file is damaged")


def read_text(path: Path, what: str) -> str:
    """A UTF-8 text file; missing, unreadable or undecodable is a DataError naming the file and ``what`` it is."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except OSError as exc:  # permission denied, a folder, an I/O error
        raise DataError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from None


def check_caption(path: Path, line_no: int, caption: str) -> str:
    """``caption`` if it is at most ``MAX_CAPTION_CHARS`` long; else a DataError naming its line."""
    if len(caption) > MAX_CAPTION_CHARS:
        raise DataError(f"{path}:{line_no}: a caption of {len(caption)} characters; captions may have at most "
                        f"{MAX_CAPTION_CHARS} (the longest real ones have a few hundred)")
    return caption


def warn_empty(path: Path, captions: list[str]) -> None:
    """Say on stderr how many captions of ``path`` are empty (they train as a bare <start> <end>)."""
    empty = sum(1 for c in captions if not c)
    if empty:
        print(f"warning: {path}: {empty} of {len(captions)} captions are empty", file=sys.stderr)


def read_captions(path: Path) -> list[str]:
    """Captions of a ``.txt`` (one per line) or ``.tsv`` (``id<TAB>caption[<TAB>…]``) file."""
    lines = read_text(path, "caption file").splitlines()
    caps = []
    for i, line in enumerate(lines, 1):
        if path.suffix == ".tsv":
            parts = line.split("\t")
            if len(parts) < 2:
                raise DataError(f"{path}:{i}: expected 'id<TAB>caption', found {line[:60]!r}")
            line = parts[1]
        caps.append(check_caption(path, i, line.strip()))
    warn_empty(path, caps)
    return caps


def find_captions(root: Path, split: str) -> Path:
    for ext in (".txt", ".tsv"):
        p = root / f"{split}_caps{ext}"
        if p.is_file():
            return p
    raise DataError(f"{root / (split + '_caps.txt')}: caption file not found (nor {split}_caps.tsv)")


def infer_im_div(n_rows: int, n_caps: int, cpi: int, ims: Path, caps: Path) -> int:
    """Rows stored once per image (``cpi``) or once per caption (1); anything else is an error."""
    if n_caps == n_rows * cpi:
        return cpi
    if n_caps == n_rows and n_caps % cpi == 0:
        return 1
    extra = f"; {n_caps} is not a multiple of {cpi} captions per image" if n_caps % cpi else ""
    raise DataError(
        f"{caps}: expected {n_rows * cpi} captions ({n_rows} image rows × {cpi} per image) or {n_rows} "
        f"(one image row per caption) to match {ims.name}, found {n_caps}{extra}"
    )


def load_split(root: str | Path, split: str, vocab: Vocabulary, captions_per_image: int = 5) -> Split:
    """Load ``{split}_ims.npy`` and its captions from ``root``, check they agree, and tokenise."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    ims_path = root / f"{split}_ims.npy"
    images = load_features(ims_path)
    caps_path = find_captions(root, split)
    captions = read_captions(caps_path)
    im_div = infer_im_div(images.shape[0], len(captions), captions_per_image, ims_path, caps_path)
    tokens = [vocab.encode(c) for c in captions]
    return Split(split, images, captions, captions_per_image, im_div, tokens, source=str(root))
