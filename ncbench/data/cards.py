"""Dataset cards: what a dataset is made of and how it is evaluated.

A card names the splits, captions per image, where the vocabulary lives, whether injected noise
is allowed (CC152K and NoW carry real noise only) and the test protocol: Flickr30K, CC152K and NoW
are evaluated once on ``test``; MS-COCO on ``testall`` as the mean over five 1K folds *and* on all 5K.
The human-readable cards (sizes, how to obtain the features) are in the repository's ``datasets/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import DataError
from . import now
from .globalfeat import GlobalSource, load_table, table_splits
from .judgments import JudgedPairs, JudgmentSource, build_judged_pairs
from .precomp import Split, load_split
from .scenes import ScenesSpec, ensure_scenes, with_binding
from .synthetic import SyntheticSpec, ensure_synthetic
from .vocab import Vocabulary


@dataclass(frozen=True)
class TestProtocol:
    split: str = "test"
    folds: int = 1  # >1: also report the mean over this many consecutive equal folds (COCO 1K)
    full: bool = True  # report the whole split as one ranking (COCO 5K)


@dataclass(frozen=True)
class PrecompLayout:
    """The files a precomp dataset must have, for ``ncbench data check``: images per split, the
    shape of one image's features, the vocabulary size (None: not fixed)."""

    splits: tuple[tuple[str, int], ...]
    feature_shape: tuple[int, ...] = (36, 2048)
    vocab_words: int | None = None

    @property
    def images(self) -> dict[str, int]:
        return dict(self.splits)


@dataclass
class Dataset:
    """The splits of one dataset, loaded (features memory-mapped). The test split and the judged
    pairs are read on first use: tuning (``ncbench tune``) never touches them, so it runs where the
    test files are absent or unreadable."""

    card: "DatasetCard"
    root: Path
    vocab: Vocabulary
    train: Split
    dev: Split
    load_test: Callable[[], Split] = field(repr=False, default=None)  # type: ignore[assignment]
    load_judged: Callable[[], JudgedPairs | None] = field(repr=False, default=lambda: None)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def test(self) -> Split:
        if "test" not in self._cache:
            self._cache["test"] = self.load_test()
        return self._cache["test"]

    @property
    def judged(self) -> JudgedPairs | None:
        """Human-judged pairs (``ncbench detect``), if the card has them."""
        if "judged" not in self._cache:
            self._cache["judged"] = self.load_judged()
        return self._cache["judged"]


@dataclass(frozen=True)
class DatasetCard:
    name: str
    description: str
    captions_per_image: int = 5
    train_split: str = "train"
    dev_split: str = "dev"
    test: TestProtocol = TestProtocol()
    allows_injected_noise: bool = True
    folder: str | None = None  # sub-folder of --data-root holding the split files
    vocab_file: str | None = None  # relative to --data-root; None: vocab.json in the folder
    schedule: str | None = None  # take the methods' dataset_defaults of this dataset instead (synthetic-small)
    layout: PrecompLayout | None = None  # expected files (``ncbench data check``)
    default_backbone: str = "vse_light"  # what `ncbench run` trains when --backbones is not given
    word_list: str = "english"  # the word classes of ``partial`` noise (``ncbench.data.wordlists``)

    @property
    def has_judgments(self) -> bool:
        """Whether the dataset comes with human judgments of pairs (``ncbench detect``)."""
        return False

    def locate(self, data_root: Path | None, cache_dir: Path) -> Path:
        if data_root is None:
            raise DataError(f"dataset {self.name!r} needs --data-root (the folder holding {self.folder or 'its files'})")
        root = Path(data_root)
        if self.folder and (root / self.folder).is_dir():
            return root / self.folder
        return root

    def vocab_path(self, root: Path, data_root: Path | None) -> Path:
        candidates = [root / "vocab.json"]
        if self.vocab_file:
            for base in filter(None, (data_root, root.parent)):
                candidates.insert(0, Path(base) / self.vocab_file)
        for c in candidates:
            if c.is_file():
                return c
        raise DataError(f"{candidates[0]}: vocabulary file not found (SCAN JSON with word2idx)")

    def load(self, data_root: Path | None, cache_dir: Path) -> Dataset:
        root = self.locate(data_root, cache_dir)
        vocab = Vocabulary.load(self.vocab_path(root, data_root))
        cpi = self.captions_per_image
        train, dev = (load_split(root, s, vocab, cpi) for s in (self.train_split, self.dev_split))
        return Dataset(self, root, vocab, train, dev, lambda: load_split(root, self.test.split, vocab, cpi))


