"""Loader for NoW (Noise of Web), the real-noise dataset of PC2 (ACM MM'24, ``alipay/PC2-NoiseofWeb``).

NoW pairs 100K screenshots of web pages (mobile, 720 × 1280) with the pages' HTML meta descriptions
(multilingual): 98,000 train / 1,000 dev / 1,000 test pairs, **one caption per image**, with the
noise the web gave them (PC2 estimates about 70% mismatched; no pair is labelled). The raw data are
withheld; the release (``NoW.zip`` on Hugging Face, ``NJUyued/NoW``) holds, per split ``{split}``:

- ``{split}_ims.npy``: features of the top 36 regions found by the APT detector (trained on mobile
  user interfaces), 768 dimensions each: shape ``(N, 36, 768)``, one row per image;
- ``{split}_caps_{tokenizer}.txt``: the caption of image ``i`` on line ``i``, *already tokenised*,
  as comma-separated token ids (a trailing comma may end the line; empty pieces are skipped) of
  one of three tokenisers: ``bpe`` (a Hugging Face ``tokenizers`` BPE), ``bert``
  (``bert-base-multilingual-cased``'s BertTokenizer) or ``jieba``;
- ``{split}_ids.txt``: one line per image, its index in the authors' original 500K collection
  (not needed to train; ``ncbench data check`` counts its lines);

and ``vocab/now100k_precomp_vocab_{tokenizer}.json``, a SCAN vocabulary JSON whose word indices
the caption ids are. PC2's README gives vocabulary sizes of 10,000 (bpe), 32,702 (bert) and
56,271 (jieba) (``README_VOCAB_WORDS``). The split files sit in ``h5100k_precomp/`` in the
release; PC2's code reads them from ``now100k_precomp/`` (its ``--data_name``): both are found.

Reading follows PC2's ``data.get_dataset``: each caption becomes ``<start>`` + its ids + ``<end>``
(no word is looked up). The ids are checked here: each must be a decimal integer below the
vocabulary's size (a larger one would index past the embedding table), every offence named by
file and line. ncbench's vocabularies keep SCAN's four specials at 0–3 (``ncbench.data.vocab``);
a NoW vocabulary that does not is refused with the word and index found. ``Split.captions`` holds
the ids written back as the vocabulary's words, joined by spaces (for reports; training uses the
ids as given).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import DataError
from .precomp import Split, check_caption, infer_im_div, load_features, read_text, warn_empty
from .vocab import END, START, Vocabulary

FOLDERS = ("h5100k_precomp", "now100k_precomp")  # the release's folder name, then PC2's --data_name
README_VOCAB_WORDS = {"bert": 32_702, "bpe": 10_000, "jieba": 56_271}  # vocabulary sizes PC2's README gives
SPLITS = (("train", 98_000), ("dev", 1_000), ("test", 1_000))
REGIONS, FEATURE_DIM = 36, 768

_ID = re.compile(r"\d+", re.ASCII)
_PLAIN_LINE = re.compile(r"[0-9,]*")
_INT64_END = 2**63


def caption_file(split: str, tokenizer: str) -> str:
    return f"{split}_caps_{tokenizer}.txt"


def ids_file(split: str) -> str:
    return f"{split}_ids.txt"


def vocab_file(tokenizer: str) -> str:
    """The vocabulary's path relative to ``--data-root``."""
    return f"vocab/now100k_precomp_vocab_{tokenizer}.json"


def parse_ids(line: str, n_words: int | None, where: str) -> np.ndarray:
    """The token ids of one caption line (``12,7,403,``), as int64; ``where`` (``file:line``) names
    the line in the DataError raised for a piece that is not a decimal integer or, with ``n_words``,
    an id outside ``[0, n_words)``. Lines of digits and commas alone are converted in one step."""
    if _PLAIN_LINE.fullmatch(line):
        try:
            ids = np.array(line.replace(",", " ").split(), dtype=np.int64)
        except OverflowError:  # an id past int64: named below
            ids = None
        if ids is not None and (n_words is None or not ids.size or ids.max() < n_words):
            return ids
    return _parse_pieces(line, n_words, where)


def _parse_pieces(line: str, n_words: int | None, where: str) -> np.ndarray:
    """``parse_ids`` one piece at a time, naming the first bad one."""
    bound = _INT64_END if n_words is None else n_words
    ids = []
    for piece in line.split(","):
        piece = piece.strip()
        if not piece:  # PC2 skips empty pieces (a trailing comma)
            continue
        if not _ID.fullmatch(piece):
            raise DataError(f"{where}: token id {piece[:20]!r} is not a non-negative integer "
                            "(expected comma-separated token ids)")
        value = int(piece)
        if value >= bound:
            raise DataError(f"{where}: token id {value} is outside the vocabulary (ids must be below {bound})")
        ids.append(value)
    return np.asarray(ids, dtype=np.int64)


def read_token_ids(path: Path, n_words: int | None) -> list[np.ndarray]:
    """The token ids of every caption line of ``path`` (a missing or unreadable file, a runaway line or
    a bad id is a DataError naming the file and line)."""
    lines = read_text(path, "caption file (comma-separated token ids)").splitlines()
    return [parse_ids(check_caption(path, i, line.strip()), n_words, f"{path}:{i}") for i, line in enumerate(lines, 1)]


def words_of(ids: np.ndarray, vocab: Vocabulary) -> str:
    """The caption's ids written back as the vocabulary's words (for display)."""
    return " ".join(vocab.idx2word[int(i)] for i in ids)


def load_now_split(root: Path, split: str, tokenizer: str, vocab: Vocabulary) -> Split:
    """One NoW split: ``{split}_ims.npy`` and ``{split}_caps_{tokenizer}.txt`` (one caption per image)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    ims_path, caps_path = root / f"{split}_ims.npy", root / caption_file(split, tokenizer)
    images = load_features(ims_path)
    ids = read_token_ids(caps_path, len(vocab))
    captions = [words_of(i, vocab) for i in ids]
    warn_empty(caps_path, captions)
    im_div = infer_im_div(images.shape[0], len(ids), 1, ims_path, caps_path)
    tokens = [np.concatenate(([START], i, [END])).astype(np.int64) for i in ids]
    return Split(split, images, captions, 1, im_div, tokens, source=str(root))
