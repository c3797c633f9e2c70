"""Noise injection (spec §1.3) and noise-index files, including the papers' own files."""

import numpy as np
import pytest

from ncbench.data.noise import (
    array_sha256, check_ratio, describe_index_file, detect_noise_type, load_noise_index, make_noise_index,
    obtain_noise_index, save_noise_index,
)
from ncbench.errors import ConfigError, DataError


def true_rows(n_img=2000, cpi=5):
    return np.arange(n_img * cpi, dtype=np.int64) // cpi


@pytest.mark.parametrize("ratio", [0.0, 0.2, 0.5, 0.8])
def test_realised_ratio_and_multiset(ratio):
    t = true_rows()
    idx = make_noise_index(t, ratio, seed=3)
    n_sel = int(ratio * len(t))
    # exactly ⌊r·N⌋ captions are reassigned; a few may draw their own image back and count clean
    assert idx.realised_ratio <= n_sel / len(t)
    assert idx.realised_ratio >= n_sel / len(t) - 0.005
    assert np.array_equal(np.sort(idx.t2i), t)  # image multiset preserved
    assert idx.t2i.dtype == np.int64
    assert np.array_equal(idx.clean, idx.t2i == t)


def test_same_seed_same_index_other_seed_other_index():
    t = true_rows()
    a, b, c = (make_noise_index(t, 0.4, s) for s in (7, 7, 8))
    assert a.sha256 == b.sha256 and np.array_equal(a.t2i, b.t2i)
    assert a.sha256 != c.sha256


def test_saved_file_is_official_format_and_reloads(tmp_path):
    t = true_rows(100)
    idx = make_noise_index(t, 0.3, 0)
    path = tmp_path / "x_precomp_0.3.npy"
    save_noise_index(idx, path)
    raw = np.load(path)
    assert raw.dtype == np.int64 and raw.shape == (500,)
    back = load_noise_index(path, t, 100, 0.3)
    assert back.sha256 == idx.sha256 == array_sha256(raw)
    # obtain_noise_index accepts the cached file when it is the index it generates ...
    again = obtain_noise_index(t, 100, 0.3, seed=0, path=path)
    assert again.sha256 == idx.sha256 and again.source == str(path)
    # ... and refuses one that is not (here: written for another noise seed), naming it
    with pytest.raises(DataError, match=r"x_precomp_0\.3\.npy: this cached noise index is not the one"):
        obtain_noise_index(t, 100, 0.3, seed=999, path=path)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan")])
def test_ratio_outside_range(ratio):
    with pytest.raises(ConfigError):
        check_ratio(ratio)


def test_bad_index_files(tmp_path):
    t = true_rows(10)
    np.save(tmp_path / "short.npy", np.zeros(49, dtype=np.int64))
    np.save(tmp_path / "range.npy", np.full(50, 10, dtype=np.int64))
    np.save(tmp_path / "rank.npy", np.zeros((50, 2), dtype=np.int64))
    np.save(tmp_path / "float.npy", np.zeros(50, dtype=np.float32))
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "short.npy").read_bytes()[:100])
    for name, words in [("short", "expected 50 entries"), ("range", "[0, 10)"), ("rank", "1-D"),
                        ("float", "1-D integer"), ("trunc", "truncated"), ("missing", "not found")]:
        with pytest.raises(DataError, match=r".*" + name + r"\.npy.*") as err:
            load_noise_index(tmp_path / f"{name}.npy", t, 10)
        assert words in str(err.value)


# realised ratios measured on the shipped files (methods-and-protocol.md §1.3)
PAPER_FILES = {
    ("bicro", 0.2): 0.19999, ("bicro", 0.4): 0.40000, ("bicro", 0.5): 0.49998, ("bicro", 0.6): 0.59997,
    ("l2rm", 0.2): 0.19997, ("l2rm", 0.4): 0.40000, ("l2rm", 0.6): 0.59993, ("l2rm", 0.8): 0.79997,
}


PAPER_TYPES = {"bicro": "caption", "l2rm": "image"}  # methods-beyond §1: L2RM's files are image-level