@dataclass(frozen=True)
class SyntheticCard(DatasetCard):
    spec: SyntheticSpec = SyntheticSpec()
    word_list: str = "synthetic"  # its captions name the generator's slots

    def locate(self, data_root: Path | None, cache_dir: Path) -> Path:
        if data_root is not None:  # an explicitly generated copy
            return Path(data_root)
        return ensure_synthetic(Path(cache_dir) / "data", self.spec)


@dataclass(frozen=True)
class ScenesCard(SyntheticCard):
    """The embedded region-feature dataset ``synthetic-scenes`` (``ncbench.data.scenes``): generated
    and cached like ``synthetic``; its test split carries the ``binding`` sub-benchmark."""

    spec: ScenesSpec = ScenesSpec()  # type: ignore[assignment]
    word_list: str = "english"  # its categories, colours and places are words of the english list

    def locate(self, data_root: Path | None, cache_dir: Path) -> Path:
        if data_root is not None:  # an explicitly generated copy
            return Path(data_root)
        return ensure_scenes(Path(cache_dir) / "data", self.spec)

    def load(self, data_root: Path | None, cache_dir: Path) -> Dataset:
        ds = super().load(data_root, cache_dir)
        load_test = ds.load_test
        ds.load_test = lambda: with_binding(ds.root, load_test())
        return ds


def scenes_card(name: str, description: str, spec: ScenesSpec) -> ScenesCard:
    """A ``synthetic-scenes`` card: its layout (for ``ncbench data check``) follows from ``spec``."""
    layout = PrecompLayout((("train", spec.n_train), ("dev", spec.n_dev), ("test", spec.n_test)),
                           feature_shape=(spec.regions, spec.feature_dim))
    return ScenesCard(name, description, spec=spec, layout=layout, schedule="synthetic")


@dataclass(frozen=True)
class GlobalFeatureCard(DatasetCard):
    """A dataset of precomputed global image embeddings (``ncbench.data.globalfeat``)."""

    source: GlobalSource = GlobalSource("", "", "")
    judgments: JudgmentSource | None = None  # human judgments of pairs among its images

    @property
    def has_judgments(self) -> bool:
        return self.judgments is not None

    def locate(self, data_root: Path | None, cache_dir: Path) -> Path:
        if data_root is None:
            raise DataError(f"dataset {self.name!r} needs --data-root: the folder holding {self.source.features} "
                            "(for the shared test data: --data-root ../shared/data)")
        return Path(data_root)

    def load(self, data_root: Path | None, cache_dir: Path) -> Dataset:
        root = self.locate(data_root, cache_dir)
        table = load_table(root, self.source, self.captions_per_image)
        train, dev, test = table_splits(table, self.captions_per_image)
        judgments = self.judgments
        return Dataset(self, root, table.vocab, train, dev, lambda: test,
                       lambda: build_judged_pairs(table, root, judgments) if judgments else None)


@dataclass(frozen=True)
class NowCard(DatasetCard):
    """NoW (Noise of Web, PC2's dataset; ``ncbench.data.now``): precomp-like, its captions stored as
    the token ids of one of three tokenisers, in the release's folder or under PC2's name for it."""

    tokenizer: str = "bert"
    folders: tuple[str, ...] = now.FOLDERS

    def locate(self, data_root: Path | None, cache_dir: Path) -> Path:
        if data_root is None:
            raise DataError(f"dataset {self.name!r} needs --data-root (the folder holding {' or '.join(self.folders)})")
        root = Path(data_root)
        return next((root / f for f in self.folders if (root / f).is_dir()), root)

    def load(self, data_root: Path | None, cache_dir: Path) -> Dataset:
        root = self.locate(data_root, cache_dir)
        vocab = Vocabulary.load(self.vocab_path(root, data_root))

        def split(name: str) -> Split:
            return now.load_now_split(root, name, self.tokenizer, vocab)

        return Dataset(self, root, vocab, split(self.train_split), split(self.dev_split), lambda: split(self.test.split))


def now_card(name: str, tokenizer: str, note: str) -> NowCard:
    """The NoW card reading the captions of ``tokenizer`` (``bert``, ``bpe`` or ``jieba``)."""
    return NowCard(
        name,
        f"NoW (Noise of Web, PC2): 98K/1K/1K web-page screenshots (36 regions x 768) with their meta descriptions, "
        f"real noise (~70% estimated), 1 caption per image, {tokenizer} token ids{note}; needs --data-root",
        captions_per_image=1,
        allows_injected_noise=False,
        folder=now.FOLDERS[0],
        vocab_file=now.vocab_file(tokenizer),
        schedule="now",  # the methods' dataset_defaults["now"], whatever the tokeniser
        layout=PrecompLayout(now.SPLITS, feature_shape=(now.REGIONS, now.FEATURE_DIM)),
        tokenizer=tokenizer,
    )


