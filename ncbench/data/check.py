"""``ncbench data check``: does a folder hold a dataset as its card describes it?

For each split the card lists, the feature file is opened as a memory map (only its header is
read, so a 30 GB file is checked in milliseconds; a file shorter than its header says is reported
as truncated), its shape compared with the expected rows × regions × dimensions, and the caption
file's lines counted against images × captions per image. The vocabulary must be SCAN JSON with
``word2idx``. Every problem names the file and what was expected; nothing is loaded into memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .cards import DatasetCard
from .precomp import find_captions


@dataclass(frozen=True)
class Finding:
    path: Path
    ok: bool
    message: str


def _count_lines(path: Path) -> int:
    """Lines as ``splitlines`` counts them (a last line without a newline counts), read in chunks."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def _check_features(path: Path, images: int, cpi: int, shape: tuple[int, ...]) -> Finding:
    if not path.is_file():
        return Finding(path, False, "missing (expected the split's image features, .npy)")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        return Finding(path, False, f"truncated or not a .npy array ({exc})")
    rows = (images, images * cpi) if cpi > 1 else (images,)
    want = " or ".join(str((r, *shape)) for r in rows)
    if tuple(arr.shape[1:]) != shape or arr.shape[0] not in rows:
        return Finding(path, False, f"shape {tuple(arr.shape)}, expected {want}")
    if not np.issubdtype(arr.dtype, np.floating):
        return Finding(path, False, f"dtype {arr.dtype}, expected float features")
    per = "image" if arr.shape[0] == images else "caption"
    return Finding(path, True, f"{tuple(arr.shape)} {arr.dtype}, one row per {per}")


def _check_captions(root: Path, split: str, images: int, cpi: int) -> Finding:
    try:
        path = find_captions(root, split)
    except DataError:
        return Finding(root / f"{split}_caps.txt", False, f"missing (expected {images * cpi} captions, one per line)")
    n = _count_lines(path)
    if n != images * cpi:
        return Finding(path, False, f"{n} captions, expected {images * cpi} ({images} images × {cpi})")
    return Finding(path, True, f"{n} captions")


def _check_vocab(card: DatasetCard, root: Path, data_root: Path, words: int | None) -> Finding:
    try:
        path = card.vocab_path(root, data_root)
    except DataError as exc:
        return Finding(Path(str(exc).split(":")[0]), False, "missing (expected SCAN vocabulary JSON with word2idx)")
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
        size = len(vocab["word2idx"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        return Finding(path, False, f"not a SCAN vocabulary JSON with word2idx ({type(exc).__name__}: {exc})")
    if words is not None and size != words:
        return Finding(path, False, f"{size} words, expected {words}")
    return Finding(path, True, f"{size} words")


def check_dataset(card: DatasetCard, data_root: Path) -> list[Finding]:
    """Every file of ``card`` under ``data_root``: one finding each (ok or what is wrong)."""
    layout = card.layout
    if layout is None:
        raise DataError(f"dataset {card.name!r} has no file layout to check (it is generated or read by its own loader)")
    data_root = Path(data_root)
    if not data_root.is_dir():
        return [Finding(data_root, False, "folder not found")]
    root = card.locate(data_root, data_root)
    findings = [_check_vocab(card, root, data_root, layout.vocab_words)]
    for split, images in layout.images.items():
        findings.append(_check_features(root / f"{split}_ims.npy", images, card.captions_per_image, layout.feature_shape))
        findings.append(_check_captions(root, split, images, card.captions_per_image))
    return findings
