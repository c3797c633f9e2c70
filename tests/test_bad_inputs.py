"""Every bad input of the reliability report (issue 28) that the data layer, the option layer or the
command line can see: one line ``ncbench: error: ...`` naming the file or value, exit code 2, and
nothing trained on it. Case IDs are the report's (docs/reliability-2026-12.md).

Runs use the training-free ``probe`` on a small F30K-like precomp folder, so each takes a fraction
of a second. Unreadable files are simulated by making the read raise ``PermissionError`` (tests run
as root in CI, where ``chmod 000`` denies nothing).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from ncbench.cli import main
from ncbench.data.vocab import Vocabulary


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_error(code: int, err: str, *words: str) -> None:
    """Exit 2, one ``ncbench: error:`` line (a busy machine's warning may precede it), and each of
    ``words`` in it."""
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("ncbench: error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    for w in words:
        assert w in lines[0], (w, err)


@pytest.fixture
def f30k(tmp_path, make_precomp):
    """``--data-root`` of a small F30K-like dataset (``train_images`` training images, 5 captions each)."""

    def make(train_images: int = 12) -> Path:
        root = tmp_path / "data"
        folder = root / "f30k_precomp"
        for split, n in (("train", train_images), ("dev", 4), ("test", 4)):
            make_precomp(folder, split, n)
        (root / "vocab").mkdir()
        Vocabulary.build((folder / "train_caps.txt").read_text().splitlines(), 1).save(root / "vocab/f30k_precomp_vocab.json")
        return root

    return make


def run_probe(capsys, root: Path, results: Path, *extra: str) -> tuple[int, str, str]:
    return cli(capsys, "run", "--dataset", "f30k", "--data-root", str(root), "--methods", "probe", "--results",
               str(results), "--no-progress", "--threads", "1", *extra)


# -- F1: the noise index's realised ratio (B12, B13) ---------------------------------------------------
def test_b12_a_clean_index_given_as_60_percent_is_refused(capsys, tmp_path, f30k):
    root = f30k(300)  # 1,500 captions: the tolerance is 40 captions (0.027) below the nominal ratio
    np.save(tmp_path / "clean.npy", np.arange(1500, dtype=np.int64) // 5)
    code, _, err = run_probe(capsys, root, tmp_path / "r", "--noise", "0.6", "--noise-file", str(tmp_path / "clean.npy"))
    assert_error(code, err, "clean.npy", "realised noise ratio 0.00000", "nominal 0.6")
    assert not list((tmp_path / "r").rglob("seed-*.json"))


def test_b13_a_cached_index_replaced_by_a_clean_one_is_refused(capsys, tmp_path, f30k):
    root = f30k()
    code, _, err = run_probe(capsys, root, tmp_path / "r", "--noise", "0.2")
    assert code == 0, err
    (cached,) = (tmp_path / "r" / "noise_index").glob("*.npy")
    np.save(cached, np.arange(60, dtype=np.int64) // 5)
    code, _, err = run_probe(capsys, root, tmp_path / "r", "--noise", "0.2", "--seeds", "1")
    assert_error(code, err, str(cached), "not the one ncbench generates")
    assert not list((tmp_path / "r").rglob("seed-1.json"))


# -- F8: silent acceptances (C2c, J1) and J3 ------------------------------------------------------------
def test_c2c_a_missing_recipes_folder_is_an_error(capsys, tmp_path):
    code, _, err = cli(capsys, "run", "--dataset", "synthetic-small", "--recipes", str(tmp_path / "nope"), "--dry-run",
                       "--results", str(tmp_path / "r"))
    assert_error(code, err, str(tmp_path / "nope"), "recipes folder not found")


@pytest.mark.parametrize("n", ["-5", "0", "10000000000000"])
def test_j1_j3_noise_make_refuses_non_positive_and_absurd_sizes(capsys, tmp_path, n):
    code, _, err = cli(capsys, "noise", "make", "--captions", n, "--ratio", "0.2", "--out", str(tmp_path / "n.npy"))
    assert_error(code, err, "--captions", n, "20,000,000")
    assert not (tmp_path / "n.npy").exists()


def test_h3_a_method_name_with_a_trailing_newline_is_refused(capsys, tmp_path):
    code, _, err = cli(capsys, "new-method", "abc\n", "--dir", str(tmp_path / "m"))
    assert_error(code, err, "'abc\\n'")
    assert not (tmp_path / "m").exists()


# -- F5: data files (A3, A4, A6, A8, A10, A11, A13) -------------------------------------------------------
def test_a3_nan_in_the_training_features_names_the_file_and_row(capsys, tmp_path, f30k):
    root = f30k()
    ims = root / "f30k_precomp/train_ims.npy"
    feats = np.load(ims)
    feats[7, 3] = np.nan
    np.save(ims, feats)
    code, _, err = run_probe(capsys, root, tmp_path / "r", "--noise", "0")
    assert_error(code, err, str(ims), "NaN or infinity", "row 7")


def test_a4_inf_in_the_test_features_names_the_file_not_the_model(capsys, tmp_path, f30k):
    root = f30k()
    ims = root / "f30k_precomp/test_ims.npy"
    feats = np.load(ims)
    feats[2:4] = np.inf
    np.save(ims, feats)
    code, _, err = run_probe(capsys, root, tmp_path / "r", "--noise", "0")
    assert_error(code, err, str(ims), "row 2")
    assert "diverged" not in err


def test_nonfinite_rows_are_found_block_by_block():
    from ncbench.data.precomp import first_nonfinite_row

    x = np.zeros((1000, 3, 4), dtype=np.float32)
    assert first_nonfinite_row(x, block_bytes=100) is None
    x[613, 2, 1] = -np.inf
    x[870, 0, 0] = np.nan
    for block in (1, 48, 100, 10_000, 1 << 26):  # blocks of 1, 1, 2, 208 and all rows
        assert first_nonfinite_row(x, block_bytes=block) == 613


def test_a4_nan_in_global_features_names_the_file(tmp_path):
    from ncbench.data.globalfeat import GlobalSource, load_table
    from ncbench.errors import DataError

    feats = np.ones((6, 4), dtype=np.float32)
    feats[5, 1] = np.nan
    np.save(tmp_path / "f.npy", feats)
    (tmp_path / "names.txt").write_text("\n".join(f"im{i}" for i in range(6)) + "\n")
    (tmp_path / "caps.txt").write_text("".join(f"im{i}#0\ta photo {i}\n" for i in range(6)))
    src = GlobalSource("f.npy", "names.txt", "caps.txt", split_sizes=(2, 2, 2))
    with pytest.raises(DataError, match=r"f\.npy: features hold NaN or infinity \(first in row 5\)"):
        load_table(tmp_path, src, 1)


def test_a6_empty_captions_are_named_in_a_warning(capsys, tmp_path, f30k):
    root = f30k()
    caps = root / "f30k_precomp/train_caps.txt"
    lines = caps.read_text().splitlines()
    for i in range(0, 60, 3):
        lines[i] = ""
    caps.write_text("\n".join(lines) + "\n")
    code, _, err = run_probe(capsys, root, tmp_path / "r", "--noise", "0")
    assert code == 0, err
    assert f"warning: {caps}: 20 of 60 captions are empty" in err


def test_a8_a_runaway_caption_line_is_refused_with_its_line_number(capsys, tmp_path, f30k):
    root = f30k()
    caps = root / "f30k_precomp/train_caps.txt"
    lines = caps.read_text().splitlines()
    lines[6] = "a dog " * 1_000_000  # 6 MB on line 7
    caps.write_text("\n".join(lines) + "\n")
    code, _, err = run_probe(capsys, root, tmp_path / "r", "--noise", "0")
    assert_error(code, err, f"{caps}:7:", "5999999 characters", "at most 2000")  # stripped: 6 MB less the last space


def test_a8_global_feature_captions_are_bounded_too(tmp_path):
    from ncbench.data.globalfeat import read_token_captions
    from ncbench.errors import DataError

    (tmp_path / "caps.txt").write_text("im0#0\ta dog\n\nim1#0\t" + "x" * 2001 + "\n")
    with pytest.raises(DataError, match=r"caps\.txt:3: a caption of 2001 characters"):
        read_token_captions(tmp_path / "caps.txt", ["im0", "im1"], 1)


@pytest.mark.parametrize("value,words", [
    ('"abc"', ["word 'dog' has index 'abc'", "integers"]),  # A10
    ("1000000", ["word 'dog' has index 1000000", "indices in [0, "]),  # A11
    ("-5", ["word 'dog' has index -5"]),  # A11
    ("4.0", ["word 'dog' has index 4.0"]),
    ("3", ["share index 3"]),  # '<unk>' is 3
])
def test_a10_a11_vocabulary_indices_must_be_integers_in_range(capsys, tmp_path, f30k, value, words):
    root = f30k()
    vocab = root / "vocab/f30k_precomp_vocab.json"
    data = json.loads(vocab.read_text())
    text = json.dumps(data["word2idx"])
    data = json.loads(text[:-1] + f', "dog": {value}}}')
    vocab.write_text(json.dumps({"word2idx": data}))
    code, _, err = run_probe(capsys, root, tmp_path / "r", "--noise", "0")
    assert_error(code, err, str(vocab), *words)


@pytest.mark.parametrize("name", ["train_caps.txt", "f30k_precomp_vocab.json", "train_ims.npy"])
def test_a13_an_unreadable_file_is_named(capsys, tmp_path, f30k, monkeypatch, name):
    root = f30k()
    denied = lambda path: PermissionError(errno.EACCES, "Permission denied", str(path))  # noqa: E731
    read_text, load = Path.read_text, np.load

    def guarded_read_text(self, *a, **k):
        if self.name == name:
            raise denied(self)
        return read_text(self, *a, **k)

    def guarded_load(file, *a, **k):
        if Path(file).name == name:
            raise denied(file)
        return load(file, *a, **k)

    monkeypatch.setattr(Path, "read_text", guarded_read_text)
    monkeypatch.setattr(np, "load", guarded_load)
    code, _, err = run_probe(capsys, root, tmp_path / "r", "--noise", "0")
    assert_error(code, err, name, "cannot read", "Permission denied")


# -- F5: options (C5) -----------------------------------------------------------------------------------
@pytest.mark.parametrize("opt,words", [
    ("epochs=0", "option epochs: must be at least 1, got 0"),
    ("epochs=-1", "option epochs: must be at least 1, got -1"),
    ("batch_size=0", "option batch_size: must be at least 2, got 0"),
    ("lr=nan", "option lr: must be a finite number, got nan"),
    ("lr=inf", "option lr: must be a finite number, got inf"),
    ("lr=-0.1", "option lr: must be above 0, got -0.1"),
])
def test_c5_method_options_out_of_range(capsys, tmp_path, opt, words):
    code, _, err = cli(capsys, "run", "--dataset", "synthetic-small", "--method-opt", opt, "--noise", "0.2",
                       "--results", str(tmp_path / "r"), "--threads", "1", "--no-progress")
    assert_error(code, err, words)
    assert not (tmp_path / "r").exists()


def test_c5_range_checks_spare_defaults_and_reach_backbones():
    """probe and CRCL keep an unused epochs = 0 by default: not refused; a backbone option is checked."""
    from ncbench.engine.method import build_config
    from ncbench.errors import ConfigError
    from ncbench.registry import BACKBONES, METHODS

    probe = METHODS.get("probe")
    assert build_config(probe.Config, {"epochs": 0, "alphas": "1,2"}).epochs == 0
    with pytest.raises(ConfigError, match=r"option alphas: must be a finite number, got \(1\.0, nan\)"):
        build_config(probe.Config, {"alphas": "1,nan"})
    with pytest.raises(ConfigError, match="option embed_dim: must be at least 1, got -4"):
        build_config(BACKBONES.get("vse_light").Config, {"embed_dim": "-4"})


# -- F5: folders and the file system (C8, C8d/H5/J4/K3, C9, C10b) ------------------------------------------
@pytest.mark.parametrize("argv,option", [
    (["run", "--dataset", "synthetic-small", "--results", "{f}"], "--results"),  # C8
    (["run", "--dataset", "synthetic-small", "--results", "{f}/sub"], "--results"),
    (["status", "--dataset", "synthetic-small", "--results", "{f}"], "--results"),
    (["leaderboard", "--out", "{f}"], "--out"),  # C8d
    (["new-method", "mymethod", "--dir", "{f}"], "--dir"),  # H5
    (["submit", "{d}", "--dest", "{f}"], "--dest"),  # K3
    (["report", "{d}", "--out", "{f}/pages"], "--out"),
])
def test_c8_a_file_where_a_folder_is_meant(capsys, tmp_path, argv, option):
    f = tmp_path / "plain-file"
    f.write_text("not a folder\n")
    code, _, err = cli(capsys, *(a.format(f=f, d=tmp_path) for a in argv))
    assert_error(code, err, option, str(f), "is a file, not a folder")
    assert f.read_text() == "not a folder\n"


def test_j4_noise_make_out_is_a_folder(capsys, tmp_path):
    code, _, err = cli(capsys, "noise", "make", "--captions", "100", "--ratio", "0.2", "--out", str(tmp_path))
    assert_error(code, err, "--out", str(tmp_path), "is a folder, not a file")


def test_c9_a_read_only_results_folder(capsys, tmp_path, monkeypatch):
    """Creating a folder below the results folder is denied, as in a read-only folder without root."""
    results = tmp_path / "ro"
    results.mkdir()
    mkdir = os.mkdir

    def denied(path, *a, **k):
        if str(path).startswith(str(results) + os.sep):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return mkdir(path, *a, **k)

    monkeypatch.setattr(os, "mkdir", denied)
    code, _, err = cli(capsys, "run", "--dataset", "synthetic-small", "--methods", "probe", "--noise", "0.2",
                       "--results", str(results), "--threads", "1", "--no-progress")
    assert_error(code, err, "Permission denied: " + str(results))


def test_c10b_no_space_left_without_a_file_names_the_folders(capsys, tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    code, _, err = cli(capsys, "run", "--dataset", "synthetic-small", "--methods", "probe", "--noise", "0.2",
                       "--results", str(tmp_path / "r"), "--threads", "1", "--no-progress")
    assert_error(code, err, "No space left on device", str(tmp_path / "r"))


def test_os_errors_name_their_files_and_bugs_stay_internal_errors(capsys, monkeypatch):
    import ncbench.cli as cli_module

    def rename_failed(args):
        raise OSError(errno.EXDEV, "Invalid cross-device link", "/a/x.json", None, "/b/x.json")

    monkeypatch.setitem(cli_module.COMMANDS, "list", rename_failed)
    code, _, err = cli(capsys, "list")
    assert_error(code, err, "Invalid cross-device link: /a/x.json -> /b/x.json")

    def bug(args):
        raise MemoryError("Unable to allocate 72.8 TiB")

    monkeypatch.setitem(cli_module.COMMANDS, "list", bug)
    code, _, err = cli(capsys, "list")
    assert code == 1 and err.startswith("ncbench: internal error: MemoryError")
