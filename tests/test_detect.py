"""The human-judgment benchmark (``ncbench detect``): judgment files, judged pairs and their batch
context, each method's correspondence estimate against an explicit per-pair batch, the agreement
metrics against scikit-learn / hand-computed values, the leaderboard table, and the CLI on the
real Flickr8k judgments (skipped where ``../shared/data`` is absent)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ncbench.agreement import agreement, auc, spearman
from ncbench.data.batching import pad_tokens
from ncbench.data.globalfeat import ImageTable
from ncbench.data.judgments import (
    JudgedPairs,
    JudgmentSet,
    JudgmentSource,
    build_judged_pairs,
    read_crowd,
    read_expert,
)
from ncbench.data.vocab import Vocabulary
from ncbench.engine.correspondence import PairContext
from ncbench.engine.method import build_config
from ncbench.errors import DataError
from ncbench.kernels import consistency
from ncbench.kernels.complementary import batch_probabilities, match_probability
from ncbench.kernels.losses import per_sample_triplet
from ncbench.kernels.rectify import adaptive_prediction, raw_prediction
from ncbench.registry import METHODS


# -- judgment files ---------------------------------------------------------------------------------
def test_expert_and_crowd_files_give_mean_scores_and_majority_verdicts(tmp_path):
    expert = tmp_path / "expert.txt"
    expert.write_text("a.jpg\tb.jpg#2\t1\t1\t2\n"   # no expert says "describes" → 0
                      "a.jpg\ta.jpg#0\t4\t3\t2\n"   # two of three ≥ 3 → 1
                      "b.jpg\tc.jpg#1\t3\t2\t2\n")  # one of three → 0
    got = read_expert(expert)
    assert [(j.image, j.caption_id) for j in got] == [("a.jpg", "b.jpg#2"), ("a.jpg", "a.jpg#0"), ("b.jpg", "c.jpg#1")]
    assert [j.score for j in got] == pytest.approx([4 / 3, 3.0, 7 / 3])
    assert [j.describes for j in got] == [0.0, 1.0, 0.0]

    crowd = tmp_path / "crowd.txt"
    crowd.write_text("a.jpg\tb.jpg#2\t0\t0\t3\n"
                     "a.jpg\ta.jpg#0\t0.666666\t2\t1\n"
                     "b.jpg\tc.jpg#1\t0.5\t2\t2\n")  # a tie has no verdict
    got = read_crowd(crowd)
    assert [j.score for j in got] == pytest.approx([0.0, 0.666666, 0.5])
    assert got[0].describes == 0.0 and got[1].describes == 1.0 and math.isnan(got[2].describes)


@pytest.mark.parametrize("line, reader, message", [
    ("a.jpg\tb.jpg#2\t1\t5\t2", read_expert, "expert scores must be 1–4"),
    ("a.jpg\tb.jpg#2\t1\t2", read_expert, "expected 5 tab-separated fields"),
    ("a.jpg\tb.jpg\t1\t2\t2", read_expert, "expected 5 tab-separated fields"),
    ("a.jpg\tb.jpg#2\tx\t2\t1", read_crowd, "'x' is not a number"),
    ("a.jpg\tb.jpg#2\t1.5\t2\t1", read_crowd, "expected a fraction in [0, 1]"),
])
def test_malformed_judgment_lines_name_the_file_and_line(tmp_path, line, reader, message):
    path = tmp_path / "j.txt"
    path.write_text("a.jpg\tb.jpg#1\t1\t1\t1\n" + line + "\n")
    with pytest.raises(DataError) as err:
        reader(path)
    assert f"{path}:2" in str(err.value) and message in str(err.value)


# -- judged pairs -------------------------------------------------------------------------------------
def _table() -> ImageTable:
    names = [f"im{i}.jpg" for i in range(12)]
    captions = [[f"picture {i} caption {k} word{i}" for k in range(5)] for i in range(12)]
    rows = {"train": np.arange(0, 4), "dev": np.arange(4, 9), "test": np.arange(9, 12)}
    vocab = Vocabulary.build([c for caps in captions for c in caps], threshold=1)
    feats = np.random.default_rng(0).normal(size=(12, 6)).astype(np.float32)
    return ImageTable(names, feats, captions, rows, vocab, "table")


def test_judged_pairs_are_unique_with_contexts_free_of_second_positives(tmp_path):
    table = _table()
    (tmp_path / "expert.txt").write_text("im9.jpg\tim10.jpg#3\t1\t1\t1\n"
                                         "im5.jpg\tim5.jpg#1\t4\t4\t4\n"
                                         "im0.jpg\tim6.jpg#0\t2\t1\t1\n"
                                         "unknown.jpg\tim1.jpg#0\t4\t4\t4\n")
    (tmp_path / "crowd.txt").write_text("im5.jpg\tim5.jpg#1\t1\t3\t0\n"  # the same pair as an expert one
                                        "im11.jpg\tim9.jpg#4\t0\t0\t3\n")
    judged = build_judged_pairs(table, tmp_path, JudgmentSource("expert.txt", "crowd.txt", context_batch=3))
    assert len(judged) == 4  # 3 expert pairs + 1 new crowd pair; the unknown image is skipped
    assert judged.sets["expert"].skipped == 1 and judged.sets["crowd"].skipped == 0
    assert judged.sets["crowd"].pair[0] == judged.sets["expert"].pair[1]
    expected = [(9, 10, 3), (5, 5, 1), (0, 6, 0), (11, 9, 4)]
    for p, (img, cap_img, k) in enumerate(expected):
        np.testing.assert_array_equal(judged.images[judged.pair_image[p]], table.features[img])
        np.testing.assert_array_equal(judged.tokens[judged.pair_caption[p]], table.vocab.encode(table.captions[cap_img][k]))
    assert judged.heldout.tolist() == [True, False, False, True]
    # the pool holds 4 dev images; each pair's 2 references avoid its image and its caption's image
    pool_rows = [int(np.flatnonzero((table.features == f).all(axis=1))[0]) for f in judged.context_images]
    assert len(pool_rows) == 4 and all(r in range(4, 9) for r in pool_rows)
    assert judged.context.shape == (4, 2) and judged.context_batch == 3
    for p, (img, cap_img, _) in enumerate(expected):
        refs = [pool_rows[c] for c in judged.context[p]]
        assert len(set(refs)) == 2 and img not in refs and cap_img not in refs


def test_a_context_needs_enough_images_in_its_split(tmp_path):
    (tmp_path / "expert.txt").write_text("im9.jpg\tim10.jpg#3\t1\t1\t1\n")
    with pytest.raises(DataError, match="judgment context needs 9 images in the 'dev' split, found 5"):
        build_judged_pairs(_table(), tmp_path, JudgmentSource("expert.txt", context_batch=8))


# -- correspondence in a batch context: against explicit per-pair batches -----------------------------
def _judged_from(ds, n_pairs: int = 9, batch: int = 6, seed: int = 0) -> JudgedPairs:
    """Judged pairs over the test split of a small dataset, each with ``batch − 1`` random dev references."""
    rng = np.random.default_rng(seed)
    test, dev = ds.test, ds.dev
    pool_rows = rng.choice(dev.n_images, batch + 2, replace=False)
    return JudgedPairs(
        images=np.asarray(test.images[test.image_rows()]), tokens=list(test.tokens),
        pair_image=rng.integers(0, test.n_images, n_pairs), pair_caption=rng.integers(0, test.n_captions, n_pairs),
        heldout=np.ones(n_pairs, dtype=bool),
        context_images=np.asarray(dev.images[dev.image_rows()[pool_rows]]),
        context_tokens=[dev.tokens[r * dev.captions_per_image] for r in pool_rows],
        context=np.stack([rng.choice(batch + 2, batch - 1, replace=False) for _ in range(n_pairs)]),
    )


def _explicit_batch(judged: JudgedPairs, p: int):
    """Pair ``p`` and its references as a plain batch (images, padded tokens, lengths)."""
    refs = judged.context[p]
    images = np.concatenate([judged.images[judged.pair_image[p]][None], judged.context_images[refs]])
    tokens, lengths = pad_tokens([judged.tokens[judged.pair_caption[p]], *(judged.context_tokens[r] for r in refs)])
    return torch.from_numpy(images), tokens, lengths


@torch.no_grad()
def _forward(net, judged, p):
    net.eval()
    return net(*_explicit_batch(judged, p))


def _method(name, ctx):
    cls = METHODS.get(name)
    return cls(build_config(cls.Config, {}), ctx)


def test_batch_matrices_equal_a_forward_pass_over_each_explicit_batch(tmp_path, small_context):
    ctx, ds = small_context(tmp_path)
    judged = _judged_from(ds)
    net = ctx.build_backbone()
    pairs = PairContext(judged, torch.device("cpu"), chunk=4)  # several chunks
    seen = []
    for rows, scores in pairs.batches(net):
        assert scores.shape == (len(rows), 6, 6)
        for r, s in zip(rows.tolist(), scores):
            torch.testing.assert_close(s, _forward(net, judged, r), atol=1e-5, rtol=1e-5)
            seen.append(r)
    assert seen == list(range(len(judged)))


def test_ncr_correspondence_is_the_adaptive_prediction_of_both_networks_in_the_pairs_batch(tmp_path, small_context):
    ctx, ds = small_context(tmp_path)
    judged = _judged_from(ds)
    method = _method("ncr", ctx)
    got = method.correspondence(PairContext(judged, torch.device("cpu")))
    for p in range(len(judged)):
        preds = [float(adaptive_prediction(per_sample_triplet(_forward(net, judged, p), 0.2), 0.2)[0]) for net in method.nets]
        assert got[p] == pytest.approx(np.mean(preds), abs=1e-5)
    assert ((got >= 0) & (got <= 1)).all()


@pytest.mark.parametrize("name", ["crcl", "rcl"])
def test_matching_probability_correspondence_in_the_pairs_batch(tmp_path, small_context, name):
    """CRCL's and RCL's estimate: the pair's matching probability in its batch."""
    ctx, ds = small_context(tmp_path)
    judged = _judged_from(ds)
    method = _method(name, ctx)
    got = method.correspondence(PairContext(judged, torch.device("cpu")))
    for p in range(len(judged)):
        expected = match_probability(*batch_probabilities(_forward(method.net, judged, p), method.config.tau))[0]
        assert got[p] == pytest.approx(float(expected), abs=1e-6)


