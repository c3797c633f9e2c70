"""``synthetic-scenes``: an embedded dataset of region features where words alone are not enough.

Each image is a *scene*: a place and two or three objects, each with a category ("dog"), a colour
("red"), a size ("small") and a cell of a 3 × 3 grid. Its features are ``R`` regions of ``D``
dimensions (the precomp layout of SGR/SAF, ``(N, R, D)``): every object is seen by a few jittered
boxes, the other regions are background ("stuff" of the place). A region's feature is a fixed
random non-linear mixture (``tanh(z W1) W2``) of the sum of its prototypes (category + colour +
size + column + row for an object box, blended with the place; place + a random stuff prototype
for background) plus per-region and per-image nuisance; region order is shuffled. Pooling the
regions into one vector mixes the objects' attributes; a region-level model can still tell which
colour belongs to which object.

Captions name two objects with their attributes and a relation taken from their grid cells, and
sometimes the third object and the place: "a small red dog to the left of a blue car on the
grass". The same words bound differently ("a small blue dog to the left of a red car") describe a
different image, so a bag of words cannot tell the two apart.

Hard distractors: a share ``pairs`` of the images of every split come as *binding pairs*: the
second image is the first with the colours of its first two objects swapped (same objects,
positions, sizes and place; fresh nuisance). A caption of a paired image that names the colour of
one of those two objects is false of the partner, yet one of the partner's captions has the same
bag of words ("a red dog left of a car" and "a dog left of a red car"; "a red dog left of a blue
car" and "a blue dog left of a red car"): these are the split's *binding queries*
(``{split}_binding.npy``: the partner image of each such caption, -1 elsewhere); a caption naming
neither colour is as true of the partner and is not one. Caption ``k`` of both images of a pair is
written with the same random choices, so where it names both colours the partner's caption ``k``
is its twin. The images of a pair are the binding images (``{split}_partner.npy``: -1 for an image
without a partner). The
evaluation reports the recall on these queries alone (``ncbench.evaluate``'s ``binding`` subset).

Files, cached and checked as ``ncbench.data.synthetic`` does: ``train_ims.npy`` once per image,
``dev_ims.npy`` once per caption (as Flickr30K's), ``test_ims.npy`` once per image, ``*_caps.txt``,
``*_scenes.npy`` (the generating scene of each image), ``*_partner.npy``, ``*_binding.npy``,
``vocab.json`` and ``meta.json`` (generator version, spec, sha256 of every file). Everything is
deterministic from the spec (its seed included) and ``GENERATOR_VERSION``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .precomp import Split
from .synthetic import check_folder, file_sha256, publish_generated
from .vocab import Vocabulary

GENERATOR_VERSION = "1"

# concepts, each a list of synonyms; the words of categories, colours and places are those of the
# ``english`` word list of ``partial`` noise, so a partial swap changes what a caption says. No word
# that can follow an article starts with a vowel: "a"/"an" would differ between a caption and its
# binding partner's, and the bags of words with it
CATEGORIES: list[list[str]] = [
    ["dog", "puppy"], ["cat", "kitten"], ["horse", "pony"], ["bird"], ["cow"], ["sheep"],
    ["car"], ["boat"], ["bus"], ["truck"], ["bike", "bicycle"],
    ["ball"], ["kite"], ["guitar"], ["skateboard"], ["frisbee"],
    ["man", "guy"], ["woman", "lady"], ["boy"], ["girl"],
]
COLOURS: list[list[str]] = [
    ["red"], ["blue"], ["green"], ["yellow"], ["black"], ["white"], ["brown"], ["pink"], ["purple"],
    ["grey", "gray"],
]
SIZES: list[list[str]] = [["small", "little"], ["big", "large"]]
PLACES: list[list[str]] = [
    ["beach", "shore"], ["street", "road"], ["park"], ["field", "meadow"], ["snow"], ["grass"], ["lake"],
    ["kitchen"],
]
GRID = 3  # objects stand in distinct cells of a GRID × GRID grid
STUFF = 16  # background prototypes (nuisance: never named by a caption)
MAX_OBJECTS = 3
SCENE_COLUMNS = 2 + 5 * MAX_OBJECTS  # place, objects, then (category, colour, size, column, row) each
_PLACE_PREP = ("on the", "in the", "by the")
_THIRD = ("with", "near")


@dataclass(frozen=True)
class ScenesSpec:
    """Sizes and difficulty of one ``synthetic-scenes`` dataset (all deterministic given ``seed``)."""

    n_train: int = 1000  # images; 5 captions each
    n_dev: int = 200
    n_test: int = 500
    regions: int = 12
    feature_dim: int = 64
    latent_dim: int = 48
    boxes_per_object: tuple[int, int] = (2, 3)  # jittered boxes seeing each object (inclusive range)
    nuisance: float = 0.6  # per-region noise on the latent vector
    image_nuisance: float = 0.3  # per-image offset shared by its regions (lighting, camera)
    pairs: float = 0.5  # share of each split's images that come as binding pairs
    seed: int = 0
    captions_per_image: int = 5

    def __post_init__(self) -> None:
        most = MAX_OBJECTS * self.boxes_per_object[1] + 1
        if self.regions < most:
            raise DataError(f"synthetic-scenes: {self.regions} regions cannot hold {MAX_OBJECTS} objects of up to "
                            f"{self.boxes_per_object[1]} boxes and a background region (at least {most})")

    def folder_name(self) -> str:
        key = json.dumps(asdict(self), sort_keys=True) + GENERATOR_VERSION
        return f"scenes-v{GENERATOR_VERSION}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


# -- scenes ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SceneObject:
    category: int
    colour: int
    size: int
    column: int
    row: int


@dataclass(frozen=True)
class Scene:
    place: int
    objects: tuple[SceneObject, ...]

    def swapped_colours(self) -> "Scene":
        """The binding partner: the first two objects' colours exchanged, everything else kept."""
        a, b, *rest = self.objects
        return Scene(self.place, (SceneObject(a.category, b.colour, a.size, a.column, a.row),
                                  SceneObject(b.category, a.colour, b.size, b.column, b.row), *rest))

    def to_row(self) -> np.ndarray:
        row = np.full(SCENE_COLUMNS, -1, dtype=np.int64)
        row[0], row[1] = self.place, len(self.objects)
        for k, o in enumerate(self.objects):
            row[2 + 5 * k : 7 + 5 * k] = (o.category, o.colour, o.size, o.column, o.row)
        return row

    @classmethod
    def from_row(cls, row: np.ndarray) -> "Scene":
        objects = tuple(SceneObject(*(int(v) for v in row[2 + 5 * k : 7 + 5 * k])) for k in range(int(row[1])))
        return cls(int(row[0]), objects)


