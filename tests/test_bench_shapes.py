"""``ncbench bench`` at the papers' shapes: random data shaped like F30K / COCO / CC152K, the
vanilla reference column and the vectorised-vs-per-caption pair-kernel timing."""

import json

import numpy as np
import pytest

from ncbench.cli import main
from ncbench.data.shaped import CAPTION_WORDS, shaped_dataset
from ncbench.errors import ConfigError
from ncbench.throughput import PhaseTiming, Throughput, relative_to_vanilla, time_pair_kernel


def test_f30k_shaped_data_has_the_cards_shapes_and_consistent_captions():
    ds = shaped_dataset("f30k", n_train=3, n_test=2)
    assert ds.train.images.shape == (3, 36, 2048) and ds.test.images.shape == (2, 36, 2048)
    assert ds.train.images.dtype == np.float32 and ds.train.images.min() >= 0  # rectified, like bottom-up features
    assert len(ds.vocab) == 8480  # the SCAN F30K vocabulary size
    assert ds.train.n_captions == 15 and ds.train.n_images == 3
    assert list(ds.train.caption_to_row()) == [0] * 5 + [1] * 5 + [2] * 5
    for caption, tokens in zip(ds.train.captions, ds.train.tokens):
        words = caption.split()
        assert CAPTION_WORDS[0] <= len(words) <= CAPTION_WORDS[1]
        assert tokens[0] == 1 and tokens[-1] == 2  # <start> … <end>
        assert [ds.vocab.idx2word[int(i)] for i in tokens[1:-1]] == words  # no word lost to <unk>


def test_shaped_data_is_seeded_and_follows_each_card():
    a, b = shaped_dataset("coco", 2, 2, seed=3), shaped_dataset("coco", 2, 2, seed=3)
    assert np.array_equal(a.train.images, b.train.images) and a.test.captions == b.test.captions
    assert len(a.vocab) == 11352 and shaped_dataset("coco", 2, 2, seed=4).test.captions != a.test.captions
    cc = shaped_dataset("cc152k", 4, 2)
    assert cc.train.n_captions == 4 and cc.train.captions_per_image == 1  # one caption per image
    with pytest.raises(ConfigError, match="f30k"):
        shaped_dataset("synthetic", 2, 2)  # no fixed feature shape: the error lists the shapes there are


def _row(method, backbone, *phases):
    """A method timed at 10 pairs; each phase ``(name, seconds per epoch, pairs trained per network)``."""
    return Throughput(method, backbone, "cpu", 10, [PhaseTiming(name, 0, 1, 10, [s], [0.0], [trained])
                                                    for name, s, trained in phases], 0.1, 2, 10, None)


def test_relative_to_vanilla_divides_each_phase_by_vanilla_on_the_same_backbone():
    rows = [_row("vanilla", "sgr", ("steady", 0.05, [10])),  # 200 pairs/s, all trained
            _row("ncr", "sgr", ("clean", 0.1, [4, 6]), ("clean+noisy", 0.2, [8, 12])),
            _row("ncr", "saf", ("clean", 1.0, [5, 5]))]
    # by hand: ncr clean 10 / 0.1 = 100 pairs/s (0.5×), trained 10 / 0.1 = 100 (0.5×); clean+noisy
    # 10 / 0.2 = 50 (0.25×) but trained 20 / 0.2 = 100 (0.5×); no vanilla on saf
    assert relative_to_vanilla(rows) == {("vanilla", "sgr", "steady"): (1.0, 1.0), ("ncr", "sgr", "clean"): (0.5, 0.5),
                                         ("ncr", "sgr", "clean+noisy"): (0.25, 0.5)}


def test_a_global_embedding_backbone_has_no_pair_kernel_to_time():
    assert time_pair_kernel("vse_light", shaped_dataset("f30k", 3, 2), "cpu", batch=4, rounds=1) is None


def test_bench_at_f30k_shape_reports_vanilla_ratio_and_pair_kernel(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--shape", "f30k", "--backbones", "sgr", "--methods", "vanilla,ncr", "--n-train", "10", "--epochs", "1",
                 "--n-test", "2", "--batch", "8", "--warmup", "0", "--backbone-opt", "embed_dim=32",
                 "--backbone-opt", "sim_dim=16", "--device", "cpu", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "× vanilla" in printed and "per caption (ms)" in printed and "(36, 2048)" in printed
    data = json.loads(out.read_text())
    assert [(r["method"], r["n_train_pairs"]) for r in data["results"]] == [("vanilla", 50), ("ncr", 50)]
    (vanilla,), ncr = data["results"][0]["phases"], data["results"][1]["phases"]
    assert vanilla["relative_to_vanilla"] == 1.0
    for p in ncr:
        assert p["relative_to_vanilla"] == pytest.approx(p["pairs_per_s"] / vanilla["pairs_per_s"], rel=1e-3)
    # the estimate is at F30K's own sizes: 145,000 training pairs, not the 50 timed
    est = data["results"][1]["estimate"]
    assert est["card"] == "f30k" and est["train_scale"] == 2900 and est["epochs"] == {"warm-up": 5, "clean": 20,
                                                                                         "clean+noisy": 20}
    (kernel,) = data["pair_kernels"]
    assert kernel["backbone"] == "sgr" and kernel["batch"] == 8 and kernel["vectorised_ms"] > 0
    assert kernel["speedup"] == pytest.approx(kernel["per_caption_ms"] / kernel["vectorised_ms"], rel=0.01)
    assert data["settings"]["shape"] == "f30k" and data["settings"]["backbone_options"] == {"embed_dim": "32", "sim_dim": "16"}


def test_bench_refuses_what_it_cannot_time_before_timing_anything(capsys):
    assert main(["bench", "--backbones", "sgr", "--n-train", "10", "--n-test", "2", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "sgr" in err and "region features" in err and "Traceback" not in err
    assert main(["bench", "--shape", "mnist"]) == 2
    assert "--shape must be synthetic or one of" in capsys.readouterr().err
