"""Noise injection (spec §1.3) and noise-index files, including the papers' own files."""

import numpy as np
import pytest

from ncbench.data.noise import (
    array_sha256, check_ratio, load_noise_index, make_noise_index, obtain_noise_index, save_noise_index,
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
    # obtain_noise_index loads the existing file instead of generating a new one
    again = obtain_noise_index(t, 100, 0.3, seed=999, path=path)
    assert again.sha256 == idx.sha256


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


@pytest.mark.parametrize("source,ratio", sorted(PAPER_FILES))
def test_real_noise_files_load_with_their_realised_ratio(shared_data, source, ratio):
    path = shared_data / "noise_index_f30k" / source / f"f30k_precomp_{ratio:g}.npy"
    idx = load_noise_index(path, np.arange(145000) // 5, 29000, ratio)
    assert len(idx.t2i) == 145000
    assert round(idx.realised_ratio, 5) == pytest.approx(PAPER_FILES[(source, ratio)], abs=1e-5)
    assert idx.sha256 == array_sha256(np.load(path))


def test_bicro_and_l2rm_files_differ(shared_data):
    a = np.load(shared_data / "noise_index_f30k/bicro/f30k_precomp_0.2.npy")
    b = np.load(shared_data / "noise_index_f30k/l2rm/f30k_precomp_0.2.npy")
    assert array_sha256(a) != array_sha256(b)