def test_cream_correspondence_is_the_matching_probability_of_both_networks(tmp_path, small_context):
    ctx, ds = small_context(tmp_path)
    judged = _judged_from(ds)
    method = _method("cream", ctx)
    got = method.correspondence(PairContext(judged, torch.device("cpu")))
    for p in range(len(judged)):
        q = [float(match_probability(*batch_probabilities(_forward(net, judged, p), 0.07))[0]) for net in method.nets]
        assert got[p] == pytest.approx(np.mean(q), abs=1e-6)


def test_l2rm_correspondence_is_the_beta_posterior_of_the_pairs_hinge_after_a_division(tmp_path, small_context):
    """Before a division: the similarity; after one: the last Beta mixture's clean posterior of the
    pair's mean hinge in its batch, normalised by the division's loss range (a hand evaluation of
    the Beta densities)."""
    from scipy.stats import beta

    ctx, ds = small_context(tmp_path)
    judged = _judged_from(ds)
    cls = METHODS.get("l2rm")
    method = cls(build_config(cls.Config, {"warmup_epochs": 0, "batch_size": 8}), ctx)
    before = method.correspondence(PairContext(judged, torch.device("cpu")))
    assert before == pytest.approx([float(_forward(method.net, judged, p)[0, 0]) for p in range(len(judged))], abs=1e-5)
    method.train_epoch(0)
    got = method.correspondence(PairContext(judged, torch.device("cpu")))
    lo, hi = method._range
    m, k = method._fit.mixture, method._fit.clean_component
    for p in range(len(judged)):
        loss = float(per_sample_triplet(_forward(method.net, judged, p), 0.2)[0])
        x = min(max((loss - lo) / (hi - lo), 1e-3), 1 - 1e-3)
        dens = [float(m.weights[j]) * beta.pdf(x, float(m.alphas[j]), float(m.betas[j])) for j in range(2)]
        assert got[p] == pytest.approx(dens[k] / (sum(dens) + 1e-12), abs=1e-6)


