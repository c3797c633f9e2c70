"""Random data in a real dataset's shape, for timing only (``ncbench bench --shape f30k``).

A GPU machine should be able to time training and evaluation at the papers' shapes without the
30 GB of Flickr30K / COCO region features copied to it. ``shaped_dataset`` builds, in memory and
from a seed, a dataset with the card's feature shape (36 regions × 2048 for F30K and COCO), its
vocabulary size and captions per image: features drawn i.i.d. from a rectified normal (bottom-up
region features are non-negative), captions of 8–18 random words (mean 13, about the length of a
Flickr30K caption). Nothing can be learnt from it: retrieval numbers on it mean nothing, only the
times do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..registry import DATASETS
from .cards import Dataset, DatasetCard
from .precomp import Split
from .vocab import SPECIALS, Vocabulary

CAPTION_WORDS = (8, 18)  # inclusive range of words per generated caption
DEFAULT_VOCAB = 10_000  # for a card without a fixed vocabulary size (CC152K)


def shapes() -> list[str]:
    """Dataset names whose card fixes a feature shape (what ``--shape`` accepts besides ``synthetic``)."""
    return [name for name in DATASETS.names() if getattr(DATASETS.get(name), "layout", None) is not None]


def _card(name: str) -> DatasetCard:
    card = DATASETS.get(name)
    if getattr(card, "layout", None) is None:
        raise ConfigError(f"dataset {name!r} has no fixed feature shape; random data can take the shape of "
                          f"{', '.join(shapes())}")
    return card


def _split(name: str, n_images: int, card: DatasetCard, vocab: Vocabulary, rng: np.random.Generator) -> Split:
    cpi = card.captions_per_image
    regions = rng.standard_normal((n_images, *card.layout.feature_shape), dtype=np.float32)
    np.maximum(regions, 0, out=regions)
    n_caps = n_images * cpi
    lengths = rng.integers(CAPTION_WORDS[0], CAPTION_WORDS[1] + 1, n_caps)
    first = len(SPECIALS)
    words = [rng.integers(first, len(vocab), n) for n in lengths]
    captions = [" ".join(vocab.idx2word[int(i)] for i in w) for w in words]
    tokens = [vocab.encode(c) for c in captions]
    return Split(name, regions, captions, cpi, cpi, tokens, source=f"random {card.name}-shaped data")


def shaped_dataset(name: str, n_train: int, n_test: int, n_dev: int = 10, seed: int = 0) -> Dataset:
    """``n_train`` / ``n_dev`` / ``n_test`` images of random data shaped like dataset ``name``."""
    card = _card(name)
    rng = np.random.default_rng(seed)
    vocab = Vocabulary()
    for k in range(len(vocab), card.layout.vocab_words or DEFAULT_VOCAB):
        vocab.add(f"w{k}")
    train, dev, test = (_split(s, n, card, vocab, rng) for s, n in (("train", n_train), ("dev", n_dev), ("test", n_test)))
    return Dataset(card, Path(f"<random {name}-shaped>"), vocab, train, dev, lambda: test)