def random_scene(rng: np.random.Generator) -> Scene:
    """Two or three objects of distinct categories in distinct cells; the first two of distinct
    colours (so that swapping them changes the image)."""
    n = int(rng.integers(2, MAX_OBJECTS + 1))
    categories = rng.choice(len(CATEGORIES), size=n, replace=False)
    cells = rng.choice(GRID * GRID, size=n, replace=False)
    first_two = rng.choice(len(COLOURS), size=2, replace=False)
    colours = [*first_two, *rng.integers(0, len(COLOURS), n - 2)]
    sizes = rng.integers(0, len(SIZES), n)
    objects = tuple(SceneObject(int(categories[k]), int(colours[k]), int(sizes[k]), int(cells[k] % GRID),
                                int(cells[k] // GRID)) for k in range(n))
    return Scene(int(rng.integers(0, len(PLACES))), objects)


# -- captions ----------------------------------------------------------------------------------
def relation(a: SceneObject, b: SceneObject) -> str:
    """Where ``a`` is with respect to ``b`` (their cells differ)."""
    if a.column != b.column:
        return "to the left of" if a.column < b.column else "to the right of"
    return "above" if a.row < b.row else "below"


def _word(concepts: list[list[str]], concept: int, draw: int) -> str:
    synonyms = concepts[concept]
    return synonyms[draw % len(synonyms)]


@dataclass(frozen=True)
class Caption:
    """A caption and whether it names the colour of one of the scene's first two objects (then it is
    false of the binding partner, one of whose captions has the same bag of words)."""

    text: str
    binds: bool


def caption(scene: Scene, rng: np.random.Generator) -> Caption:
    """One caption of ``scene``. The random draws are the same whatever the scene (a fixed number,
    in a fixed order), so the same generator state writes the same sentence structure for a scene
    and its binding partner (the same words where both swapped colours are named)."""
    u = rng.random(11)
    w = rng.integers(0, 1 << 30, (4, 3))  # per phrase: article, size and colour synonym, category synonym
    place_draws = rng.integers(0, 1 << 30, 3)
    a, b = scene.objects[:2]
    if u[0] < 0.5:
        a, b = b, a

    def phrase(o: SceneObject, show_colour: bool, show_size: bool, draws: np.ndarray) -> list[str]:
        words = [_word(SIZES, o.size, int(draws[1]))] if show_size else []
        if show_colour:
            words.append(_word(COLOURS, o.colour, int(draws[1])))
        words.append(_word(CATEGORIES, o.category, int(draws[2])))
        return ["the" if draws[0] % 2 else "a", *words]

    show = u[1] < 0.85, u[3] < 0.85  # the colours of a and b
    words = phrase(a, show[0], u[2] < 0.25, w[0])
    words += ["and"] if u[5] < 0.2 else relation(a, b).split()
    words += phrase(b, show[1], u[4] < 0.25, w[1])
    if len(scene.objects) > 2 and u[6] < 0.5:
        words += [_THIRD[w[2, 0] % len(_THIRD)], *phrase(scene.objects[2], u[7] < 0.7, u[8] < 0.25, w[3])]
    if u[9] < 0.5:
        words += [*_PLACE_PREP[place_draws[0] % len(_PLACE_PREP)].split(), _word(PLACES, scene.place, int(place_draws[1]))]
    return Caption(" ".join(words) + " .", any(show))


# -- features ----------------------------------------------------------------------------------
class _World:
    """The fixed prototypes and the feature-mixing network of one dataset."""

    def __init__(self, spec: ScenesSpec, rng: np.random.Generator):
        self.spec = spec
        d = spec.latent_dim

        def protos(n: int) -> np.ndarray:
            return rng.normal(0.0, 1.0, (n, d)) / np.sqrt(5)

        self.category, self.colour, self.size = protos(len(CATEGORIES)), protos(len(COLOURS)), protos(len(SIZES))
        self.column, self.row = protos(GRID), protos(GRID)
        self.place, self.stuff = protos(len(PLACES)), protos(STUFF)
        h = 2 * spec.feature_dim
        self.w1 = rng.normal(0.0, 1.0 / np.sqrt(d), (d, h))
        self.w2 = rng.normal(0.0, 1.0 / np.sqrt(h), (h, spec.feature_dim))

    def object_latent(self, o: SceneObject) -> np.ndarray:
        return self.category[o.category] + self.colour[o.colour] + self.size[o.size] + self.column[o.column] + self.row[o.row]

    def regions(self, scene: Scene, rng: np.random.Generator) -> np.ndarray:
        """``(R, D)`` region features of one scene, in a random order."""
        s = self.spec
        place = self.place[scene.place]
        lo, hi = s.boxes_per_object
        boxes = []
        for o in scene.objects:
            z = self.object_latent(o)
            for _ in range(int(rng.integers(lo, hi + 1))):
                share = rng.uniform(0.6, 1.0)  # how much of the box the object fills
                boxes.append(share * z + (1.0 - share) * place)
        background = [place + self.stuff[k] for k in rng.integers(0, STUFF, s.regions - len(boxes))]
        z = np.stack(boxes + background)
        z = z + rng.normal(0.0, s.image_nuisance / np.sqrt(s.latent_dim), s.latent_dim)
        z = z + rng.normal(0.0, s.nuisance / np.sqrt(s.latent_dim), z.shape)
        x = np.tanh(z @ self.w1) @ self.w2
        return x[rng.permutation(s.regions)].astype(np.float32)


# -- splits ------------------------------------------------------------------------------------
@dataclass
class GeneratedSplit:
    scenes: list[Scene]
    partner: np.ndarray  # (n_images,) the binding partner of each image, -1 for none
    features: np.ndarray  # (n_images, R, D)
    captions: list[str]
    binding: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (n_captions,)


def generate_split(world: _World, n: int, rng: np.random.Generator) -> GeneratedSplit:
    """``n`` images, a share ``pairs`` of them as binding pairs (adjacent images), the rest single;
    the pairs are spread over the split by a random permutation."""
    spec = world.spec
    n_pairs = int(round(spec.pairs * n / 2))
    scenes: list[Scene] = []
    partner_local: list[int] = []
    for k in range(n_pairs):
        s = random_scene(rng)
        scenes += [s, s.swapped_colours()]
        partner_local += [2 * k + 1, 2 * k]
    scenes += [random_scene(rng) for _ in range(n - 2 * n_pairs)]
    partner_local += [-1] * (n - 2 * n_pairs)
    order = rng.permutation(n)  # new position → old index
    where = np.empty(n, dtype=np.int64)
    where[order] = np.arange(n)
    scenes = [scenes[i] for i in order]
    partner = np.array([where[partner_local[i]] if partner_local[i] >= 0 else -1 for i in order], dtype=np.int64)
    features = np.stack([world.regions(s, rng) for s in scenes])
    cpi = spec.captions_per_image
    caption_seeds = rng.integers(0, 1 << 62, (n, cpi))
    for i in range(n):  # a pair writes its captions from the seeds of its first image
        if partner[i] >= 0:
            caption_seeds[i] = caption_seeds[min(i, int(partner[i]))]
    written = [caption(scenes[i], np.random.default_rng(int(caption_seeds[i, k]))) for i in range(n) for k in range(cpi)]
    binding = np.array([partner[c // cpi] if cap.binds else -1 for c, cap in enumerate(written)], dtype=np.int64)
    return GeneratedSplit(scenes, partner, features, [cap.text for cap in written], binding)


def generate(spec: ScenesSpec, out: Path) -> None:
    """Write the dataset to ``out`` (created atomically: a crash leaves no half-written folder)."""
    rng = np.random.default_rng(spec.seed)
    world = _World(spec, rng)

    def write(tmp: Path) -> None:
        train_caps: list[str] = []
        for name, n, per_caption in (("train", spec.n_train, False), ("dev", spec.n_dev, True), ("test", spec.n_test, False)):
            split = generate_split(world, n, rng)
            feats = np.repeat(split.features, spec.captions_per_image, axis=0) if per_caption else split.features
            np.save(tmp / f"{name}_ims.npy", feats)
            (tmp / f"{name}_caps.txt").write_text("\n".join(split.captions) + "\n", encoding="utf-8")
            np.save(tmp / f"{name}_scenes.npy", np.stack([s.to_row() for s in split.scenes]))
            np.save(tmp / f"{name}_partner.npy", split.partner)
            np.save(tmp / f"{name}_binding.npy", split.binding)
            if name == "train":
                train_caps = split.captions
        Vocabulary.build(train_caps, threshold=1).save(tmp / "vocab.json")

    publish_generated(out, write, {"generator": "synthetic-scenes", "generator_version": GENERATOR_VERSION,
                                   "spec": asdict(spec)})


def recorded_hashes(out: Path) -> dict[str, str]:
    """The sha256 of each file of ``out`` as its ``meta.json`` records them."""
    meta_path = out / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        files = meta["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not an object")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{meta_path}: unreadable ({exc}); delete {out} to have the scenes dataset generated "
                        f"again") from None
    return files


def ensure_scenes(cache_dir: Path, spec: ScenesSpec = ScenesSpec()) -> Path:
    """The folder of the dataset described by ``spec``, generating it on first use; a cached folder
    must hold the files generated (sha256 per file, ``synthetic.check_folder``)."""
    out = Path(cache_dir) / spec.folder_name()
    if not (out / "meta.json").is_file():
        generate(spec, out)
    else:
        check_folder(out, recorded_hashes(out))
    return out


# -- the binding queries of a loaded split ------------------------------------------------------
@dataclass(frozen=True)
class QuerySubset:
    """Queries of a test split scored on their own (a sub-benchmark): image queries (i2t) and
    caption queries (t2i), as indices into the split's images and captions."""

    images: np.ndarray
    captions: np.ndarray


@dataclass
class SplitWithSubsets(Split):
    """A split that names sub-benchmarks of its queries (``ncbench.evaluate`` scores each)."""

    subsets: dict[str, QuerySubset] = field(default_factory=dict)


def _load_index(path: Path, length: int, limit: int) -> np.ndarray:
    """An int64 index file of ``length`` entries, each -1 or an image in ``[0, limit)``."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: not found (a synthetic-scenes folder has the binding index of each split)") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: unreadable or not a .npy array ({exc})") from None
    if arr.shape != (length,) or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{path}: expected {length} integers, found shape {arr.shape} of {arr.dtype}")
    if ((arr < -1) | (arr >= limit)).any():
        raise DataError(f"{path}: entries must be -1 or an image index below {limit}")
    return arr.astype(np.int64)


def binding_subset(root: Path, split: Split) -> QuerySubset:
    """The binding queries of ``split``: the images that have a binding partner, and the captions
    whose bag of words also describes the partner (``{split}_partner.npy``, ``{split}_binding.npy``)."""
    partner = _load_index(Path(root) / f"{split.name}_partner.npy", split.n_images, split.n_images)
    binding = _load_index(Path(root) / f"{split.name}_binding.npy", split.n_captions, split.n_images)
    return QuerySubset(np.flatnonzero(partner >= 0), np.flatnonzero(binding >= 0))


def with_binding(root: Path, split: Split) -> SplitWithSubsets:
    """``split`` with its ``binding`` sub-benchmark."""
    fields_ = {k: getattr(split, k) for k in split.__dataclass_fields__}
    return SplitWithSubsets(**fields_, subsets={"binding": binding_subset(root, split)})