def test_decl_correspondence_is_the_decision_score_in_the_pairs_batch(tmp_path, small_context):
    """DECL's estimate from an explicit batch: the pair's share of its row of e + eᵀ, e = exp(t/τ)."""
    ctx, ds = small_context(tmp_path)
    judged = _judged_from(ds)
    method = _method("decl", ctx)
    got = method.correspondence(PairContext(judged, torch.device("cpu")))
    for p in range(len(judged)):
        t = method.net.signed(_forward(method.net, judged, p)).double()
        e = torch.exp(t / method.config.tau)
        shared = e + e.T
        assert got[p] == pytest.approx(float(shared[0, 0] / shared[0].sum()), abs=1e-5)
    assert ((got > 0) & (got < 1)).all()


def test_bicro_correspondence_is_the_consistency_label_against_the_anchors_of_a_true_batch(tmp_path, small_context):
    ctx, ds = small_context(tmp_path)
    judged = _judged_from(ds, batch=6)
    method = _method("bicro", ctx)
    cfg = method.config
    got = method.correspondence(PairContext(judged, torch.device("cpu")))
    for p in range(len(judged)):
        labels = []
        for net in method.nets:
            net.eval()
            with torch.no_grad():
                ref_img = net.encode_images(torch.from_numpy(judged.context_images[:6]))
                tokens, lengths = pad_tokens(judged.context_tokens[:6])
                ref_cap = net.encode_captions(tokens, lengths)
                anchors = raw_prediction(per_sample_triplet(ref_img @ ref_cap.T, 0.2), 0.2).topk(6 // 10 + 1).indices
                img = net.encode_images(torch.from_numpy(judged.images[judged.pair_image[p]][None]))
                tokens, lengths = pad_tokens([judged.tokens[judged.pair_caption[p]]])
                cap = net.encode_captions(tokens, lengths)
            # nearest anchor by cosine in each modality, ratio of the two closeness values there
            s_v = torch.nn.functional.cosine_similarity(img, ref_img[anchors])
            s_t = torch.nn.functional.cosine_similarity(cap, ref_cap[anchors])
            # the official's form: v/t where v/t < 1, else t/v (the image ratio; the text one mirrors it)
            a_v, a_t = int(s_v.argmax()), int(s_t.argmax())
            q_v, q_t = float(s_v[a_v] / s_t[a_v]), float(s_t[a_t] / s_v[a_t])
            ratio = [q_v if q_v < 1 else 1 / q_v, q_t if q_t < 1 else 1 / q_t]
            score = sum(ratio) / 2
            labels.append(0.0 if score <= cfg.label_threshold else min(score, 1.0))
        assert got[p] == pytest.approx(np.mean(labels), abs=1e-5)


def test_vanilla_correspondence_is_the_cosine_similarity(tmp_path, small_context):
    ctx, ds = small_context(tmp_path)
    judged = _judged_from(ds)
    method = _method("vanilla", ctx)
    got = method.correspondence(PairContext(judged, torch.device("cpu")))
    expected = [float(_forward(method.net, judged, p)[0, 0]) for p in range(len(judged))]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_bicro_consistency_kernel_agrees_with_the_loop_above():
    # guards the explicit reference in the BiCro test: the kernel on one sample equals the official hand
    # formula, v/t where v/t < 1 else t/v (difference B: not min(v/t, t/v) when the signs differ), on
    # many seeded draws so that both branches and opposite signs occur
    gen = torch.Generator().manual_seed(0)
    branches = set()
    for _ in range(200):
        img, txt = torch.randn(1, 5, generator=gen), torch.randn(1, 5, generator=gen)
        a_img, a_txt = torch.randn(3, 5, generator=gen), torch.randn(3, 5, generator=gen)
        r_v, _ = consistency.consistency_ratios(img, txt, a_img, a_txt)
        s_v = torch.nn.functional.cosine_similarity(img, a_img)
        s_t = torch.nn.functional.cosine_similarity(txt, a_txt)
        a = int(s_v.argmax())
        v, t = float(s_v[a]), float(s_t[a])
        expected = v / t if v / t < 1 else t / v
        branches.add((v / t < 1, v * t < 0))
        assert float(r_v) == pytest.approx(expected, rel=1e-5)
    assert branches == {(True, False), (False, False), (True, True)}


# -- agreement metrics --------------------------------------------------------------------------------
def test_auc_matches_a_hand_count_and_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    # positives 0.35, 0.8 vs negatives 0.1, 0.4: 3 of 4 (positive, negative) pairs ordered correctly
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool)) == pytest.approx(0.75)
    rng = np.random.default_rng(1)
    score = rng.integers(0, 5, 300).astype(float)  # many ties
    label = rng.random(300) < 0.3
    assert auc(score, label) == pytest.approx(roc_auc_score(label, score))
    assert auc(score, np.ones(300, bool)) is None


