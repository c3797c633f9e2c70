"""The precomp loader, tokenizer/vocabulary and the synthetic dataset."""

import hashlib
import json

import numpy as np
import pytest

from ncbench.data.cards import SyntheticCard
from ncbench.data.precomp import load_split
from ncbench.data.synthetic import SyntheticSpec, ensure_synthetic
from ncbench.data.vocab import END, START, UNK, Vocabulary, tokenize
from ncbench.errors import DataError

VOCAB = Vocabulary.build([f"a photo number {i} with caption {k} ." for i in range(10) for k in range(5)], threshold=1)


# -- loader ------------------------------------------------------------------------------------
@pytest.mark.parametrize("per_caption,regions", [(False, None), (True, None), (False, 4)])
def test_layouts_load(tmp_path, make_precomp, per_caption, regions):
    feats, caps = make_precomp(tmp_path, "train", 10, per_caption=per_caption, regions=regions)
    s = load_split(tmp_path, "train", VOCAB)
    assert s.n_images == 10 and s.n_captions == 50
    assert s.im_div == (1 if per_caption else 5)
    assert isinstance(s.images, np.memmap)  # memory-mapped, not read into RAM
    assert s.images.shape == feats.shape
    assert s.caption_to_row()[7] == (7 if per_caption else 1)
    # one row per distinct image, and it is that image's features
    rows = s.image_rows()
    assert len(rows) == 10 and np.array_equal(s.images[rows[3]], feats[15 if per_caption else 3])
    assert s.tokens[0][0] == START and s.tokens[0][-1] == END


def test_tsv_captions(tmp_path):
    np.save(tmp_path / "test_ims.npy", np.zeros((3, 4), np.float32))
    (tmp_path / "test_caps.tsv").write_text("1_a\ta photo .\n2_b\tanother photo\n3_c\tthird one\n")
    s = load_split(tmp_path, "test", VOCAB, captions_per_image=1)
    assert s.captions[1] == "another photo" and s.im_div == 1


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match="dataset folder not found"):
        load_split(tmp_path / "nope", "train", VOCAB)
    with pytest.raises(DataError, match=r"train_ims\.npy: feature file not found"):
        load_split(tmp_path, "train", VOCAB)
    np.save(tmp_path / "train_ims.npy", np.zeros((2, 3), np.float32))
    with pytest.raises(DataError, match=r"train_caps\.txt: caption file not found"):
        load_split(tmp_path, "train", VOCAB)


def test_truncated_npy(tmp_path, make_precomp):
    make_precomp(tmp_path, "train", 10)
    path = tmp_path / "train_ims.npy"
    path.write_bytes(path.read_bytes()[:-17])
    with pytest.raises(DataError, match=r"train_ims\.npy: truncated"):
        load_split(tmp_path, "train", VOCAB)


def test_wrong_rank_and_dtype(tmp_path, make_precomp):
    make_precomp(tmp_path, "train", 10)
    np.save(tmp_path / "train_ims.npy", np.zeros(10, np.float32))
    with pytest.raises(DataError, match=r"rank 2 \(N, D\) or 3"):
        load_split(tmp_path, "train", VOCAB)
    np.save(tmp_path / "train_ims.npy", np.zeros((10, 2), np.int64))
    with pytest.raises(DataError, match="expected float features"):
        load_split(tmp_path, "train", VOCAB)


def test_caption_count_mismatch(tmp_path, make_precomp):
    make_precomp(tmp_path, "train", 10)
    caps = (tmp_path / "train_caps.txt").read_text().splitlines()
    (tmp_path / "train_caps.txt").write_text("\n".join(caps[:45]) + "\n")
    with pytest.raises(DataError, match=r"train_caps\.txt: expected 50 captions .* found 45"):
        load_split(tmp_path, "train", VOCAB)
    (tmp_path / "train_caps.txt").write_text("\n".join(caps[:48]) + "\n")
    with pytest.raises(DataError, match="not a multiple of 5"):
        load_split(tmp_path, "train", VOCAB)


# -- tokenizer and vocabulary --------------------------------------------------------------------
@pytest.mark.parametrize("text,tokens", [
    ("A dog's toy, isn't it?", ["a", "dog", "'s", "toy", ",", "is", "n't", "it", "?"]),
    ("Two well-known men walk 1,000 miles at 12:45.", ["two", "well-known", "men", "walk", "1,000", "miles", "at", "12:45", "."]),
    ('A sign says "Hello" .', ["a", "sign", "says", "``", "hello", "''", "."]),
    ("I cannot see", ["i", "can", "not", "see"]),
])
def test_tokenize_cases(text, tokens):
    assert tokenize(text) == tokens


def test_tokenizer_matches_nltk_on_real_captions(shared_data):
    nltk = pytest.importorskip("nltk.tokenize")
    ref = nltk.NLTKWordTokenizer()
    files = sorted((shared_data / "scan_precomp_text").glob("*/*_caps.txt"))
    lines = [line.strip() for f in files for line in f.read_text().splitlines()]
    assert len(lines) > 40000
    lines = lines[::4]  # every fourth caption of every file: 10,000+, a quarter of NLTK's time
    same = sum(tokenize(c) == ref.tokenize(c.lower()) for c in lines)
    assert same / len(lines) >= 0.995, f"{len(lines) - same} of {len(lines)} captions differ from NLTK"


