"""The embedded region-feature dataset ``synthetic-scenes`` (issue 34 items 1 and 4).

* the generator is deterministic (the same spec writes the same bytes; the seed changes them) and
  records its version;
* the generated folder passes ``ncbench data check`` against the card's layout;
* binding pairs: two captions with the same bag of words describe two different images, written by
  hand and found in the generated test split (checked with sorted word lists, independently of the
  generator's own bookkeeping), and a bag-of-words encoder cannot tell them apart;
* the ``binding`` sub-benchmark of the evaluation equals recall computed by an explicit loop;
* every noise model and type makes a noise index on the dataset, and every registered method
  trains on it (one tiny run each, ``vse_bow``); runs under image-level and partial noise reach the
  leaderboard, a table per noise type and model, beside the floor.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ncbench.cli import main
from ncbench.data.cards import scenes_card
from ncbench.data.scenes import (
    CATEGORIES, COLOURS, GENERATOR_VERSION, SIZES, Scene, SceneObject, ScenesSpec, SplitWithSubsets, caption,
    ensure_scenes, generate,
)
from ncbench.data.vocab import Vocabulary
from ncbench.registry import DATASETS

TINY_SPEC = ScenesSpec(n_train=30, n_dev=10, n_test=20)
TINY = "synthetic-scenes-tiny"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """The generated folder of the ``synthetic-scenes-small`` card."""
    return ensure_scenes(tmp_path_factory.mktemp("scenes") / "data", DATASETS.get("synthetic-scenes-small").spec)


def test_the_same_spec_writes_the_same_bytes_and_records_its_version(tmp_path):
    generate(TINY_SPEC, tmp_path / "a")
    generate(TINY_SPEC, tmp_path / "b")
    generate(ScenesSpec(n_train=30, n_dev=10, n_test=20, seed=1), tmp_path / "c")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert {"train_ims.npy", "dev_ims.npy", "test_ims.npy", "test_caps.txt", "test_binding.npy", "vocab.json"} <= set(names)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "train_ims.npy").read_bytes() != (tmp_path / "c" / "train_ims.npy").read_bytes()
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["generator_version"] == GENERATOR_VERSION and meta["spec"]["n_train"] == 30
    assert f"-v{GENERATOR_VERSION}-" in TINY_SPEC.folder_name()
    assert TINY_SPEC.folder_name() != ScenesSpec(n_train=30, n_dev=10, n_test=20, seed=1).folder_name()
    ims = np.load(tmp_path / "a" / "train_ims.npy")
    assert ims.shape == (30, 12, 64) and ims.dtype == np.float32


def test_a_modified_cache_is_refused(tmp_path, capsys):
    out = ensure_scenes(tmp_path, TINY_SPEC)
    assert ensure_scenes(tmp_path, TINY_SPEC) == out  # cached, checked
    with open(out / "test_caps.txt", "a") as f:
        f.write("x\n")
    from ncbench.errors import DataError

    with pytest.raises(DataError, match="test_caps.txt: cached synthetic file was modified"):
        ensure_scenes(tmp_path, TINY_SPEC)


def test_the_generated_folder_passes_data_check(small, capsys):
    assert main(["data", "check", "--dataset", "synthetic-scenes-small", "--root", str(small)]) == 0
    out = capsys.readouterr().out
    assert "all 7 file(s) as the card describes" in out and "(100, 12, 64) float32, one row per image" in out
    assert "(500, 12, 64) float32, one row per caption" in out  # dev: one row per caption, as Flickr30K's
    assert main(["data", "check", "--dataset", "synthetic-scenes", "--root", str(small)]) == 1  # other sizes


def _bag(text: str) -> list[str]:
    return sorted(text.split())


def test_a_binding_pair_by_hand():
    dog, car = SceneObject(category=0, colour=0, size=0, column=0, row=1), SceneObject(6, 1, 1, 2, 1)
    scene = Scene(place=5, objects=(dog, car))
    partner = scene.swapped_colours()
    assert partner.objects == (SceneObject(0, 1, 0, 0, 1), SceneObject(6, 0, 1, 2, 1))
    # the generator writes a scene and its partner with the same choices: where both colours are named,
    # the same words bound differently; where none is, the same caption (true of both images)
    kinds = set()
    for seed in range(60):
        a, b = caption(scene, np.random.default_rng(seed)), caption(partner, np.random.default_rng(seed))
        named = len({"red", "blue"} & set(a.text.split()))
        kinds.add(named)
        assert a.text.replace("red", "@").replace("blue", "red").replace("@", "blue") == b.text
        assert a.binds == b.binds == (named > 0) and (_bag(a.text) == _bag(b.text)) == (named != 1)
        if named == 2:  # e.g. "a red dog to the left of a blue car ." / "a blue dog to the left of a red car ."
            assert a.text != b.text
    assert kinds == {0, 1, 2}


def _colour_named_on(text: str, category_words: set[str]) -> bool:
    """Whether ``text`` puts a colour word right before (or a size word before) one of ``category_words``."""
    words = text.split()
    colours = {w for c in COLOURS for w in c}
    sizes = {w for c in SIZES for w in c}
    for k, w in enumerate(words):
        if w in category_words:
            before = [x for x in words[max(0, k - 2) : k] if x not in sizes]
            if before and before[-1] in colours:
                return True
    return False


def test_the_test_split_holds_binding_pairs_with_different_images(small):
    caps = (small / "test_caps.txt").read_text().splitlines()
    ims, scenes = np.load(small / "test_ims.npy"), np.load(small / "test_scenes.npy")
    partner, binding = np.load(small / "test_partner.npy"), np.load(small / "test_binding.npy")
    assert (partner >= 0).sum() == 50  # half the images come in pairs
    for i in np.flatnonzero(partner >= 0):
        j = partner[i]
        assert partner[j] == i and not np.allclose(ims[i], ims[j])  # two different images
        assert scenes[i][0] == scenes[j][0] and (scenes[i][2:] != scenes[j][2:]).sum() == 2  # colours swapped
        assert scenes[i][3] == scenes[j][8] and scenes[i][8] == scenes[j][3]
        first_two = {w for k in (2, 7) for w in CATEGORIES[scenes[i][k]]}
        for c in range(i * 5, i * 5 + 5):  # a binding query names the colour of a swapped object
            assert (binding[c] == j) == _colour_named_on(caps[c], first_two), caps[c]
    assert (binding[np.repeat(partner, 5) < 0] == -1).all()
    # captions with the same bag of words and other images: every one found is a binding query
    found = [(c, j) for c in range(500) for j in range(100)
             if j != c // 5 and any(_bag(caps[c]) == _bag(d) and caps[c] != d for d in caps[j * 5 : j * 5 + 5])]
    assert len(found) > 50 and all(binding[c] == j for c, j in found)
    # a bag-of-words encoder gives both captions the same embedding
    from ncbench.registry import BACKBONES

    vocab = Vocabulary.load(small / "vocab.json")
    bow = BACKBONES.get("vse_bow")
    net = bow(bow.Config(), len(vocab), 64).eval()
    c, j = found[0]
    other = next(d for d in caps[j * 5 : j * 5 + 5] if _bag(d) == _bag(caps[c]))
    tokens = [torch.as_tensor(vocab.encode(t)) for t in (caps[c], other)]
    with torch.no_grad():
        emb = net.encode_captions(torch.stack(tokens), torch.tensor([len(t) for t in tokens]))
    torch.testing.assert_close(emb[0], emb[1])


def test_the_binding_subset_is_recall_over_its_queries_alone(small, monkeypatch):
    from ncbench import evaluate
    from ncbench.data.precomp import load_split

    split = DATASETS.get("synthetic-scenes-small").load(small, small).test
    assert isinstance(split, SplitWithSubsets)
    q = split.subsets["binding"]
    rng = np.random.default_rng(3)
    sims = rng.normal(size=(100, 500)).astype(np.float32)

    monkeypatch.setattr(evaluate, "similarity_matrix", lambda nets, split, device, precision="fp32": sims)
    ev = evaluate.evaluate_split([], split, torch.device("cpu"))
    sub = ev.to_dict()["subsets"]["binding"]
    assert (sub["images"], sub["captions"]) == (len(q.images), len(q.captions)) == (50, int((np.load(small / "test_binding.npy") >= 0).sum()))
    t2i_r1 = np.mean([sims[:, c].argmax() == c // 5 for c in q.captions]) * 100
    i2t_r5 = np.mean([bool(set(np.argsort(-sims[i])[:5] // 5) & {i}) for i in q.images]) * 100
    assert sub["metrics"]["t2i_r1"] == pytest.approx(t2i_r1) and sub["metrics"]["i2t_r5"] == pytest.approx(i2t_r5)
    assert ev.to_dict()["full"]["t2i_r1"] == pytest.approx(np.mean(sims.argmax(0) == np.arange(500) // 5) * 100)
    plain = load_split(small, "test", Vocabulary.load(small / "vocab.json"))  # a split that names no subsets
    assert "subsets" not in evaluate.evaluate_split([], plain, torch.device("cpu")).to_dict()


# -- item 4: every noise model and type, every method --------------------------------------------
def _noise_models() -> list[str]:
    from ncbench.data.noise_models import NOISE_MODELS

    return sorted(NOISE_MODELS)


@pytest.mark.parametrize("noise_type", ["caption", "image"])
@pytest.mark.parametrize("model", _noise_models())
def test_every_noise_model_makes_an_index(model, noise_type, tmp_path, cache_dir, capsys):
    out = tmp_path / "n.npy"
    assert main(["noise", "make", "--dataset", "synthetic-scenes-small", "--model", model, "--type", noise_type,
                 "--ratio", "0.4", "--cache-dir", str(cache_dir), "--out", str(out)]) == 0
    t2i = np.load(out)
    assert t2i.shape == (1500,)
    changed = (t2i != np.arange(1500) // 5).mean()
    if model == "partial":  # the image stays, a word of the caption changes
        texts = json.loads((tmp_path / "n.texts.json").read_text())
        assert changed == 0 and texts
    else:
        assert changed == pytest.approx(0.4, abs=0.02)


@pytest.fixture(scope="module")
def tiny_card():
    card = scenes_card(TINY, "60 training images, for the tests", ScenesSpec(n_train=60, n_dev=20, n_test=20))
    DATASETS.register(TINY)(card)
    yield card
    DATASETS.unregister(TINY)


def test_every_method_trains_on_scenes(tiny_card, registered_method, tmp_path, cache_dir):
    threads = torch.get_num_threads()
    try:
        code = main(["run", "--dataset", TINY, "--methods", registered_method, "--backbones", "vse_bow", "--noise", "0.4",
                     "--results", str(tmp_path), "--cache-dir", str(cache_dir), "--no-progress", "--device", "cpu",
                     "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    (path,) = tmp_path.rglob("seed-0.json")
    result = json.loads(path.read_text())
    assert result["status"] == "ok" and result["test"]["subsets"]["binding"]["images"] == 10


def test_runs_of_each_noise_type_and_model_reach_the_boards(tiny_card, tmp_path, cache_dir):
    """Image-level neighbour noise and caption-level partial noise (a word of the caption changed, from
    the english word list the scenes' categories, colours and places come from) train on the dataset,
    and the leaderboard puts each in a table of its own, beside the floor."""
    threads = torch.get_num_threads()
    runs = tmp_path / "runs"
    common = ["--dataset", TINY, "--backbones", "vse_bow", "--noise", "0.4", "--results", str(runs), "--cache-dir",
              str(cache_dir), "--no-progress", "--device", "cpu", "--threads", "1"]
    try:
        for noise in (["--noise-type", "image", "--noise-model", "neighbour"], ["--noise-model", "partial"]):
            assert main(["run", "--methods", "vanilla", "--method-opt", "epochs=1", *common, *noise]) == 0
            assert main(["run", "--methods", "probe", *common, *noise]) == 0
    finally:
        torch.set_num_threads(threads)
    results = [json.loads(p.read_text()) for p in runs.rglob("seed-0.json")]
    assert sorted((r["identity"]["method"], r["identity"]["noise_type"], r["identity"]["noise_model"]) for r in results) == [
        ("probe", "caption", "partial"), ("probe", "image", "neighbour"),
        ("vanilla", "caption", "partial"), ("vanilla", "image", "neighbour")]
    boards = tmp_path / "boards"
    assert main(["leaderboard", "--results", str(runs), "--out", str(boards), "--format", "md", "--no-plots"]) == 0
    md = (boards / "leaderboard.md").read_text()
    assert md.count(f"## {TINY}") == 2, md
    assert f"## {TINY}, caption-level noise, partial model" in md and f"## {TINY}, image-level noise, neighbour model" in md
    assert md.count("| probe     | measured, floor (training-free)") == 2
    for r in results:
        assert f"{r['test']['full']['rsum']:.1f}" in md, (r["identity"], md)
