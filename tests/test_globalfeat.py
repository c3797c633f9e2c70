"""Global-feature datasets: the Flickr8k cards on the shared data, the loader's rules and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ncbench.cli import main
from ncbench.data.globalfeat import GlobalSource, load_global
from ncbench.errors import DataError
from ncbench.registry import DATASETS


def test_flickr8k_clip_card(shared_data, tmp_path):
    ds = DATASETS.get("flickr8k-clip").load(shared_data, tmp_path)
    names = (shared_data / "flickr8k/feats_clip_vitb32_499/image_names.txt").read_text().split()
    raw = np.load(shared_data / "flickr8k/feats_clip_vitb32_499/clip_vitb32_image.npy")
    assert [s.images.shape for s in (ds.train, ds.dev, ds.test)] == [(299, 512), (100, 512), (100, 512)]
    assert np.allclose(np.linalg.norm(ds.train.images, axis=1), 1.0, atol=1e-5)
    # each training row is its image's CLIP vector, normalised, and carries that image's 5 captions
    tokens = {}
    for line in (shared_data / "flickr8k/text/Flickr8k.token.txt").read_text().splitlines():
        key, cap = line.split("\t")
        tokens[key] = cap.strip()
    row0 = ds.train.images[0]
    match = int(np.argmax(raw @ row0 / np.linalg.norm(raw, axis=1)))
    assert np.allclose(raw[match] / np.linalg.norm(raw[match]), row0, atol=1e-6)
    assert ds.train.captions[:5] == [tokens[f"{names[match]}#{k}"] for k in range(5)]
    assert ds.train.caption_to_row()[:10].tolist() == [0] * 5 + [1] * 5
    # the seeded split is a partition of the 499 images, the same on every load
    again = DATASETS.get("flickr8k-clip").load(shared_data, tmp_path)
    assert np.array_equal(again.test.images, ds.test.images)
    rows = [tuple(np.round(r, 5)) for s in (ds.train, ds.dev, ds.test) for r in s.images]
    assert len(set(rows)) == 499
    # the vocabulary comes from training captions only
    assert len(ds.vocab) > 500 and ds.vocab.word2idx["<unk>"] == 3


def test_flickr8k_xception_transform(shared_data, tmp_path):
    ds = DATASETS.get("flickr8k-xception").load(shared_data, tmp_path)
    assert [s.n_images for s in (ds.train, ds.dev, ds.test)] == [600, 200, 200]
    x = ds.train.images.astype(np.float64)
    assert np.allclose(x.mean(axis=0), 0, atol=1e-4) and np.allclose(x.std(axis=0), 1, atol=1e-3)
    # by hand for one class: log posterior, standardised with the training images' statistics
    raw = np.load(shared_data / "flickr8k/feats_xception_softmax_test1000/xception_softmax.npy").astype(np.float64)
    names = (shared_data / "flickr8k/feats_xception_softmax_test1000/image_names.txt").read_text().split()
    perm = np.random.default_rng(0).permutation(len(names))
    train = np.sort(perm[:600])
    logs = np.log(np.clip(raw[train, 7], 1e-8, None))
    assert np.allclose(x[:, 7], (logs - logs.mean()) / logs.std(), atol=1e-4)


def _write(tmp_path, n=12, dim=6, cpi=5, caption_lines=None, token=True):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "f.npy", rng.random((n, dim)).astype(np.float32))
    names = [f"im{i}.jpg" for i in range(n)]
    (tmp_path / "names.txt").write_text("\n".join(names))
    if token:
        lines = caption_lines or [f"{nm}#{k}\ta photo of thing {i % 3} number {k}" for i, nm in enumerate(names) for k in range(cpi)]
        (tmp_path / "caps.txt").write_text("\n".join(lines))
    else:
        lines = caption_lines or [f"a photo of thing {i % 3}" for i in range(n) for _ in range(cpi)]
        (tmp_path / "caps.txt").write_text("\n".join(lines))
    return GlobalSource("f.npy", "names.txt", "caps.txt", split_sizes=(6, 3, 3), transform="none")


def test_one_caption_per_line_format(tmp_path):
    src = _write(tmp_path, token=False)
    vocab, (train, dev, test) = load_global(tmp_path, src, 5)
    assert train.n_captions == 30 and dev.n_images == 3 and train.im_div == 5


@pytest.mark.parametrize("case,message", [
    ("names", "11 names but"),
    ("caption_count", "has 4 caption(s), expected 5"),
    ("line_count", "59 caption lines, expected 5 per image × 12 images = 60"),
    ("sizes", "split sizes (10, 3, 3) need 16 images, the features hold 12"),
    ("rank", "expected one global feature per image"),
    ("missing", "row-order file not found"),
])
def test_bad_global_data_is_named(tmp_path, case, message):
    src = _write(tmp_path, token=case != "line_count")
    if case == "names":
        (tmp_path / "names.txt").write_text("\n".join(f"im{i}.jpg" for i in range(11)))
    elif case == "caption_count":
        lines = (tmp_path / "caps.txt").read_text().splitlines()
        (tmp_path / "caps.txt").write_text("\n".join(lines[1:]))
    elif case == "line_count":
        lines = (tmp_path / "caps.txt").read_text().splitlines()
        (tmp_path / "caps.txt").write_text("\n".join(lines[:-1]))
    elif case == "sizes":
        src = GlobalSource("f.npy", "names.txt", "caps.txt", split_sizes=(10, 3, 3), transform="none")
    elif case == "rank":
        np.save(tmp_path / "f.npy", np.zeros((12, 2, 3), dtype=np.float32))
    elif case == "missing":
        (tmp_path / "names.txt").unlink()
    with pytest.raises(DataError, match=None) as exc:
        load_global(tmp_path, src, 5)
    assert message in str(exc.value)


def test_cli_runs_on_flickr8k_clip(shared_data, tmp_path, capsys):
    results = tmp_path / "r"
    argv = ["run", "--dataset", "flickr8k-clip", "--data-root", str(shared_data), "--methods", "vanilla",
            "--noise", "0.2", "--method-opt", "epochs=2", "--results", str(results), "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    (path,) = results.rglob("seed-0.json")
    r = json.loads(path.read_text())
    assert r["status"] == "ok" and r["identity"]["dataset"] == "flickr8k-clip"
    assert 0.19 < r["identity"]["noise_realised_ratio"] <= 0.2
    # the card's backbone and the shipped recipe (tuned on dev), under the user's epochs=2
    from ncbench.recipes import load_recipes

    recipe = load_recipes("flickr8k-clip")[("vanilla", "vse_bow")]
    assert r["identity"]["backbone"] == "vse_bow" and r["recipe"]["kind"] == "tuned"
    assert r["config"]["method_config"]["lr"] == recipe.method["lr"] and r["config"]["method_config"]["epochs"] == 2
    assert r["recipe"]["overrides"] == {"epochs": "2"}
    # without --data-root: one clear line
    assert main(["run", "--dataset", "flickr8k-clip", "--results", str(results)]) == 2
    assert "needs --data-root" in capsys.readouterr().err
