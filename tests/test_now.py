"""The NoW card (Noise of Web, PC2): its loader, ``ncbench data check`` and a run, on files of the
release's format written here (``{split}_ims.npy`` of 36 × 768 regions, ``{split}_caps_bert.txt``
of comma-separated token ids, ``{split}_ids.txt``, ``vocab/now100k_precomp_vocab_bert.json``).

The expected tokens are written out by hand from PC2's ``data.get_dataset``: ``<start>`` (1), the
line's ids in order (empty pieces skipped), ``<end>`` (2)."""

import json

import numpy as np
import pytest

from ncbench.cli import main
from ncbench.errors import DataError

VOCAB_WORDS = 12  # the four SCAN specials and eight words


def write_vocab(data_root, tokenizer="bert", n_words=VOCAB_WORDS):
    words = ["<pad>", "<start>", "<end>", "<unk>"] + [f"w{k}" for k in range(4, n_words)]
    path = data_root / f"vocab/now100k_precomp_vocab_{tokenizer}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"word2idx": {w: i for i, w in enumerate(words)},
                                "idx2word": {str(i): w for i, w in enumerate(words)}, "idx": n_words}))


def caption_line(i):
    """Image ``i``'s caption: ids 4 + i % 8 and 5 + i % 7, a trailing comma as in the release."""
    return f"{4 + i % 8},{5 + i % 7},"


def write_split(folder, split, n, tokenizer="bert", seed=0):
    """One split of ``n`` images; features written sparse (a header and a hole) when large."""
    folder.mkdir(parents=True, exist_ok=True)
    if n > 100:  # `data check` reads only the header
        feats = np.lib.format.open_memmap(folder / f"{split}_ims.npy", mode="w+", dtype=np.float32, shape=(n, 36, 768))
        del feats
    else:
        feats = np.random.default_rng(seed).random((n, 36, 768), dtype=np.float32)
        np.save(folder / f"{split}_ims.npy", feats)
    (folder / f"{split}_caps_{tokenizer}.txt").write_text("".join(caption_line(i) + "\n" for i in range(n)))
    (folder / f"{split}_ids.txt").write_text("".join(f"{100 + i}\n" for i in range(n)))


def write_now(data_root, sizes=(40, 10, 10), folder="h5100k_precomp"):
    write_vocab(data_root)
    for seed, (split, n) in enumerate(zip(("train", "dev", "test"), sizes)):
        write_split(data_root / folder, split, n, seed=seed)
    return data_root


# ---------------------------------------------------------------- loader


@pytest.mark.parametrize("folder", ["h5100k_precomp", "now100k_precomp"])  # the release's name, PC2's
def test_now_loads_token_id_captions_as_pc2_does(tmp_path, folder):
    from ncbench.registry import DATASETS

    (tmp_path / folder).mkdir(parents=True)
    write_vocab(tmp_path)
    write_split(tmp_path / folder, "train", 3)
    (tmp_path / folder / "train_caps_bert.txt").write_text("4,5,\n11, 6,7\n,9,,\n")
    write_split(tmp_path / folder, "dev", 2)
    write_split(tmp_path / folder, "test", 2)
    ds = DATASETS.get("now").load(tmp_path, tmp_path)
    assert ds.root == tmp_path / folder
    assert [t.tolist() for t in ds.train.tokens] == [[1, 4, 5, 2], [1, 11, 6, 7, 2], [1, 9, 2]]
    assert ds.train.captions == ["w4 w5", "w11 w6 w7", "w9"]
    assert ds.train.captions_per_image == 1 and ds.train.im_div == 1 and ds.train.n_images == 3
    assert ds.train.images.shape == (3, 36, 768) and len(ds.vocab) == VOCAB_WORDS
    assert [t.tolist() for t in ds.test.tokens] == [[1, 4, 5, 2], [1, 5, 6, 2]]


def test_now_other_tokenisers_read_their_own_files(tmp_path):
    from ncbench.registry import DATASETS

    folder = tmp_path / "h5100k_precomp"
    write_vocab(tmp_path, "jieba", n_words=8)
    for split in ("train", "dev", "test"):
        write_split(folder, split, 2, tokenizer="jieba")
    (folder / "train_caps_jieba.txt").write_text("7,\n4,4,4\n")
    ds = DATASETS.get("now-jieba").load(tmp_path, tmp_path)
    assert [t.tolist() for t in ds.train.tokens] == [[1, 7, 2], [1, 4, 4, 4, 2]] and len(ds.vocab) == 8
    with pytest.raises(DataError, match="now100k_precomp_vocab_bert.json: vocabulary file not found"):
        DATASETS.get("now").load(tmp_path, tmp_path)  # the bert card wants the bert files


