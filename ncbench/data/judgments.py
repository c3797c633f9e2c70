"""Human judgments of image–caption pairs, and the judged pairs ready to be scored by a model.

Flickr8k ships two sets of judgments over its 1000 official test images (Hodosh et al., 2013):

* **expert** (``ExpertAnnotations.txt``): ``<image>\\t<caption-id>\\t<s1>\\t<s2>\\t<s3>``, three
  experts' scores from 1 ("the caption does not describe the image") to 4 ("describes it without
  errors"); 3 means "describes it with minor errors";
* **crowd** (``CrowdFlowerAnnotations.txt``): ``<image>\\t<caption-id>\\t<%yes>\\t<#yes>\\t<#no>``,
  crowd workers' yes/no answers to "does the caption describe the image?".

A caption id is ``<image>#<k>``: the k-th caption of that image in ``Flickr8k.token.txt``, usually
of *another* image. For each judged pair this module keeps the human score used for rank
correlation (expert: mean of the scores; crowd: fraction of yes) and a binary verdict for the
AUC: **describes** when more judges said so than not (expert: score ≥ 3 counts as "describes";
crowd: yes), **does not describe** when fewer did; a tie has no verdict and is left out of the AUC.

``build_judged_pairs`` resolves the pairs against a global-feature dataset (``ImageTable``) and
also fixes the **context** each pair is scored in: methods estimate correspondence inside a
training batch, so every judged pair is placed in a batch with ``context_batch − 1`` reference
pairs, true pairs of the ``context_split`` drawn once with ``seed`` (one caption per image). A
reference whose image is the judged image or the judged caption's image is replaced by a spare,
so no reference is a second positive. The same context serves every method and run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .globalfeat import ImageTable, read_lines

CAPTION_ID = re.compile(r"^(?P<name>[^#\s]+)#(?P<k>\d+)$")
EXPERT_DESCRIBES = 3  # expert scores ≥ 3: "describes the image (at most minor errors)"


@dataclass(frozen=True)
class JudgmentSource:
    """Where a dataset's judgment files are (relative to ``--data-root``) and how pairs are scored."""

    expert: str | None = None
    crowd: str | None = None
    context_batch: int = 128  # the methods' training batch size
    context_split: str = "dev"
    seed: int = 0


@dataclass
class Judgment:
    image: str
    caption_id: str
    score: float  # expert: mean score (1–4); crowd: fraction of yes
    describes: float  # 1.0, 0.0, or NaN for a tie


@dataclass
class JudgmentSet:
    """One kind of judgment over the judged pairs: ``pair[i]`` indexes ``JudgedPairs``."""

    name: str
    file: str
    pair: np.ndarray  # (M,) int64
    score: np.ndarray  # (M,) float64
    describes: np.ndarray  # (M,) float64: 1, 0 or NaN
    skipped: int = 0  # judgments whose image or caption is not in the dataset


@dataclass
class JudgedPairs:
    """Unique judged pairs with features, tokens and their scoring context."""

    images: np.ndarray  # (I, D) float32 features of the distinct judged images
    tokens: list[np.ndarray]  # the C distinct judged captions, encoded
    pair_image: np.ndarray  # (N,) int64 index into images
    pair_caption: np.ndarray  # (N,) int64 index into tokens
    heldout: np.ndarray  # (N,) bool: image and caption's image both in the test split
    context_images: np.ndarray  # (P, D) reference pool
    context_tokens: list[np.ndarray]
    context: np.ndarray  # (N, context_batch − 1) int64: the pool entries in each pair's batch
    sets: dict[str, JudgmentSet] = field(default_factory=dict)
    description: str = ""

    def __len__(self) -> int:
        return int(self.pair_image.shape[0])

    @property
    def context_batch(self) -> int:
        return int(self.context.shape[1]) + 1


def _fields(path: Path, n: int) -> list[tuple[int, list[str]]]:
    out = []
    for i, line in enumerate(read_lines(path, "judgment file"), 1):
        parts = line.split("\t")
        if len(parts) != n or not CAPTION_ID.fullmatch(parts[1]):
            raise DataError(f"{path}:{i}: expected {n} tab-separated fields '<image> <image>#<k> ...', "
                            f"found {line[:80]!r}")
        out.append((i, parts))
    return out


def _number(path: Path, line: int, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}:{line}: {text!r} is not a number") from None
    if not np.isfinite(value):
        raise DataError(f"{path}:{line}: {text!r} is not a finite number")
    return value


def _verdict(yes: float, no: float) -> float:
    return 1.0 if yes > no else 0.0 if yes < no else float("nan")