def test_spearman_hand_cases():
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 45])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1])) == pytest.approx(-1.0)
    # ranks (1, 2, 3) vs (1, 3, 2): 1 − 6·Σd²/(n(n²−1)) = 1 − 6·2/24 = 0.5
    assert spearman(np.array([1.0, 2, 3]), np.array([1.0, 3, 2])) == pytest.approx(0.5)
    assert spearman(np.array([1.0, 1, 1]), np.array([1.0, 2, 3])) is None


def test_agreement_splits_by_kind_and_subset_and_leaves_ties_out_of_the_auc():
    judged = JudgedPairs(images=np.zeros((1, 2)), tokens=[], pair_image=np.zeros(4, np.int64),
                         pair_caption=np.zeros(4, np.int64), heldout=np.array([True, True, False, False]),
                         context_images=np.zeros((1, 2)), context_tokens=[], context=np.zeros((4, 1), np.int64))
    judged.sets["crowd"] = JudgmentSet("crowd", "c.txt", np.array([0, 1, 2, 3, 3]), np.array([1.0, 0.0, 0.5, 0.0, 0.0]),
                                       np.array([1.0, 0.0, np.nan, 0.0, 0.0]))
    out = agreement(np.array([0.9, 0.2, 0.95, 0.1]), judged)["crowd"]
    assert out["all"] == {"n": 5, "n_describes": 1, "n_not": 3, "auc": 1.0, "spearman": pytest.approx(
        spearman(np.array([0.9, 0.2, 0.95, 0.1, 0.1]), np.array([1.0, 0.0, 0.5, 0.0, 0.0])))}
    assert out["heldout"]["n"] == 2 and out["heldout"]["auc"] == 1.0
    with pytest.raises(ValueError, match="one estimate per judged pair"):
        agreement(np.zeros(3), judged)