@pytest.mark.parametrize("source,ratio", sorted(PAPER_FILES))
def test_real_noise_files_load_with_their_realised_ratio(shared_data, source, ratio):
    path = shared_data / "noise_index_f30k" / source / f"f30k_precomp_{ratio:g}.npy"
    true = np.arange(145000) // 5
    kind = PAPER_TYPES[source]
    idx = load_noise_index(path, true, 29000, ratio, kind)
    assert len(idx.t2i) == 145000 and idx.noise_type == kind
    assert round(idx.realised_ratio, 5) == pytest.approx(PAPER_FILES[(source, ratio)], abs=1e-5)
    assert idx.sha256 == array_sha256(np.load(path))
    assert detect_noise_type(idx.t2i, true) == kind
    # a file of the other protocol is refused with the option that would accept it
    other = "caption" if kind == "image" else "image"
    with pytest.raises(DataError, match=f"holds {kind}-level noise.*--noise-type {kind}"):
        load_noise_index(path, true, 29000, ratio, other)


@pytest.mark.parametrize("ratio", [0.2, 0.4, 0.6, 0.8])
def test_rcl_per_image_files_load_as_the_same_index_as_l2rm(shared_data, ratio):
    """RCL's file has one entry per image (29,000); L2RM's is ``np.repeat`` of it ×5: both load to
    the same per-caption index and the same sha256."""
    true = np.arange(145000) // 5
    rcl = load_noise_index(shared_data / "noise_index_f30k/rcl" / f"noise_inx_{ratio:g}.npy", true, 29000, ratio, "image")
    l2rm = load_noise_index(shared_data / "noise_index_f30k/l2rm" / f"f30k_precomp_{ratio:g}.npy", true, 29000, ratio, "image")
    assert np.array_equal(rcl.t2i, l2rm.t2i) and rcl.sha256 == l2rm.sha256


def test_rcl_coco_file_is_image_level(shared_data):
    d = describe_index_file(shared_data / "noise_index_coco/rcl/noise_inx_0.2.npy")
    assert (d["layout"], d["noise_type"], d["captions"]) == ("per-image", "image", 566435)
    assert d["realised"] == pytest.approx(0.2, abs=1e-3)


def test_image_level_generator_follows_rcl_and_moves_whole_images():
    """Every caption of a chosen image follows it; ⌊r·N_img⌋ images are chosen (a slow explicit
    construction of RCL's ``data.py`` with the same draws as the reference)."""
    true = np.repeat(np.arange(200), 5)
    idx = make_noise_index(true, 0.3, 7, "image")
    rng = np.random.default_rng(7)
    img = np.arange(200)
    chosen = rng.permutation(200)[:60]
    img[chosen] = rng.permutation(img[chosen])
    expected = np.array([img[i] for i in true])
    assert np.array_equal(idx.t2i, expected)
    assert detect_noise_type(idx.t2i, true) == "image"
    per_image_moved = (idx.t2i != true).reshape(200, 5).sum(1)
    assert set(per_image_moved.tolist()) <= {0, 5}
    assert idx.noise_type == "image" and detect_noise_type(make_noise_index(true, 0.3, 7).t2i, true) == "caption"
    assert detect_noise_type(true, true) == "none"
    # same seed, same index; another seed, another
    assert make_noise_index(true, 0.3, 7, "image").sha256 == idx.sha256 != make_noise_index(true, 0.3, 8, "image").sha256


