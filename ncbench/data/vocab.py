"""Tokenisation and the SCAN-style vocabulary.

The papers tokenise with ``nltk.word_tokenize`` on the lower-cased caption, which needs NLTK's
``punkt`` data, a download at run time. ncbench uses a regular expression that reproduces NLTK's
Treebank word tokenizer on ordinary captions (words, hyphenated words, numbers, contractions split
as ``do n't`` / ``dog 's``, punctuation as separate tokens); the test suite checks it against NLTK
on the real Flickr30K/COCO caption files. Exotic text (URLs, quotes in odd places, ellipses) may
tokenize differently; that only matters for words near the vocabulary threshold.

Vocabulary files follow SCAN's JSON layout ``{"word2idx": ..., "idx2word": ..., "idx": N}`` with
``<pad>``=0, ``<start>``=1, ``<end>``=2, ``<unk>``=3; the indices of a file's N words must be the
integers 0 … N-1 (they are rows of the embedding table), each once.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import DataError

SPECIALS = ("<pad>", "<start>", "<end>", "<unk>")
PAD, START, END, UNK = range(4)

_TOKEN = re.compile(
    r"""
      n't(?!\w)                          # don't -> do n't (also a pre-split "ca n't")
    | '(?:s|m|d|ll|re|ve)(?!\w)           # dog's -> dog 's
    | ``|''                               # opening / closing double quotes, as NLTK writes them
    | \d+(?:[,:]\d+)+                     # 1,000 and 12:45
    | (?<!\w)can(?=not(?!\w))              # cannot -> can not
    | \w+(?:\.\w+)+\.?                    # 3.5, p.i.n.k., e.s.e.
    | \w+?(?=n't(?!\w))                   # the "do" of "don't"
    | \w+(?:[-/]\w+|'(?!(?:s|m|d|ll|re|ve)(?!\w))\w+)*   # words, well-known, o'clock, red/yellow
    | \.\.\.                              # ellipsis
    | --                                  # dash
    | [^\w\s]                             # any other punctuation mark, alone
    """,
    re.VERBOSE,
)
_OPEN_QUOTE = re.compile(r'(^|[\s(\[{<])"')


def tokenize(caption: str) -> list[str]:
    """Lower-case and split a caption into tokens the way ``nltk.word_tokenize`` does."""
    text = _OPEN_QUOTE.sub(r"\1 `` ", caption.lower()).replace('"', " '' ")
    return _TOKEN.findall(text)


def check_indices(word2idx: dict) -> dict[str, int]:
    """``word2idx`` if its indices are the integers 0 … N-1, each once; else a DataError naming the
    first word whose index is not."""
    seen: dict[int, str] = {}
    for word, i in word2idx.items():
        if isinstance(i, bool) or not isinstance(i, int):
            raise DataError(f"word {word!r} has index {i!r}; indices must be integers")
        if not 0 <= i < len(word2idx):
            raise DataError(f"word {word!r} has index {i}; the {len(word2idx)} words need indices in [0, {len(word2idx)})")
        if i in seen:
            raise DataError(f"words {seen[i]!r} and {word!r} share index {i}")
        seen[i] = word
    return dict(word2idx)


@dataclass
class Vocabulary:
    """Word ↔ index table. Index 0 is padding, 1/2 wrap each caption, 3 is the unknown word."""

    word2idx: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.word2idx:
            self.word2idx = {w: i for i, w in enumerate(SPECIALS)}
        for i, w in enumerate(SPECIALS):
            if self.word2idx.get(w) != i:
                raise DataError(f"vocabulary must map {w!r} to {i} (SCAN layout)")
        self.idx2word = {i: w for w, i in self.word2idx.items()}

    def __len__(self) -> int:
        return len(self.word2idx)

    def add(self, word: str) -> int:
        if word not in self.word2idx:
            self.word2idx[word] = len(self.word2idx)
            self.idx2word[self.word2idx[word]] = word
        return self.word2idx[word]

    def encode(self, caption: str) -> np.ndarray:
        """``<start>`` + token ids (unknown → ``<unk>``) + ``<end>``, as int64."""
        ids = [self.word2idx.get(t, UNK) for t in tokenize(caption)]
        return np.asarray([START, *ids, END], dtype=np.int64)

    @classmethod
    def build(cls, captions: Iterable[str], threshold: int = 4) -> "Vocabulary":
        """Words occurring at least ``threshold`` times, in order of first appearance."""
        counts: Counter[str] = Counter()
        order: dict[str, None] = {}
        for cap in captions:
            toks = tokenize(cap)
            counts.update(toks)
            order.update(dict.fromkeys(toks))
        vocab = cls()
        for w in order:
            if counts[w] >= threshold:
                vocab.add(w)
        return vocab

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: vocabulary file not found") from None
        except OSError as exc:  # permission denied, a folder, an I/O error
            raise DataError(f"{path}: cannot read the vocabulary file ({exc.strerror or exc})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not a JSON vocabulary ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("word2idx"), dict):
            raise DataError(f"{path}: expected a JSON object with a 'word2idx' mapping (SCAN layout)")
        try:
            return cls(check_indices(data["word2idx"]))
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None

    def save(self, path: str | Path) -> None:
        data = {
            "word2idx": self.word2idx,
            "idx2word": {str(i): w for i, w in self.idx2word.items()},
            "idx": len(self),
        }
        Path(path).write_text(json.dumps(data), encoding="utf-8")