def read_expert(path: Path) -> list[Judgment]:
    """Expert judgments: mean score and the majority verdict (score ≥ 3 = describes)."""
    out = []
    for line, parts in _fields(path, 5):
        scores = [_number(path, line, s) for s in parts[2:]]
        if any(s not in (1, 2, 3, 4) for s in scores):
            raise DataError(f"{path}:{line}: expert scores must be 1–4, found {parts[2:]}")
        yes = sum(s >= EXPERT_DESCRIBES for s in scores)
        out.append(Judgment(parts[0], parts[1], float(np.mean(scores)), _verdict(yes, len(scores) - yes)))
    return out


def read_crowd(path: Path) -> list[Judgment]:
    """Crowd judgments: fraction of yes and the majority verdict."""
    out = []
    for line, parts in _fields(path, 5):
        share, yes, no = (_number(path, line, s) for s in parts[2:])
        if not 0 <= share <= 1 or yes < 0 or no < 0 or yes + no == 0:
            raise DataError(f"{path}:{line}: expected a fraction in [0, 1] and vote counts, found {parts[2:]}")
        out.append(Judgment(parts[0], parts[1], share, _verdict(yes, no)))
    return out


READERS = {"expert": read_expert, "crowd": read_crowd}


def build_judged_pairs(table: ImageTable, root: Path, src: JudgmentSource) -> JudgedPairs:
    """Resolve the judgment files against a dataset and fix each pair's scoring context."""
    row_of = {n: i for i, n in enumerate(table.names)}
    split = table.split_of_rows()
    pairs: dict[tuple[int, int, int], int] = {}  # (image row, caption's image row, k) → pair index
    sets = {}
    for name in ("expert", "crowd"):
        rel = getattr(src, name)
        if rel is None:
            continue
        path = Path(root) / rel
        if not path.is_file():
            raise DataError(f"{path}: {name} judgment file not found")
        idx, scores, verdicts, skipped = [], [], [], 0
        for j in READERS[name](path):
            m = CAPTION_ID.fullmatch(j.caption_id)
            img, cap_img, k = row_of.get(j.image), row_of.get(m["name"]), int(m["k"])
            if img is None or cap_img is None or k >= len(table.captions[cap_img]):
                skipped += 1
                continue
            idx.append(pairs.setdefault((img, cap_img, k), len(pairs)))
            scores.append(j.score)
            verdicts.append(j.describes)
        if not idx:
            raise DataError(f"{path}: none of its judged pairs are among the {len(table.names)} images of the dataset")
        sets[name] = JudgmentSet(name, str(path), np.asarray(idx, dtype=np.int64), np.asarray(scores),
                                 np.asarray(verdicts), skipped)
    if not sets:
        raise DataError("a judgment source needs an expert or a crowd file")
    keys = np.asarray(list(pairs), dtype=np.int64).reshape(-1, 3)
    img_rows, cap_rows = keys[:, 0], keys[:, 1]
    vocab = table.vocab
    images, pair_image = np.unique(img_rows, return_inverse=True)
    captions, pair_caption = np.unique(keys[:, 1:], axis=0, return_inverse=True)
    tokens = [vocab.encode(table.captions[c][k]) for c, k in captions]
    heldout = (split[img_rows] == "test") & (split[cap_rows] == "test")

    # the reference pool: true pairs of the context split, two spares for the collisions
    candidates = table.rows.get(src.context_split)
    need = src.context_batch + 1
    if candidates is None or len(candidates) < need:
        raise DataError(f"judgment context needs {need} images in the {src.context_split!r} split, "
                        f"found {0 if candidates is None else len(candidates)}")
    rng = np.random.default_rng(src.seed)
    pool = np.sort(rng.choice(candidates, need, replace=False))
    pick = rng.integers(0, [len(table.captions[r]) for r in pool])
    collide = (pool[None, :] == img_rows[:, None]) | (pool[None, :] == cap_rows[:, None])
    context = np.argsort(collide, axis=1, kind="stable")[:, : src.context_batch - 1]
    return JudgedPairs(
        images=table.features[images], tokens=tokens, pair_image=pair_image.reshape(-1).astype(np.int64),
        pair_caption=pair_caption.reshape(-1).astype(np.int64), heldout=heldout,
        context_images=table.features[pool], context_tokens=[vocab.encode(table.captions[r][k]) for r, k in zip(pool, pick)],
        context=context.astype(np.int64), sets=sets,
        description=(f"{len(keys)} judged pairs of {len(images)} images and {len(captions)} captions ({', '.join(f'{s.name}: {len(s.pair)}' for s in sets.values())}), "
                     f"each scored in a batch of {src.context_batch} with true {src.context_split} pairs "
                     f"(seed {src.seed})"),
    )
