"""``ncbench data check``: does a folder hold a dataset as its card describes it?

For each split the card lists, the feature file is opened as a memory map (only its header is
read, so a 30 GB file is checked in milliseconds; a file shorter than its header says is reported
as truncated), its shape compared with the expected rows × regions × dimensions, and the caption
file's lines counted against images × captions per image. The vocabulary must be SCAN JSON with
``word2idx``. Every problem names the file and what was expected; no feature file is loaded into memory.

NoW (``ncbench.data.now``) stores its captions as token ids: its vocabulary is loaded as training
loads it (SCAN's specials at 0–3), every caption line of the card's tokeniser is parsed (each id
a decimal integer below the vocabulary's size; the first bad one is named by line) and counted,
and ``{split}_ids.txt`` is counted too (one line per image).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import now
from .cards import DatasetCard, NowCard
from .precomp import find_captions
from .vocab import Vocabulary


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


def _missing_vocab(exc: DataError) -> Finding:
    """The finding for a vocabulary ``DatasetCard.vocab_path`` did not find (its error names the file)."""
    return Finding(Path(str(exc).split(":")[0]), False, "missing (expected SCAN vocabulary JSON with word2idx)")


def _check_vocab(card: DatasetCard, root: Path, data_root: Path, words: int | None) -> Finding:
    try:
        path = card.vocab_path(root, data_root)
    except DataError as exc:
        return _missing_vocab(exc)
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
        size = len(vocab["word2idx"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        return Finding(path, False, f"not a SCAN vocabulary JSON with word2idx ({type(exc).__name__}: {exc})")
    if words is not None and size != words:
        return Finding(path, False, f"{size} words, expected {words}")
    return Finding(path, True, f"{size} words")


def _message(exc: DataError, path: Path) -> str:
    """A loader's complaint about ``path`` without the path (the finding names it): ``line N: ...``."""
    msg = str(exc).removeprefix(str(path))
    line = re.match(r":(\d+): ", msg)
    return f"line {line[1]}: {msg[line.end():]}" if line else msg.removeprefix(": ")


def _check_now_vocab(card: NowCard, root: Path, data_root: Path) -> tuple[Finding, int | None]:
    """The NoW vocabulary's finding and its size (None: unusable)."""
    try:
        path = card.vocab_path(root, data_root)
    except DataError as exc:
        return _missing_vocab(exc), None
    try:
        size = len(Vocabulary.load(path))
    except DataError as exc:
        return Finding(path, False, _message(exc, path)), None
    return Finding(path, True, f"{size} words (PC2's README gives {now.README_VOCAB_WORDS[card.tokenizer]:,} "
                               f"for {card.tokenizer})"), size


def _check_token_captions(path: Path, images: int, n_words: int | None) -> Finding:
    if not path.is_file():
        return Finding(path, False, f"missing (expected {images} captions as comma-separated token ids, one per line)")
    try:
        n = len(now.read_token_ids(path, n_words))
    except DataError as exc:
        return Finding(path, False, _message(exc, path))
    if n != images:
        return Finding(path, False, f"{n} captions, expected {images} (one per image)")
    return Finding(path, True, f"{n} captions" + (f", token ids below {n_words}" if n_words is not None else ""))


def _check_ids(path: Path, images: int) -> Finding:
    if not path.is_file():
        return Finding(path, False, f"missing (expected {images} lines: each image's index in NoW's original collection)")
    n = _count_lines(path)
    if n != images:
        return Finding(path, False, f"{n} lines, expected {images} (one per image)")
    return Finding(path, True, f"{n} lines")


def _check_now(card: NowCard, root: Path, data_root: Path) -> list[Finding]:
    vocab, n_words = _check_now_vocab(card, root, data_root)
    findings = [vocab]
    for split, images in card.layout.images.items():
        findings.append(_check_features(root / f"{split}_ims.npy", images, 1, card.layout.feature_shape))
        findings.append(_check_token_captions(root / now.caption_file(split, card.tokenizer), images, n_words))
        findings.append(_check_ids(root / now.ids_file(split), images))
    return findings


def check_dataset(card: DatasetCard, data_root: Path) -> list[Finding]:
    """Every file of ``card`` under ``data_root``: one finding each (ok or what is wrong)."""
    layout = card.layout
    if layout is None:
        raise DataError(f"dataset {card.name!r} has no file layout to check (it is generated or read by its own loader)")
    data_root = Path(data_root)
    if not data_root.is_dir():
        return [Finding(data_root, False, "folder not found")]
    root = card.locate(data_root, data_root)
    if isinstance(card, NowCard):
        return _check_now(card, root, data_root)
    findings = [_check_vocab(card, root, data_root, layout.vocab_words)]
    for split, images in layout.images.items():
        findings.append(_check_features(root / f"{split}_ims.npy", images, card.captions_per_image, layout.feature_shape))
        findings.append(_check_captions(root, split, images, card.captions_per_image))
    return findings