# -- the leaderboard table ----------------------------------------------------------------------------
def _with_agreement(make, method, seed, expert_auc, estimate="cosine"):
    r = make(method=method, dataset="flickr8k-xception", noise=0.5, seed=seed)
    block = {"n": 10, "n_describes": 3, "n_not": 7, "auc": expert_auc, "spearman": expert_auc - 0.5}
    r["human_agreement"] = {"estimate": estimate, "expert": {"all": block, "heldout": {**block, "auc": None}},
                            "crowd": {"all": block, "heldout": block}}
    return r


def test_agreement_board_aggregates_seeds_and_marks_the_best(result_dict):
    from ncbench.report.build import agreement_boards
    from ncbench.report.html import render_board as html_board
    from ncbench.report.markdown import render_board

    results = [_with_agreement(result_dict, "ncr", 0, 0.70, "P-hat <b>"),
               _with_agreement(result_dict, "ncr", 1, 0.74, "P-hat <b>"),
               _with_agreement(result_dict, "<script>x</script>", 0, 0.60)]
    boards, _ = agreement_boards(results)
    (board,) = boards
    assert board.key == "human-flickr8k-xception" and board.benchmarks == ["expert", "crowd", "expert-heldout",
                                                                           "crowd-heldout"]
    text = render_board(board)
    ncr_row = next(line for line in text.splitlines() if "| ncr" in line)
    # mean 0.72, sample std of (0.70, 0.74) = 0.028
    assert "**0.720 ± 0.028**" in ncr_row and "n/a" in ncr_row  # held-out expert AUC was None
    assert "ncr: P-hat <b>" in text
    page = html_board(board)
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x</script>" not in page
    assert "P-hat &lt;b&gt;" in page and 'colspan="2"' in page