# the built-in cards; ``registry.DATASETS`` registers each under its name (entry points add more)
BUILTIN_CARDS: tuple[DatasetCard, ...] = (
    SyntheticCard(
        "synthetic",
        "embedded deterministic dataset (1000 train / 200 dev / 500 test images, 5 captions each); CPU-sized",
    ),
    SyntheticCard(
        "synthetic-small",
        "a smaller embedded dataset (300 train / 100 dev / 100 test images) for smoke tests: a run in seconds",
        spec=SyntheticSpec(n_train=300, n_dev=100, n_test=100),
        schedule="synthetic",
    ),
    scenes_card(
        "synthetic-scenes",
        "embedded region features (1000 train / 200 dev / 500 test images, 12 regions x 64, 5 captions each): "
        "objects with colours, sizes and positions; half the images come with a distractor of the same words",
        ScenesSpec(),
    ),
    scenes_card(
        "synthetic-scenes-small",
        "a smaller synthetic-scenes (300 train / 100 dev / 100 test images) for tests: a run in seconds",
        ScenesSpec(n_train=300, n_dev=100, n_test=100),
    ),
    scenes_card(
        "synthetic-scenes-ci",
        "the CI-sized synthetic-scenes (200 train / 40 dev / 60 test images): the SGR accuracy golden trains on it",
        ScenesSpec(n_train=200, n_dev=40, n_test=60),
    ),
    DatasetCard(
        "f30k",
        "Flickr30K precomp features (29K train / 1,014 dev / 1K test images); needs --data-root",
        folder="f30k_precomp",
        vocab_file="vocab/f30k_precomp_vocab.json",
        layout=PrecompLayout((("train", 29000), ("dev", 1014), ("test", 1000)), vocab_words=8480),
    ),
    DatasetCard(
        "coco",
        "MS-COCO precomp features (113,287 train; test = testall as 5-fold 1K and 5K); needs --data-root",
        folder="coco_precomp",
        vocab_file="vocab/coco_precomp_vocab.json",
        test=TestProtocol(split="testall", folds=5, full=True),
        layout=PrecompLayout((("train", 113287), ("dev", 1000), ("testall", 5000)), vocab_words=11352),
    ),
    DatasetCard(
        "cc152k",
        "CC152K precomp features (150K web pairs with real noise; 1 caption per image); needs --data-root",
        captions_per_image=1,
        allows_injected_noise=False,
        folder="cc152k_precomp",
        vocab_file="vocab/cc152k_precomp_vocab.json",
        layout=PrecompLayout((("train", 150000), ("dev", 1000), ("test", 1000))),
    ),
    GlobalFeatureCard(
        "flickr8k-clip",
        "Flickr8k, 499 images as CLIP ViT-B/32 embeddings (seeded split 299/100/100, 5 captions each); needs --data-root",
        source=GlobalSource(
            features="flickr8k/feats_clip_vitb32_499/clip_vitb32_image.npy",
            names="flickr8k/feats_clip_vitb32_499/image_names.txt",
            captions="flickr8k/text/Flickr8k.token.txt",
            split_sizes=(299, 100, 100), transform="l2",
        ),
        default_backbone="vse_bow",
    ),
    GlobalFeatureCard(
        "flickr8k-xception",
        "Flickr8k's 1000 official test images as Xception ImageNet posteriors (log, standardised; seeded split "
        "600/200/200); needs --data-root",
        source=GlobalSource(
            features="flickr8k/feats_xception_softmax_test1000/xception_softmax.npy",
            names="flickr8k/feats_xception_softmax_test1000/image_names.txt",
            captions="flickr8k/text/Flickr8k.token.txt",
            split_sizes=(600, 200, 200), transform="log_standardise",
        ),
        judgments=JudgmentSource(expert="flickr8k/text/ExpertAnnotations.txt",
                                 crowd="flickr8k/text/CrowdFlowerAnnotations.txt"),
        default_backbone="vse_bow",
    ),
    now_card("now", "bert", " (PC2's NoW command)"),
    now_card("now-bpe", "bpe", ""),
    now_card("now-jieba", "jieba", ""),
)
