"""The embedded synthetic dataset: small, deterministic, and hard enough that noise hurts.

Each image is a scene drawn from four attribute slots (object, colour, action, place), e.g. a
"red dog running on a beach". Its feature vector is a fixed random non-linear mixture of the slot
prototypes plus per-image nuisance noise, so the image side has to be *learnt*, not read off.
Each of its five captions names a random subset of the slots with random synonyms and templates
("a crimson hound sprinting by the sea"), so one caption never pins an image down exactly. Concepts
are shared across many images: a model learns the word ↔ feature associations from the clean
majority first, which is what lets a robust method separate the clean pairs from shuffled ones,
while a plain hard-negative triplet model also fits the shuffled pairs and loses accuracy.

The generator writes the files in the precomp layout (``train_ims.npy`` stored once per image,
``dev_ims.npy`` once per caption like Flickr30K's, ``test_ims.npy`` once per image, ``*_caps.txt``,
``vocab.json``), so every run goes through the same loader as real data. ``meta.json`` records the
sha256 of every file, and a cached folder is checked against them each time it is used
(``check_folder``): a modified cache is refused, never trained or tested on.
"""

from __future__ import annotations

from collections.abc import Callable

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .vocab import Vocabulary

GENERATOR_VERSION = "1"

# slot → list of concepts, each concept a list of synonyms
SLOTS: dict[str, list[list[str]]] = {
    "object": [
        ["dog", "hound", "puppy"], ["cat", "kitten"], ["horse", "pony"], ["man", "guy", "gentleman"],
        ["woman", "lady"], ["child", "kid"], ["bird", "sparrow"], ["cow", "calf"], ["bicycle", "bike"],
        ["car", "automobile"], ["boat", "ship"], ["bus", "coach"], ["train", "locomotive"],
        ["elephant"], ["sheep", "lamb"], ["girl", "lass"], ["boy", "lad"], ["truck", "lorry"],
        ["kite"], ["skateboarder", "skater"], ["surfer"], ["giraffe"], ["bear"], ["zebra"],
    ],
    "colour": [
        ["red", "crimson"], ["blue", "azure"], ["green", "emerald"], ["yellow", "golden"],
        ["black", "dark"], ["white", "pale"], ["brown", "tan"], ["orange"], ["purple", "violet"],
        ["grey", "gray"],
    ],
    "action": [
        ["running", "sprinting"], ["sitting", "resting"], ["jumping", "leaping"], ["standing", "waiting"],
        ["walking", "strolling"], ["playing", "frolicking"], ["sleeping", "napping"],
        ["eating", "feeding"], ["swimming", "wading"], ["climbing", "scrambling"],
    ],
    "place": [
        ["beach", "shore", "sea"], ["park", "garden"], ["street", "road"], ["field", "meadow"],
        ["forest", "woods"], ["kitchen"], ["snow", "slope"], ["city", "town"], ["lake", "pond"],
        ["mountain", "hill"], ["desert", "sand"], ["stadium", "arena"],
    ],
}
_PREP = ["on a", "in the", "by the", "near a", "at the"]
_ART = ["a", "the", "one"]


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes and difficulty of the generated dataset (all deterministic given ``seed``)."""

    n_train: int = 1000  # images; 5 captions each
    n_dev: int = 200
    n_test: int = 500
    feature_dim: int = 128
    latent_dim: int = 32
    nuisance: float = 1.2  # per-image noise added to the latent scene vector
    slots_per_caption: tuple[int, int] = (1, 3)  # a caption names between 1 and 3 of the 4 slots
    seed: int = 0
    captions_per_image: int = 5

    def folder_name(self) -> str:
        key = json.dumps(asdict(self), sort_keys=True) + GENERATOR_VERSION
        return f"synthetic-v{GENERATOR_VERSION}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


class _World:
    """The fixed concept prototypes and the image-feature mixing network of one dataset."""

    def __init__(self, spec: SyntheticSpec, rng: np.random.Generator):
        self.spec = spec
        self.protos = {
            slot: rng.normal(0.0, 1.0, (len(values), spec.latent_dim)) / np.sqrt(len(SLOTS))
            for slot, values in SLOTS.items()
        }
        h = 2 * spec.feature_dim
        self.w1 = rng.normal(0.0, 1.0 / np.sqrt(spec.latent_dim), (spec.latent_dim, h))
        self.w2 = rng.normal(0.0, 1.0 / np.sqrt(h), (h, spec.feature_dim))

    def scenes(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, len(v), n) for v in SLOTS.values()], axis=1)

    def features(self, scenes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        z = sum(self.protos[slot][scenes[:, k]] for k, slot in enumerate(SLOTS))
        z = z + rng.normal(0.0, self.spec.nuisance / np.sqrt(self.spec.latent_dim), z.shape)
        x = np.tanh(z @ self.w1) @ self.w2
        return x.astype(np.float32)

    def caption(self, scene: np.ndarray, rng: np.random.Generator) -> str:
        lo, hi = self.spec.slots_per_caption
        names = list(SLOTS)
        k = int(rng.integers(lo, hi + 1))
        shown = set(rng.choice(len(names), size=k, replace=False).tolist())
        word = {n: rng.choice(SLOTS[n][scene[i]]) for i, n in enumerate(names) if i in shown}
        subject = " ".join(w for w in (word.get("colour"), word.get("object", "thing")) if w)
        parts = [str(rng.choice(_ART)), subject]
        if "action" in word:
            parts += ["is", word["action"]]
        if "place" in word:
            parts += [str(rng.choice(_PREP)), word["place"]]
        return " ".join(parts) + " ."


def generate(spec: SyntheticSpec, out: Path) -> None:
    """Write the dataset to ``out`` (created atomically: a crash leaves no half-written folder)."""
    rng = np.random.default_rng(spec.seed)
    world = _World(spec, rng)

    def write(tmp: Path) -> None:
        all_caps: list[str] = []
        for split, n, per_caption in (("train", spec.n_train, False), ("dev", spec.n_dev, True), ("test", spec.n_test, False)):
            scenes = world.scenes(n, rng)
            feats = world.features(scenes, rng)
            caps = [world.caption(s, rng) for s in scenes for _ in range(spec.captions_per_image)]
            if per_caption:  # one row per caption, as Flickr30K's dev_ims.npy
                feats = np.repeat(feats, spec.captions_per_image, axis=0)
            np.save(tmp / f"{split}_ims.npy", feats)
            (tmp / f"{split}_caps.txt").write_text("\n".join(caps) + "\n", encoding="utf-8")
            np.save(tmp / f"{split}_scenes.npy", scenes.astype(np.int64))
            if split == "train":
                all_caps = caps
        Vocabulary.build(all_caps, threshold=1).save(tmp / "vocab.json")

    publish_generated(out, write, {"generator_version": GENERATOR_VERSION, "spec": asdict(spec)})


def publish_generated(out: Path, write: Callable[[Path], None], meta: dict) -> None:
    """Generate a dataset folder atomically: ``write(tmp)`` fills a temporary folder beside ``out``,
    the sha256 of each of its files joins ``meta`` in its ``meta.json``, and the folder is renamed
    to ``out`` (if another process finished first, its identical copy is kept)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        write(tmp)
        files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir())}
        (tmp / "meta.json").write_text(json.dumps({**meta, "files": files}, indent=1), encoding="utf-8")
        try:
            os.replace(tmp, out)
        except OSError:  # another process finished first: keep theirs (identical by construction)
            if not (out / "meta.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def recorded_hashes(out: Path, spec: SyntheticSpec) -> dict[str, str]:
    """The sha256 of each file of ``out`` as ``meta.json`` records it. A folder generated before the
    hashes were recorded gets them from a fresh generation (a fraction of a second), written into its
    ``meta.json`` once its files are found identical."""
    meta_path = out / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{meta_path}: unreadable ({exc}); delete {out} to have the synthetic dataset generated "
                        f"again") from None
    if isinstance(meta, dict) and isinstance(meta.get("files"), dict):
        return meta["files"]
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.check.") as tmp:
        fresh = Path(tmp) / out.name
        generate(spec, fresh)
        files = json.loads((fresh / "meta.json").read_text(encoding="utf-8"))["files"]
        check_folder(out, files)
        os.replace(fresh / "meta.json", meta_path)
    return files


def check_folder(out: Path, files: dict[str, str]) -> None:
    """Refuse a cached folder whose files are not those generated (sha256 per file)."""
    for name, digest in files.items():
        path = out / name
        try:
            found = file_sha256(path)
        except OSError as exc:
            raise DataError(f"{path}: cached synthetic file unreadable ({exc.strerror or exc}); delete {out} to have "
                            f"it generated again") from None
        if found != digest:
            raise DataError(f"{path}: cached synthetic file was modified (sha256 {found[:12]}…, generated as "
                            f"{digest[:12]}…); delete {out} to have it generated again")


def ensure_synthetic(cache_dir: Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """The folder of the dataset described by ``spec``, generating it on first use; a cached folder
    must hold the files generated (``check_folder``)."""
    out = Path(cache_dir) / spec.folder_name()
    if not (out / "meta.json").is_file():
        generate(spec, out)
    else:
        check_folder(out, recorded_hashes(out, spec))
    return out