@pytest.mark.parametrize("line,message", [
    ("4,12,", "train_caps_bert.txt:2: token id 12 is outside the vocabulary (ids must be below 12)"),
    ("4,-1", "train_caps_bert.txt:2: token id '-1' is not a non-negative integer"),
    ("4,99999999999999999999", "train_caps_bert.txt:2: token id 99999999999999999999 is outside the vocabulary"),
    ("4 5", "train_caps_bert.txt:2: token id '4 5' is not a non-negative integer"),
    ("hello", "train_caps_bert.txt:2: token id 'hello' is not a non-negative integer"),
])
def test_now_bad_token_ids_are_one_line_naming_file_and_line(tmp_path, capsys, line, message):
    root = write_now(tmp_path / "data", sizes=(3, 2, 2))
    (root / "h5100k_precomp/train_caps_bert.txt").write_text(f"4,5\n{line}\n6\n")
    code = main(["run", "--dataset", "now", "--data-root", str(root), "--methods", "vanilla", "--noise", "0",
                 "--results", str(tmp_path / "r"), "--no-progress", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert err.count("\n") == 1 and err.startswith("ncbench: error: ") and "Traceback" not in err


def test_now_caption_count_must_match_the_image_rows(tmp_path):
    from ncbench.registry import DATASETS

    root = write_now(tmp_path, sizes=(3, 2, 2))
    (root / "h5100k_precomp/train_caps_bert.txt").write_text("4\n5\n")
    with pytest.raises(DataError, match=r"train_caps_bert.txt: expected 3 captions .* found 2"):
        DATASETS.get("now").load(root, tmp_path)


def test_now_refuses_injected_noise_as_pc2_does(tmp_path, capsys):
    """PC2's run.py sets noise_ratio 0 for now100k_precomp: the noise is the web's."""
    root = write_now(tmp_path / "data", sizes=(3, 2, 2))
    for extra in (["--noise", "0.2"], ["--noise", "0", "--noise-type", "image"]):
        code = main(["run", "--dataset", "now", "--data-root", str(root), "--methods", "vanilla", *extra,
                     "--results", str(tmp_path / "r")])
        err = capsys.readouterr().err
        assert code == 2 and "dataset 'now' carries real noise only" in err, err


# ---------------------------------------------------------------- ncbench data check


def write_release(data_root):
    """A NoW folder of the release's exact sizes: 98,000 / 1,000 / 1,000 images (train sparse)."""
    write_vocab(data_root)
    for split, n in (("train", 98_000), ("dev", 1_000), ("test", 1_000)):
        write_split(data_root / "h5100k_precomp", split, n)
    return data_root


def check(data_root):
    from ncbench.data.check import check_dataset
    from ncbench.registry import DATASETS

    return check_dataset(DATASETS.get("now"), data_root)


def test_data_check_passes_the_release_layout(tmp_path, capsys):
    root = write_release(tmp_path)
    findings = check(root)
    names = [f.path.name for f in findings]
    assert names == ["now100k_precomp_vocab_bert.json"] + [
        f"{s}_{f}" for s in ("train", "dev", "test") for f in ("ims.npy", "caps_bert.txt", "ids.txt")]
    assert all(f.ok for f in findings), findings
    assert findings[0].message == "12 words (PC2's README gives 32,702 for bert)"
    assert findings[1].message == "(98000, 36, 768) float32, one row per image"
    assert findings[2].message == "98000 captions, token ids below 12"
    assert main(["data", "check", "--dataset", "now", "--root", str(root)]) == 0
    assert "now: all 10 file(s) as the card describes" in capsys.readouterr().out


def test_data_check_names_each_broken_now_file(tmp_path):
    root = write_release(tmp_path)
    folder = root / "h5100k_precomp"
    (folder / "test_ims.npy").unlink()  # missing
    (folder / "test_ids.txt").unlink()
    np.save(folder / "dev_ims.npy", np.zeros((1_000, 36, 2048), np.float32))  # F30K's feature size
    (folder / "dev_caps_bert.txt").write_text("4,5\n" * 7 + "4,99,\n" + "4\n" * 992)  # an id past the vocabulary
    (folder / "train_caps_bert.txt").write_text("4\n" * 97_999)  # a caption short
    (folder / "train_ids.txt").write_text("1\n" * 98_001)
    bad = {f.path.name: f.message for f in check(root) if not f.ok}
    assert bad == {
        "test_ims.npy": "missing (expected the split's image features, .npy)",
        "test_ids.txt": "missing (expected 1000 lines: each image's index in NoW's original collection)",
        "dev_ims.npy": "shape (1000, 36, 2048), expected (1000, 36, 768)",
        "dev_caps_bert.txt": "line 8: token id 99 is outside the vocabulary (ids must be below 12)",
        "train_caps_bert.txt": "97999 captions, expected 98000 (one per image)",
        "train_ids.txt": "98001 lines, expected 98000 (one per image)",
    }


def test_data_check_now_vocabulary_and_missing_captions(tmp_path):
    root = write_release(tmp_path)
    (root / "h5100k_precomp/dev_caps_bert.txt").unlink()
    vocab = root / "vocab/now100k_precomp_vocab_bert.json"
    vocab.write_text(json.dumps({"word2idx": {"<start>": 0, "<pad>": 1, "<end>": 2, "<unk>": 3}}))
    bad = {f.path.name: f.message for f in check(root) if not f.ok}
    assert bad == {
        "now100k_precomp_vocab_bert.json": "vocabulary must map '<pad>' to 0 (SCAN layout)",
        "dev_caps_bert.txt": "missing (expected 1000 captions as comma-separated token ids, one per line)",
    }
    vocab.unlink()
    bad = {f.path.name: f.message for f in check(root) if not f.ok}
    assert bad["now100k_precomp_vocab_bert.json"] == "missing (expected SCAN vocabulary JSON with word2idx)"


# ---------------------------------------------------------------- a run


def test_one_epoch_run_on_now(tmp_path):
    root = write_now(tmp_path / "data")
    results = tmp_path / "r"
    argv = ["run", "--dataset", "now", "--data-root", str(root), "--methods", "vanilla", "--backbones", "vse_bow",
            "--noise", "0", "--method-opt", "epochs=1", "--results", str(results), "--no-progress",
            "--threads", "1", "--device", "cpu"]
    assert main(argv) == 0
    (path,) = results.rglob("seed-0.json")
    r = json.loads(path.read_text())
    assert r["status"] == "ok" and r["identity"]["dataset"] == "now" and r["identity"]["backbone"] == "vse_bow"
    assert r["identity"]["noise_realised_ratio"] == 0 and r["test"]["split"] == "test"
    ranks = r["ranks"]  # one ranking of the 10 test images against their 10 captions, both ways
    assert len(ranks["i2t"]) == len(ranks["t2i"]) == 10
    recalls = [100 * np.mean(np.asarray(ranks[d]) < k) for d in ("i2t", "t2i") for k in (1, 5, 10)]
    assert r["test"]["full"]["rsum"] == pytest.approx(sum(recalls))


def test_now_tokens_equal_pc2s_get_dataset_live(tmp_path, monkeypatch):
    """The live layer: PC2's own ``data.get_dataset`` and ``vocab.deserialize_vocab`` (checkout
    ``$NCBENCH_OFFICIAL/PC2-NoiseofWeb``, alipay/PC2-NoiseofWeb@c7ea41a) read the same folder."""
    import csv
    import os
    from pathlib import Path

    from ncbench.registry import DATASETS

    official = Path(os.environ.get("NCBENCH_OFFICIAL", "/nonexistent")) / "PC2-NoiseofWeb/pc2"
    if not (official / "data.py").is_file():
        pytest.skip("official alipay/PC2-NoiseofWeb@c7ea41a not available ($NCBENCH_OFFICIAL/PC2-NoiseofWeb/pc2)")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # the repository root: tests.*
    from tests.parity.official import extract

    root = write_now(tmp_path, sizes=(5, 2, 2), folder="now100k_precomp")  # PC2 reads --data_name's folder
    (root / "now100k_precomp/train_caps_bert.txt").write_text("4,5,\n11,,6\n9\n7,7,7,7,\n8,\n")
    pc2 = extract(official / "vocab.py", ["Vocabulary", "deserialize_vocab"], {"json": json})
    get_dataset = extract(official / "data.py", ["get_dataset"], {"os": os, "csv": csv, "nltk": None}).get_dataset
    vocab = pc2.deserialize_vocab(str(root / "vocab/now100k_precomp_vocab_bert.json"))
    ds = DATASETS.get("now").load(root, tmp_path)
    for split in ("train", "dev", "test"):
        tokens, images = get_dataset(str(root), "now100k_precomp", split, vocab, "bert")
        ours = {"train": ds.train, "dev": ds.dev, "test": ds.test}[split]
        assert [t.tolist() for t in ours.tokens] == tokens
        np.testing.assert_array_equal(ours.images, images)