def test_per_image_file_of_the_wrong_length_names_both_layouts(tmp_path):
    np.save(tmp_path / "odd.npy", np.arange(7, dtype=np.int64))
    with pytest.raises(DataError, match=r"odd\.npy: expected 50 entries \(one per training caption\) or 10 \(one per image row\)"):
        load_noise_index(tmp_path / "odd.npy", np.arange(50) // 5, 10)


def test_bicro_and_l2rm_files_differ(shared_data):
    a = np.load(shared_data / "noise_index_f30k/bicro/f30k_precomp_0.2.npy")
    b = np.load(shared_data / "noise_index_f30k/l2rm/f30k_precomp_0.2.npy")
    assert array_sha256(a) != array_sha256(b)


def test_noise_type_is_part_of_the_identity_and_caption_runs_hash_as_before():
    """Results of protocol 1 stay readable and are not re-run: a caption-level RunConfig hashes as
    the RunConfig without the field did (the canonical JSON without ``noise_type``), lives in the
    same folder, and an image-level run differs in hash, folder and label."""
    import dataclasses
    import hashlib
    import json
    from pathlib import Path

    from ncbench.config import RunConfig
    from ncbench.results import result_path

    from ncbench.data.noise_spec import NoiseSpec

    cap = RunConfig(method="ncr", backbone="vse_light", dataset="synthetic", noise_ratio=0.2, seed=0)
    old = {"method": "ncr", "backbone": "vse_light", "dataset": "synthetic", "noise_ratio": 0.2, "seed": 0,
           "noise_seed": 0, "noise_file": None, "method_config": {}, "backbone_config": {}, "dataset_version": "",
           "protocol_version": "1"}  # the fields a RunConfig had before noise types, trials and tags
    blob = json.dumps(old, sort_keys=True, separators=(",", ":"), default=str)
    assert cap.config_hash == hashlib.sha256(blob.encode()).hexdigest()
    img = dataclasses.replace(cap, noise_protocol=NoiseSpec.make("image"))
    img_old = {**old, "noise_type": "image"}  # the image-level hash before noise models existed
    assert img.config_hash == hashlib.sha256(json.dumps(img_old, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    hard = dataclasses.replace(cap, noise_protocol=NoiseSpec.make("caption", "neighbour"))
    assert len({cap.config_hash, img.config_hash, hard.config_hash}) == 3
    assert img.config_hash != cap.config_hash
    assert result_path(Path("r"), cap) == Path("r/protocol-1/synthetic/noise-0.2/ncr/vse_light/seed-0.json")
    assert result_path(Path("r"), img) == Path("r/protocol-1/synthetic/noise-image-0.2/ncr/vse_light/seed-0.json")
    assert result_path(Path("r"), hard) == Path("r/protocol-1/synthetic/noise-neighbour-0.2/ncr/vse_light/seed-0.json")
    assert "image-level noise 0.2" in img.label and "image-level" not in cap.label
    assert "caption-level neighbour noise 0.2" in hard.label


# -- the realised ratio must match the nominal one (reliability report F1, cases B12 and B13) ----------
def cycled(n_img: int, moved: int, cpi: int = 5) -> np.ndarray:
    """A caption-level index in which exactly ``moved`` captions have another image: captions taken
    in the order (k-th caption of image 0, 1, …, then the next k) each take the image of the one
    seven places on in that order (cyclically), never their own image for these sizes."""
    t = np.arange(n_img * cpi, dtype=np.int64) // cpi
    order = (np.arange(n_img)[None, :] * cpi + np.arange(cpi)[:, None]).ravel()[:moved]
    t2i = t.copy()
    t2i[order] = t[np.roll(order, -7)]
    assert int((t2i != t).sum()) == moved and np.array_equal(np.sort(t2i), t)
    return t2i


def test_a_clean_index_given_as_60_percent_is_refused(tmp_path):
    t = true_rows(300)
    np.save(tmp_path / "clean.npy", t)
    with pytest.raises(DataError, match=r"clean\.npy: realised noise ratio 0\.00000 does not match the nominal 0\.6"):
        load_noise_index(tmp_path / "clean.npy", t, 300, 0.6)
    assert load_noise_index(tmp_path / "clean.npy", t, 300, 0.0).realised_ratio == 0.0
    assert load_noise_index(tmp_path / "clean.npy", t, 300).ratio == 0.0  # no nominal: the file's own
    np.save(tmp_path / "noisy.npy", cycled(300, 900))  # 60% noise given as 0%
    with pytest.raises(DataError, match=r"noisy\.npy: realised noise ratio 0\.60000 does not match the nominal 0 "):
        load_noise_index(tmp_path / "noisy.npy", t, 300, 0.0)


@pytest.mark.parametrize("n_img,moved,ok", [
    # 100,000 captions: 40 steps are 0.0004, so the tolerance is 0.001 = 100 captions below, 1 above
    (20000, 20000, True), (20000, 19900, True), (20000, 19899, False), (20000, 20001, True), (20000, 20002, False),
    # 1,500 captions: 40 captions below (0.02667), 1 above
    (300, 300, True), (300, 260, True), (300, 259, False), (300, 301, True), (300, 302, False),
])
def test_realised_ratio_tolerance(tmp_path, n_img, moved, ok):
    ratio = 0.2
    np.save(tmp_path / "i.npy", cycled(n_img, moved))
    t = true_rows(n_img)
    assert int(ratio * len(t)) in (20000, 300)  # the nominal counts the cases are written around
    if ok:
        assert load_noise_index(tmp_path / "i.npy", t, n_img, ratio).realised_ratio == pytest.approx(moved / len(t))
    else:
        with pytest.raises(DataError, match="does not match the nominal 0.2"):
            load_noise_index(tmp_path / "i.npy", t, n_img, ratio)


def test_image_level_tolerance_counts_image_rows(tmp_path):
    """Image-level: one step is one image row (300 rows: 40 rows = 0.1333 below)."""
    per_image = np.arange(300, dtype=np.int64)
    per_image[:20] = np.roll(per_image[:20], 1)  # 20 of 300 images moved: realised 0.0667
    np.save(tmp_path / "img.npy", per_image)
    t = true_rows(300)
    assert load_noise_index(tmp_path / "img.npy", t, 300, 0.2, "image").realised_ratio == pytest.approx(20 / 300)
    with pytest.raises(DataError, match="one image row"):
        load_noise_index(tmp_path / "img.npy", t, 300, 0.21, "image")


PAPER_FOLDERS = [("noise_index_f30k/bicro", "f30k_precomp", 29000, "caption"),
                 ("noise_index_f30k/l2rm", "f30k_precomp", 29000, "image"),
                 ("noise_index_f30k/rcl", "noise_inx", 29000, "image"), ("noise_index_coco/rcl", "noise_inx", 113287, "image")]


@pytest.mark.parametrize("folder,stem,n_img,kind", PAPER_FOLDERS)
def test_every_paper_file_passes_the_ratio_check(shared_data, folder, stem, n_img, kind):
    """All 18 shipped files load at the ratio in their name (their realised ratios fall short by
    at most 7e-5, measured), so the tolerance refuses none of the papers' own indices."""
    files = sorted((shared_data / folder).glob(f"{stem}_*.npy"))
    assert len(files) >= 4
    true = np.arange(n_img * 5, dtype=np.int64) // 5
    for f in files:
        ratio = float(f.stem.rsplit("_", 1)[1])
        idx = load_noise_index(f, true, n_img, ratio, kind)
        assert idx.ratio == ratio and 0 <= ratio - idx.realised_ratio < 1e-4


def test_a_modified_cached_index_is_refused(tmp_path):
    """B13: a clean index copied over ``results/noise_index/…_0.2_seed0.npy`` is not trained on."""
    t = true_rows(300)
    path = tmp_path / "noise_index" / "synthetic-small_0.2_seed0.npy"
    first = obtain_noise_index(t, 300, 0.2, seed=0, path=path)
    assert array_sha256(np.load(path)) == first.sha256
    np.save(path, t)
    with pytest.raises(DataError, match=r"synthetic-small_0\.2_seed0\.npy: this cached noise index is not the one "
                                        r"ncbench generates for caption-level ratio 0\.2, noise seed 0"):
        obtain_noise_index(t, 300, 0.2, seed=0, path=path)
    np.save(path, first.t2i.astype(np.float64))
    with pytest.raises(DataError, match="a float64 array"):
        obtain_noise_index(t, 300, 0.2, seed=0, path=path)