def test_real_scan_vocabularies_and_captions_load(shared_data):
    v = Vocabulary.load(shared_data / "scan_precomp_text/vocab/f30k_precomp_vocab.json")
    assert len(v) == 8480 and v.word2idx["<unk>"] == UNK
    caps = (shared_data / "scan_precomp_text/f30k_precomp/test_caps.txt").read_text().splitlines()
    assert len(caps) == 5000
    unk_rate = np.mean([t == UNK for c in caps for t in v.encode(c)[1:-1]])
    assert unk_rate < 0.02  # the tokenizer produces the words the SCAN vocabulary was built from


def test_vocab_build_threshold_and_roundtrip(tmp_path):
    v = Vocabulary.build(["a dog runs", "a dog sits", "a cat"], threshold=2)
    assert list(v.word2idx)[4:] == ["a", "dog"]
    assert v.encode("a cat").tolist() == [START, v.word2idx["a"], UNK, END]
    v.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json").word2idx == v.word2idx
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="word2idx"):
        Vocabulary.load(tmp_path / "bad.json")


# -- synthetic dataset -----------------------------------------------------------------------------
def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_synthetic_is_deterministic_and_in_precomp_layout(tmp_path):
    spec = SyntheticSpec(n_train=30, n_dev=10, n_test=20)
    a = ensure_synthetic(tmp_path / "a", spec)
    b = ensure_synthetic(tmp_path / "b", spec)
    assert _digest(a) == _digest(b)
    assert _digest(ensure_synthetic(tmp_path / "c", SyntheticSpec(n_train=30, n_dev=10, n_test=20, seed=1))) != _digest(a)
    ds = SyntheticCard("s", "", spec=spec).load(a, tmp_path)
    assert (ds.train.im_div, ds.dev.im_div, ds.test.im_div) == (5, 1, 5)  # both stored layouts
    assert ds.train.n_captions == 150 and ds.dev.n_rows == 50
    assert json.loads((a / "meta.json").read_text())["spec"]["n_train"] == 30


def test_a_modified_cached_synthetic_split_is_refused(tmp_path):
    """A18b: a cached split altered after generation is detected by the sha256 in meta.json."""
    spec = SyntheticSpec(n_train=30, n_dev=10, n_test=20)
    out = ensure_synthetic(tmp_path, spec)
    assert ensure_synthetic(tmp_path, spec) == out  # untouched: accepted
    feats = np.load(out / "test_ims.npy")
    feats[3, 0] += 1.0
    np.save(out / "test_ims.npy", feats)
    with pytest.raises(DataError, match=r"test_ims\.npy: cached synthetic file was modified .*delete .* to have it "
                                        r"generated again"):
        ensure_synthetic(tmp_path, spec)
    (out / "test_ims.npy").unlink()
    with pytest.raises(DataError, match=r"test_ims\.npy: cached synthetic file unreadable"):
        ensure_synthetic(tmp_path, spec)


def test_a_cache_generated_before_hashes_is_checked_once_against_a_fresh_generation(tmp_path):
    spec = SyntheticSpec(n_train=30, n_dev=10, n_test=20)
    out = ensure_synthetic(tmp_path, spec)
    meta = json.loads((out / "meta.json").read_text())
    recorded = meta.pop("files")
    assert recorded["test_caps.txt"] == hashlib.sha256((out / "test_caps.txt").read_bytes()).hexdigest()
    (out / "meta.json").write_text(json.dumps(meta))  # as written before the hashes were recorded
    ensure_synthetic(tmp_path, spec)
    assert json.loads((out / "meta.json").read_text())["files"] == recorded
    (out / "meta.json").write_text(json.dumps(meta))
    caps = (out / "train_caps.txt").read_text().splitlines()
    (out / "train_caps.txt").write_text("\n".join(caps[1:] + caps[:1]) + "\n")
    with pytest.raises(DataError, match=r"train_caps\.txt: cached synthetic file was modified"):
        ensure_synthetic(tmp_path, spec)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # the fresh copy was removed


def test_batches_gather_the_noisy_rows_and_cuda_runs_pin_them(tmp_path, make_precomp):
    """A training batch holds, for each caption id, the features of the image its noisy index points
    at (checked against plain indexing of the array); CUDA runs ask for page-locked batches."""
    import torch

    from ncbench.data.batching import TrainingSet, gather_rows
    from ncbench.data.noise import make_noise_index
    from ncbench.engine.context import make_context

    feats, _ = make_precomp(tmp_path, "train", 12, regions=3)
    split = load_split(tmp_path, "train", VOCAB)
    noise = make_noise_index(split.caption_to_row(), 0.5, seed=3)
    ids = np.array([7, 0, 59, 7, 31])
    batch = TrainingSet(split, noise).batch(ids)
    assert np.array_equal(batch.images.numpy(), feats[noise.t2i[ids]])
    assert np.array_equal(gather_rows(feats, np.array([4, 1, 4])).numpy(), feats[[4, 1, 4]])
    assert [len(split.tokens[i]) for i in ids] == batch.lengths.tolist()

    class Data:  # what make_context reads of a loaded dataset
        train, dev, vocab = split, None, ["<pad>"] * 10

    for device, pinned in (("cpu", False), ("cuda", True)):  # nothing is allocated on the device here
        ctx = make_context(Data, noise, "vse_light", {}, torch.device(device), torch.Generator())
        assert ctx.train.pin_memory is pinned
