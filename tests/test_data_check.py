"""``ncbench data check``: fixture folders (valid, missing file, wrong shape, wrong caption count,
truncated file, a multi-GB memory map) and the real SCAN caption files and vocabularies."""


def _tiny_card():
    from ncbench.data.cards import DatasetCard, PrecompLayout

    return DatasetCard("tiny", "", folder="tiny_precomp", vocab_file="vocab/tiny_vocab.json",
                       layout=PrecompLayout((("train", 6), ("dev", 2), ("test", 2)), feature_shape=(4, 8), vocab_words=3))


def _tiny_folder(root, make_precomp):
    import json

    for split, n in (("train", 6), ("dev", 2), ("test", 2)):
        make_precomp(root / "tiny_precomp", split, n, regions=4, dim=8, per_caption=split == "dev")
    (root / "vocab").mkdir(parents=True)
    (root / "vocab/tiny_vocab.json").write_text(json.dumps({"word2idx": {"a": 1, "b": 2, "c": 3}}))
    return root


def test_data_check_passes_a_valid_folder_and_names_each_broken_file(tmp_path, make_precomp):
    import numpy as np

    from ncbench.data.check import check_dataset

    root = _tiny_folder(tmp_path, make_precomp)
    findings = check_dataset(_tiny_card(), root)
    assert len(findings) == 7 and all(f.ok for f in findings), findings
    assert any("one row per caption" in f.message for f in findings)  # dev stored once per caption
    folder = root / "tiny_precomp"
    (folder / "test_ims.npy").unlink()  # missing
    np.save(folder / "dev_ims.npy", np.zeros((10, 4, 9), np.float32))  # wrong feature size
    (folder / "train_caps.txt").write_text("one caption\n" * 29)  # 29 instead of 30
    data = (folder / "train_ims.npy").read_bytes()
    bad = {f.path.name: f.message for f in check_dataset(_tiny_card(), root) if not f.ok}
    assert bad == {
        "test_ims.npy": "missing (expected the split's image features, .npy)",
        "dev_ims.npy": "shape (10, 4, 9), expected (2, 4, 8) or (10, 4, 8)",
        "train_caps.txt": "29 captions, expected 30 (6 images × 5)",
    }
    (folder / "train_ims.npy").write_bytes(data[: len(data) // 2])  # truncated
    bad = {f.path.name: f.message for f in check_dataset(_tiny_card(), root) if not f.ok}
    assert bad["train_ims.npy"].startswith("truncated or not a .npy array")


def test_data_check_reads_only_the_header_of_a_large_feature_file(tmp_path, make_precomp):
    """A 4 GB (sparse) memmap of the right shape is checked from its header."""
    import numpy as np

    from ncbench.data.cards import DatasetCard, PrecompLayout
    from ncbench.data.check import check_dataset

    root = _tiny_folder(tmp_path, make_precomp)
    big = np.lib.format.open_memmap(root / "tiny_precomp/train_ims.npy", mode="w+", dtype=np.float32,
                                    shape=(1_000_000, 4, 256))
    del big
    card = DatasetCard("tiny", "", folder="tiny_precomp", vocab_file="vocab/tiny_vocab.json",
                       layout=PrecompLayout((("train", 1_000_000),), feature_shape=(4, 256)))
    (root / "tiny_precomp/train_caps.txt").write_text("c\n" * 5_000_000)
    findings = check_dataset(card, root)
    assert all(f.ok for f in findings), findings


def test_data_check_on_the_real_caption_files(shared_data, capsys):
    from ncbench.cli import main

    assert main(["data", "check", "--dataset", "f30k", "--root", str(shared_data / "scan_precomp_text")]) == 1
    out = capsys.readouterr().out
    assert "ok    " + str(shared_data / "scan_precomp_text/f30k_precomp/test_caps.txt") + ": 5000 captions" in out
    assert "dev_caps.txt: 5070 captions" in out and "f30k_precomp_vocab.json: 8480 words" in out
    assert "FAIL  " + str(shared_data / "scan_precomp_text/f30k_precomp/test_ims.npy") + ": missing" in out
    assert main(["data", "check", "--dataset", "coco", "--root", str(shared_data / "scan_precomp_text")]) == 1
    out = capsys.readouterr().out
    assert "testall_caps.txt: 25000 captions" in out and "coco_precomp_vocab.json: 11352 words" in out
