"""The noise audit (``ncbench.noise_audit``) against hand computations on a tiny dataset and direct
counts over the real Flickr8k judgment files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ncbench.data.cards import GlobalFeatureCard
from ncbench.data.globalfeat import GlobalSource
from ncbench.data.judgments import JudgmentSource
from ncbench.data.noise import make_noise_index
from ncbench.data.noise_models import NOISE_MODELS, build_params
from ncbench.data.wordlists import concept_table, word_classes
from ncbench.errors import ConfigError, DataError
from ncbench.noise_audit import audit_noise, ceiling_sweep, load_audit_data

# six images, two captions each; train a–d, dev e, test f. Features chosen so that under cosine
# similarity a's nearest is b (0.743), b's is a, c's is b (0.669) and d's is c (0.287).
FEATS = {"a": [1, 0, 0], "b": [1, 0.9, 0], "c": [0, 1, 0], "d": [0, 0.3, 1], "e": [1, 1, 1], "f": [0, 1, 1]}
CAPTIONS = {  # one replaceable word each (WORD_OF_ROW, in training caption row order)
    "a": ["a red thing .", "a blue thing ."], "b": ["a dog here .", "a cat here ."],
    "c": ["on the beach .", "in the park ."], "d": ["someone running .", "someone sitting ."],
    "e": ["a photo .", "a picture ."], "f": ["a photo .", "a picture ."],
}
WORD_OF_ROW = ["red", "blue", "dog", "cat", "beach", "park", "running", "sitting"]
EXPERT = """b.jpg\ta.jpg#0\t4\t4\t3
a.jpg\tb.jpg#1\t1\t2\t3
b.jpg\tc.jpg#0\t3\t3\t1
a.jpg\ta.jpg#1\t4\t4\t4
e.jpg\ta.jpg#0\t2\t2\t2
x.jpg\ta.jpg#0\t1\t1\t1
c.jpg\td.jpg#2\t1\t1\t1
d.jpg\ta.jpg#0\t1\t1\t1
"""
CROWD = """b.jpg\ta.jpg#1\t0.5\t1\t1
c.jpg\td.jpg#0\t0.667\t2\t1
a.jpg\tb.jpg#0\t0\t0\t3
c.jpg\tc.jpg#0\t1\t3\t0
f.jpg\ta.jpg#0\t0\t0\t3
"""


def cos(u, v) -> float:
    u, v = np.asarray(u, float), np.asarray(v, float)
    return float(u @ v / np.sqrt((u @ u) * (v @ v)))


@pytest.fixture
def tiny(tmp_path):
    names = sorted(FEATS)
    np.save(tmp_path / "feats.npy", np.array([FEATS[n] for n in names], dtype=np.float32))
    (tmp_path / "names.txt").write_text("".join(f"{n}.jpg\n" for n in names))
    tokens = [f"{n}.jpg#{k}\t{c}\n" for n in names for k, c in enumerate(CAPTIONS[n])]
    (tmp_path / "tokens.txt").write_text("".join(tokens))
    for split, members in (("train", "abcd"), ("dev", "e"), ("test", "f")):
        (tmp_path / f"{split}.txt").write_text("".join(f"{n}.jpg\n" for n in members))
    (tmp_path / "expert.txt").write_text(EXPERT)
    (tmp_path / "crowd.txt").write_text(CROWD)
    splits = ("train.txt", "dev.txt", "test.txt")
    card = GlobalFeatureCard("tiny", "", captions_per_image=2,
                             source=GlobalSource("feats.npy", "names.txt", "tokens.txt", splits, transform="none",
                                                 vocab_threshold=1),
                             judgments=JudgmentSource(expert="expert.txt", crowd="crowd.txt"))
    return load_audit_data(card, tmp_path)


# k=1 neighbour: each caption row moves to its image's nearest other image: a#0,a#1→b; b#0,b#1→a;
# c#0,c#1→b; d#0,d#1→c. What people said of those pairs, by caption row: (score, describes)
EXPERT_ON_K1 = {0: (11 / 3, 1.0), 3: (2.0, 0.0), 4: (7 / 3, 1.0)}  # (b, a#0) 4 4 3; (a, b#1) 1 2 3; (b, c#0) 3 3 1
CROWD_ON_K1 = {1: (0.5, np.nan), 6: (0.667, 1.0), 2: (0.0, 0.0)}  # (b, a#1) a tie; (c, d#0); (a, b#0)


def expected_stats(on: dict, rows) -> tuple[int, float, int, int]:
    """(judged, summed score, yes, verdicts) over the judged ones of ``rows``."""
    hit = [on[r] for r in rows if r in on]
    return len(hit), sum(s for s, _ in hit), sum(v == 1.0 for _, v in hit), sum(v == v for _, v in hit)


def test_hand_computed_neighbour_audit_and_references(tiny):
    seeds = [0, 1]
    rep = audit_noise(tiny, [("neighbour", {"k": 1, "ceiling": 1.0})], 0.9, seeds)
    shuffle, nb = rep.models
    assert shuffle.model == "shuffle"  # the reference is always audited
    assert nb.noisy == 14 and nb.nominal == 14  # ⌊0.9 · 8⌋ = 7 captions per seed
    chosen = [np.random.default_rng(s).permutation(8)[:7] for s in seeds]  # the shuffle's choice
    for kind, on in (("expert", EXPERT_ON_K1), ("crowd", CROWD_ON_K1)):
        judged, score, yes, verdicts = map(sum, zip(*(expected_stats(on, c) for c in chosen)))
        got = nb.pooled(kind)
        assert (got.pairs, got.judged, got.yes, got.verdicts) == (14, judged, yes, verdicts)
        assert got.mean_score == pytest.approx(score / judged)
    sim = {0: cos(FEATS["a"], FEATS["b"]), 1: cos(FEATS["a"], FEATS["b"]), 2: cos(FEATS["c"], FEATS["b"]),
           3: cos(FEATS["d"], FEATS["c"])}  # by true image
    assert nb.mean_similarity == pytest.approx(np.mean([sim[r // 2] for c in chosen for r in c]))
    # references: expert wrong pairs in train: the three above and (d, a#0) 1 1 1; true: (a, a#1)
    ref = rep.reference
    assert (ref.wrong["expert"].judged, ref.wrong["expert"].yes) == (4, 2)
    assert ref.wrong["expert"].mean_score == pytest.approx((11 / 3 + 2 + 7 / 3 + 1) / 4)
    assert (ref.true["expert"].judged, ref.true["expert"].yes) == (1, 1)
    assert (ref.wrong["crowd"].judged, ref.wrong["crowd"].yes, ref.wrong["crowd"].verdicts) == (3, 1, 2)
    # 8 training captions × 3 other training images = 24 wrong pairs
    assert ref.random_judged_share == pytest.approx({"expert": 4 / 24, "crowd": 3 / 24})
    files = rep.judgment_files
    # x.jpg is unknown and #2 is beyond 2 captions; e.jpg and f.jpg are not training images
    assert (files["expert"]["lines"], files["expert"]["on_dataset"], files["expert"]["in_train"]) == (8, 6, 5)
    assert (files["crowd"]["lines"], files["crowd"]["on_dataset"], files["crowd"]["in_train"]) == (5, 5, 4)
    assert rep.judged_captions == 6  # a#0 a#1 b#0 b#1 c#0 d#0
    assert "| neighbour | k=1, ceiling=1.0 | 14 of 14 |" in rep.render()
    json.dumps(rep.to_json())


def test_shuffle_audit_counts_the_pairs_of_the_protocol_index(tiny):
    rep = audit_noise(tiny, [("shuffle", {})], 0.9, [3])
    idx = make_noise_index(np.arange(8) // 2, 0.9, 3)
    judged = {("b", 0), ("a", 3), ("b", 4), ("d", 0)}  # expert (given image, caption row), wrong pairs in train
    noisy = [(c, "abcd"[idx.t2i[c]]) for c in range(8) if not idx.clean[c]]
    e = rep.models[0].pooled("expert")
    assert e.pairs == len(noisy)
    assert e.judged == sum((img, c) in judged for c, img in noisy)


def test_partial_reports_the_replaced_word_classes_and_no_judgments(tiny):
    rep = audit_noise(tiny, [("partial", {})], 0.5, [0])
    part = rep.models[1]
    chosen = np.random.default_rng(0).permutation(8)[:4]  # every caption has a replaceable word
    class_of = concept_table(word_classes("english"))
    expected = {}
    for c in chosen:
        cls = class_of[WORD_OF_ROW[c]][0]
        expected[cls] = expected.get(cls, 0) + 1
    assert part.word_classes == expected
    assert part.noisy == 4 and part.note.startswith("n/a") and part.seeds[0].judged == {}
    assert "| partial | words=auto | 4 of 4 | – | n/a |" in rep.render()


def test_mixed_is_split_into_its_neighbour_and_shuffled_parts(tiny):
    rep = audit_noise(tiny, [("mixed", {"k": 1, "ceiling": 1.0, "alpha": 0.5})], 0.9, [0])
    m = rep.models[1]
    assert set(m.noise_kinds) == {"neighbour", "shuffled"}
    for kind in ("expert", "crowd"):
        total = m.pooled(kind)
        parts = [m.pooled(kind, nk) for nk in m.noise_kinds]
        assert total.judged == sum(p.judged for p in parts) and total.pairs == sum(p.pairs for p in parts)


def test_ceiling_sweep_expectations_by_hand(tiny):
    sweep = ceiling_sweep(tiny, 0.5, ks=[1, 2], ceilings=[1.0, 0.7, -0.5])
    rows = {(r.k, r.ceiling): r for r in sweep.rows}
    # k=1, no ceiling: the deterministic neighbour above
    r = rows[1, 1.0]
    assert r.judged["expert"].judged_share == pytest.approx(3 / 8)
    assert r.judged["expert"].describes_share == pytest.approx(2 / 3)
    assert r.judged["crowd"].describes_share == pytest.approx(1 / 2)
    # ceiling 0.7 skips a↔b (0.743): a→c (0, ties with d, lower number first), b→c, c→b, d→c
    r = rows[1, 0.7]
    assert r.judged["expert"].judged_share == pytest.approx(1 / 8)  # (b, c#0) yes
    assert r.judged["crowd"].judged_share == pytest.approx(1 / 8)  # (c, d#0) yes
    assert r.judged["expert"].describes_share == 1.0
    cb, dc = cos(FEATS["c"], FEATS["b"]), cos(FEATS["d"], FEATS["c"])
    assert r.mean_similarity == pytest.approx((0 + cb + cb + dc) / 4)
    # k=2: a→{b, c}, b→{a, c}, c→{b, d}, d→{c, b}, each 1/2: the three judged expert pairs weigh 1/2
    r = rows[2, 1.0]
    assert r.judged["expert"].judged_share == pytest.approx(1.5 / 8)
    assert r.judged_candidates == {"expert": 3, "crowd": 3}
    # a ceiling below every similarity: nothing can be corrupted, half the captions were asked for
    r = rows[1, -0.5]
    assert (r.no_candidate, r.short) == (8, 4) and np.isnan(r.mean_similarity)
    # uniform over the other training images: every wrong pair weighs 1/3
    assert sweep.uniform.judged["expert"].judged_share == pytest.approx(4 / 24)
    assert sweep.uniform.judged["expert"].describes_share == pytest.approx(2 / 4)
    assert sweep.by_similarity[-1][2]["expert"].judged == 0
    assert sum(per["expert"].judged for _, _, per in sweep.by_similarity) == 4
    assert "| 1 | -0.5 | 8 | 4 | – |" in sweep.render()
    json.dumps(sweep.to_json())


def test_bad_inputs_are_one_line_errors(tiny, tmp_path):
    with pytest.raises(ConfigError, match="ratio"):
        audit_noise(tiny, [], 1.5, [0])
    with pytest.raises(ConfigError, match="seed"):
        audit_noise(tiny, [], 0.5, [])
    with pytest.raises(ConfigError, match="unknown noise model"):
        audit_noise(tiny, [("nearest", {})], 0.5, [0])
    from ncbench.registry import DATASETS

    with pytest.raises(ConfigError, match="global-feature"):
        load_audit_data(DATASETS.get("synthetic-small"), tmp_path)
    card = GlobalFeatureCard("nojudge", "", source=GlobalSource("f.npy", "n.txt", "t.txt"))
    with pytest.raises(ConfigError, match="no human judgments"):
        load_audit_data(card, tmp_path)
    card = GlobalFeatureCard("missing", "", source=GlobalSource("f.npy", "n.txt", "t.txt"),
                             judgments=JudgmentSource(expert="nowhere.txt"))
    with pytest.raises(DataError, match="nowhere.txt"):
        load_audit_data(card, tmp_path)


# ------------------------------------------------------------------------------------------- real data


def read_pairs(path) -> dict[tuple[str, str], float]:
    """(image, caption id) → 1 if the judges' majority says it describes, 0 if not (ties left out)."""
    out = {}
    for line in path.read_text().splitlines():
        f = line.split("\t")
        if "Expert" in path.name:
            yes = sum(int(s) >= 3 for s in f[2:])
            no = 3 - yes
        else:
            yes, no = int(f[3]), int(f[4])
        out[f[0], f[1]] = 1.0 if yes > no else 0.0 if no > yes else float("nan")
    return out