# -- the real Flickr8k judgments ----------------------------------------------------------------------
def test_flickr8k_xception_judged_pairs_match_the_files(shared_data, cache_dir):
    from ncbench.registry import DATASETS

    ds = DATASETS.get("flickr8k-xception").load(shared_data, cache_dir)
    judged = ds.judged
    text = shared_data / "flickr8k" / "text"
    for name, file in (("expert", "ExpertAnnotations.txt"), ("crowd", "CrowdFlowerAnnotations.txt")):
        lines = [ln.split("\t") for ln in (text / file).read_text().splitlines() if ln.strip()]
        js = judged.sets[name]
        assert len(js.pair) == len(lines) and js.skipped == 0
        if name == "expert":  # majority of three experts at ≥ 3
            positives = sum(sum(int(s) >= 3 for s in ln[2:]) >= 2 for ln in lines)
        else:
            positives = sum(int(ln[3]) > int(ln[4]) for ln in lines)
        assert int(np.nansum(js.describes)) == positives
    assert judged.context_batch == 128
    test_names = {n for n in (shared_data / "flickr8k/feats_xception_softmax_test1000/image_names.txt").read_text().split()}
    assert len(test_names) == 1000 and judged.images.shape == (1000, 1000)
    assert 0 < judged.heldout.sum() < len(judged)


def test_detect_cli_scores_judged_pairs_and_the_leaderboard_shows_them(shared_data, cache_dir, tmp_path, capsys):
    from ncbench.cli import main

    out = tmp_path / "results"
    argv = ["detect", "--data-root", str(shared_data), "--methods", "vanilla", "--noise", "0.5",
            "--method-opt", "epochs=1", "--results", str(out), "--cache-dir", str(cache_dir), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Noise detection vs human judgments (flickr8k-xception, caption-level noise)" in printed
    (path,) = out.rglob("seed-0.json")
    result = json.loads(path.read_text())
    block = result["human_agreement"]
    assert block["expert"]["all"]["n"] == 5822 and block["crowd"]["all"]["n"] == 47830
    assert 0.0 <= block["expert"]["all"]["auc"] <= 1.0 and -1.0 <= block["crowd"]["all"]["spearman"] <= 1.0
    assert block["estimate"].startswith("cosine similarity")
    assert result["timings"]["judged_s"] > 0
    assert main(argv) == 0  # the finished run is reused, not retrained
    assert "0 run(s) trained, 1 already done" in capsys.readouterr().out

    assert main(["leaderboard", "--results", str(out), "--out", str(tmp_path / "lb"), "--no-plots"]) == 0
    assert (tmp_path / "lb" / "human-agreement.csv").is_file()
    assert "Noise detection vs human judgments" in (tmp_path / "lb" / "leaderboard.md").read_text()
    assert (tmp_path / "lb" / "leaderboard-p1-human-flickr8k-xception.html").is_file()


def test_detect_refuses_a_dataset_without_judgments(capsys):
    from ncbench.cli import main

    assert main(["detect", "--dataset", "synthetic"]) == 2
    assert "have no human judgments; choose from flickr8k-xception" in capsys.readouterr().err


def test_the_result_schema_checks_the_agreement_block(result_dict):
    import jsonschema

    from ncbench.submission import result_schema

    r = _with_agreement(result_dict, "ncr", 0, 0.7)
    jsonschema.validate(r, result_schema())
    r["human_agreement"]["crowd"]["all"]["auc"] = 1.5
    with pytest.raises(jsonschema.ValidationError, match="1.5 is greater than the maximum of 1"):
        jsonschema.validate(r, result_schema())
