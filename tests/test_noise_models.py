"""The noise models (``ncbench.data.noise_models``) against explicit loops written here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ncbench.data.noise import make_noise_index, shuffle_captions
from ncbench.data.noise_models import (
    CLEAN, NEIGHBOUR, NOISE_MODELS, PARTIAL, SHUFFLED, NoiseInputs, build_params, read_texts, texts_bytes,
    texts_sha256,
)
from ncbench.data.vocab import tokenize
from ncbench.data.wordlists import ENGLISH, concept_table, synthetic_classes
from ncbench.errors import ConfigError, DataError

CPI = 5
WORDS = ["red", "blue", "green", "dog", "cat", "horse", "beach", "park", "running", "sitting"]  # classes of ENGLISH


def make_inputs(n_images=40, dim=6, regions=None, seed=3, captions=None, vocab=None):
    rng = np.random.default_rng(seed)
    shape = (n_images, dim) if regions is None else (n_images, regions, dim)
    feats = rng.normal(size=shape).astype(np.float32)
    if captions is None:
        captions = [f"a {WORDS[(i + j) % 3]} {WORDS[3 + (i * j) % 3]} {WORDS[8 + j % 2]} on the {WORDS[6 + i % 2]} ."
                    for i in range(n_images) for j in range(CPI)]
    return NoiseInputs(np.arange(n_images * CPI) // CPI, CPI, np.arange(n_images), n_images, feats, captions,
                       vocab, "english")


def cosine_by_loop(feats, i, j):
    a = feats[i].astype(np.float64)
    b = feats[j].astype(np.float64)
    if a.ndim == 2:
        a, b = a.mean(0), b.mean(0)
    return float(a @ b / (np.sqrt(a @ a) * np.sqrt(b @ b)))


def allowed_targets_by_loop(feats, i, k, ceiling):
    """The images a neighbour swap of image i may land on: the k most similar others at or below the
    ceiling (ties at the k-th similarity all allowed)."""
    sims = [(cosine_by_loop(feats, i, j), j) for j in range(len(feats)) if j != i]
    sims = [(s, j) for s, j in sims if s <= ceiling + 1e-12]
    sims.sort(key=lambda t: (-t[0], t[1]))
    if len(sims) <= k:
        return {j for _, j in sims}
    kth = sims[k - 1][0]
    return {j for s, j in sims if s >= kth - 1e-12}


def generate(model, inputs, ratio, seed, noise_type="caption", **params):
    return NOISE_MODELS[model].generate(inputs, ratio, seed, noise_type, build_params(model, params))


@pytest.mark.parametrize("noise_type", ["caption", "image"])
def test_shuffle_model_is_byte_identical_to_the_protocol_index(noise_type):
    inp = make_inputs()
    for ratio in (0.0, 0.2, 0.5):
        got = generate("shuffle", inp, ratio, 7, noise_type)
        ref = make_noise_index(inp.true_rows, ratio, 7, noise_type, inp.n_rows)
        assert got.t2i.tobytes() == ref.t2i.tobytes()
        assert np.array_equal(got.clean, ref.clean)


@pytest.mark.parametrize("regions", [None, 4])
@pytest.mark.parametrize("k,ceiling", [(3, 1.0), (5, 0.3), (1, 0.0)])
def test_neighbour_caption_swaps_stay_in_the_top_k_below_the_ceiling(regions, k, ceiling):
    inp = make_inputs(regions=regions)
    out = generate("neighbour", inp, 0.4, 11, k=k, ceiling=ceiling)
    moved = np.flatnonzero(~out.clean)
    assert len(moved) == int(0.4 * inp.n_captions)  # never its own image: exactly the nominal count
    for c in moved:
        true_img, new_img = c // CPI, int(out.t2i[c])
        assert new_img != true_img
        assert new_img in allowed_targets_by_loop(inp.images, true_img, k, ceiling)
        assert cosine_by_loop(inp.images, true_img, new_img) <= ceiling + 1e-9
    assert set(np.flatnonzero(out.kind == NEIGHBOUR)) == set(moved)


def test_neighbour_moves_the_captions_the_shuffle_moves():
    inp = make_inputs()
    rng = np.random.default_rng(5)
    chosen_by_shuffle = rng.permutation(inp.n_captions)[: int(0.3 * inp.n_captions)]
    out = generate("neighbour", inp, 0.3, 5)
    assert set(np.flatnonzero(~out.clean)) == set(chosen_by_shuffle.tolist())


def test_neighbour_image_level_moves_all_captions_of_an_image_together():
    inp = make_inputs()
    out = generate("neighbour", inp, 0.5, 2, "image", k=4)
    moved_images = sorted({c // CPI for c in np.flatnonzero(~out.clean)})
    assert len(moved_images) == int(0.5 * inp.n_images)
    for i in moved_images:
        targets = out.t2i[i * CPI:(i + 1) * CPI]
        assert len(set(targets.tolist())) == 1 and targets[0] != i
        assert int(targets[0]) in allowed_targets_by_loop(inp.images, i, 4, 0.85)


def test_the_ceiling_keeps_near_duplicates_clean():
    inp = make_inputs(n_images=30)
    feats = np.array(inp.images)
    feats[1::2] = feats[0::2] + 1e-4  # every odd image is a near-copy of the one before
    inp = NoiseInputs(inp.true_rows, CPI, inp.image_rows, inp.n_rows, feats, inp.captions)
    out = generate("neighbour", inp, 0.6, 0, k=1, ceiling=0.99)
    for c in np.flatnonzero(~out.clean):
        assert int(out.t2i[c]) != (c // CPI) ^ 1  # never the twin
    loose = generate("neighbour", inp, 0.6, 0, k=1, ceiling=1.0)
    twins = sum(int(loose.t2i[c]) == (c // CPI) ^ 1 for c in np.flatnonzero(~loose.clean))
    assert twins == int((~loose.clean).sum())  # without a ceiling, k=1 is always the twin


def test_partial_changes_exactly_one_word_to_another_concept_of_its_class():
    vocab = frozenset(WORDS + ["a", "on", "the", "."])
    inp = make_inputs(vocab=vocab)
    out = generate("partial", inp, 0.5, 4)
    table = concept_table(ENGLISH)
    assert np.array_equal(out.t2i, inp.true_rows)  # the image stays
    assert sorted(out.texts) == sorted(np.flatnonzero(~out.clean).tolist())
    assert len(out.texts) == int(0.5 * inp.n_captions)
    assert set(np.flatnonzero(out.kind == PARTIAL)) == set(out.texts)
    for c, text in out.texts.items():
        old, new = tokenize(inp.captions[c]), tokenize(text)
        assert len(old) == len(new)
        diff = [i for i in range(len(old)) if old[i] != new[i]]
        assert len(diff) == 1
        a, b = old[diff[0]], new[diff[0]]
        assert table[a][0] == table[b][0] and table[a][1] != table[b][1]
        assert b in vocab


def test_partial_passes_over_captions_it_cannot_corrupt_and_reports_the_shortfall():
    caps = ["a red dog ."] * 10 + ["nothing to swap here ."] * 190
    inp = make_inputs(captions=caps)
    out = generate("partial", inp, 0.2, 0)
    assert set(out.texts) == set(range(10))  # only 10 of the 40 asked for can be corrupted
    assert out.details["eligible_items"] == pytest.approx(0.05)


def test_partial_on_synthetic_uses_the_generator_slots():
    classes = synthetic_classes()
    table = concept_table(classes)
    caps = ["a crimson hound sprinting by the sea"] * (10 * CPI)
    inp = NoiseInputs(np.arange(10 * CPI) // CPI, CPI, np.arange(10), 10, None, caps, None, "synthetic")
    out = generate("partial", inp, 0.4, 1)
    for c, text in out.texts.items():
        (a, b), = [(x, y) for x, y in zip(tokenize(caps[c]), tokenize(text)) if x != y]
        assert table[a][0] == table[b][0] and table[a][1] != table[b][1]


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("noise_type", ["caption", "image"])
def test_mixed_gives_alpha_of_the_chosen_items_neighbour_noise(alpha, noise_type):
    inp = make_inputs()
    out = generate("mixed", inp, 0.5, 9, noise_type, alpha=alpha, k=3, ceiling=1.0)
    unit = CPI if noise_type == "image" else 1
    n_items = int(0.5 * inp.n_captions // unit)
    hard = np.flatnonzero(out.kind == NEIGHBOUR)
    assert len(hard) == int(alpha * n_items) * unit
    for c in hard:
        assert int(out.t2i[c]) in allowed_targets_by_loop(inp.images, c // CPI, 3, 1.0)
    easy = np.flatnonzero(out.kind == SHUFFLED)
    back = (n_items - int(alpha * n_items)) * unit - len(easy)  # a shuffled item given its own image back
    assert back >= 0 and np.all(out.kind[out.clean] == CLEAN)


def test_models_are_deterministic_and_seeded():
    inp = make_inputs()
    for model in ("neighbour", "partial", "mixed"):
        a, b = generate(model, inp, 0.3, 1), generate(model, inp, 0.3, 1)
        c = generate(model, inp, 0.3, 2)
        assert a.t2i.tobytes() == b.t2i.tobytes() and a.texts == b.texts
        assert a.t2i.tobytes() != c.t2i.tobytes() or a.texts != c.texts


def test_parameters_are_checked():
    with pytest.raises(ConfigError, match="unknown parameter"):
        build_params("neighbour", {"kk": 3})
    with pytest.raises(ConfigError, match="k must be at least 1"):
        build_params("neighbour", {"k": "0"})
    with pytest.raises(ConfigError, match="ceiling"):
        build_params("neighbour", {"ceiling": 2})
    with pytest.raises(ConfigError, match="alpha"):
        build_params("mixed", {"alpha": 1.5})
    with pytest.raises(ConfigError, match="unknown noise model"):
        build_params("nearest")
    assert build_params("neighbour", {"k": "5"})["k"] == 5


def test_override_texts_round_trip_and_refusals(tmp_path):
    texts = {3: "a blue dog .", 0: "ein rotes hündchen"}
    f = tmp_path / "t.json"
    f.write_bytes(texts_bytes(texts))
    assert read_texts(f, 10) == texts
    assert texts_sha256(texts) == texts_sha256(dict(reversed(list(texts.items()))))
    for bad in ({"format": "x"}, {"format": "ncbench-caption-overrides", "rows": [11], "texts": ["a"]},
                {"format": "ncbench-caption-overrides", "rows": [1, 1], "texts": ["a", "b"]},
                {"format": "ncbench-caption-overrides", "rows": [1], "texts": [""]}):
        f.write_text(json.dumps(bad))
        with pytest.raises(DataError, match="t.json"):
            read_texts(f, 10)


def test_a_texts_file_that_is_a_link_or_a_device_is_refused_unread(tmp_path):
    """The texts of a cached index sit in a shared results folder: a planted link (to /dev/zero,
    which would be read until memory runs out) is refused without being followed."""
    from ncbench.atomic import UnsafePathError

    link = tmp_path / "t.texts.json"
    link.symlink_to("/dev/zero")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        read_texts(link, 10)