def test_real_flickr8k_audit_matches_direct_counts(shared_data):
    from ncbench.registry import DATASETS

    card = DATASETS.get("flickr8k-xception")
    data = load_audit_data(card, shared_data)
    rep = audit_noise(data, [("shuffle", {}), ("neighbour", {}), ("partial", {})], 0.5, [0])
    table = data.table
    train = table.rows["train"]
    assert (rep.n_images, rep.n_captions) == (600, 3000)
    name_of = [table.names[r] for r in train]
    judged = {k: read_pairs(shared_data / getattr(card.judgments, k)) for k in ("expert", "crowd")}
    in_train = set(name_of)
    for k, pairs in judged.items():
        inside = [(i, c) for i, c in pairs if i in in_train and c.split("#")[0] in in_train]
        assert rep.judgment_files[k]["in_train"] == len(inside)
        wrong = [pairs[i, c] for i, c in inside if c.split("#")[0] != i]
        assert rep.reference.wrong[k].judged == len(wrong)
        assert rep.reference.wrong[k].describes_share == pytest.approx(np.nanmean(wrong))

    true_rows = np.arange(3000) // 5
    for model, out in (("shuffle", make_noise_index(true_rows, 0.5, 0)),
                       ("neighbour", NOISE_MODELS["neighbour"].generate(data.inputs, 0.5, 0, "caption",
                                                                         build_params("neighbour")))):
        audit = next(m for m in rep.models if m.model == model)
        noisy = np.flatnonzero(~out.clean)
        assert audit.noisy == len(noisy)
        for k, pairs in judged.items():
            hits = [pairs[key] for c in noisy
                    if (key := (name_of[out.t2i[c]], f"{name_of[c // 5]}#{c % 5}")) in pairs]
            got = audit.pooled(k)
            assert got.judged == len(hits)
            assert got.yes == sum(h == 1.0 for h in hits)
    partial = next(m for m in rep.models if m.model == "partial")
    assert partial.noisy == 1500 and sum(partial.word_classes.values()) == 1500

    sweep = ceiling_sweep(data, 0.5, ks=[10], ceilings=[0.95])
    n_wrong = {k: sum(1 for i, c in p if i in in_train and c.split("#")[0] in in_train and c.split("#")[0] != i)
               for k, p in judged.items()}
    for k in judged:  # uniformly random wrong pairs: judged with share (judged wrong pairs) / (3000 × 599)
        assert sweep.uniform.judged[k].judged_share == pytest.approx(n_wrong[k] / (3000 * 599))
