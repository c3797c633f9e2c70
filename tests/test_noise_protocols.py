"""Noise models in runs, results, boards and submissions (issue 29): one small case per model.

Each run is a few seconds on ``synthetic-small`` with the bag-of-words backbone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ncbench.cli import main
from ncbench.data.noise import generate_noise, texts_path
from ncbench.data.noise_models import inputs_from_split, read_texts
from ncbench.data.noise_spec import NoiseSpec
from ncbench.data.vocab import tokenize
from ncbench.registry import DATASETS
from ncbench.results import load_results
from ncbench.submission import canonical_noise

RUN = ["run", "--dataset", "synthetic-small", "--backbones", "vse_bow", "--noise", "0.4", "--threads", "1",
       "--no-progress", "--method-opt", "epochs=2"]


@pytest.fixture(scope="module")
def model_sweep(tmp_path_factory, cache_dir):
    """vanilla and ncr under each noise model, one seed: the results folder."""
    root = tmp_path_factory.mktemp("models")
    for model in ("shuffle", "neighbour", "partial", "mixed"):
        assert main([*RUN, "--methods", "vanilla,ncr", "--noise-model", model, "--results", str(root / "r"),
                     "--cache-dir", str(cache_dir)]) == 0
    return root / "r"


def test_each_model_trains_and_is_recorded(model_sweep):
    loaded = load_results(model_sweep)
    assert not loaded.errors
    by = {(r["identity"]["method"], r["identity"]["noise_model"]): r for r in loaded.results}
    assert len(by) == 8 and all(r["status"] == "ok" for r in by.values())
    for (method, model), r in by.items():
        ident = r["identity"]
        assert ident["noise_generator_version"] == "1"
        assert NoiseSpec.from_fields(ident) == NoiseSpec.make("caption", model)
        assert Path(r["_path"]).parts[-4] == ("noise-0.4" if model == "shuffle" else f"noise-{model}-0.4")
        assert ("noise_texts_sha256" in ident) == (model == "partial")
        assert ("embedder_sha256" in (ident.get("noise_details") or {})) == (model in ("neighbour", "mixed"))
        assert abs(ident["noise_realised_ratio"] - 0.4) < 0.01
    # the shuffle's result is as before noise models: same folder, same hash fields, no model in the config
    shuffle = by[("ncr", "shuffle")]
    assert "noise_model" not in shuffle["config"] and shuffle["config"]["noise_type"] == "caption"
    assert len({by[("ncr", m)]["config_hash"] for m in ("shuffle", "neighbour", "partial", "mixed")}) == 4
    # the detection metrics see partial's corrupted captions as noisy (the image stays)
    assert by[("ncr", "partial")]["detection"]["auc"] is not None


def test_partial_texts_are_what_the_methods_train_on(model_sweep, cache_dir, tmp_path):
    index_file = next((model_sweep / "noise_index").glob("synthetic-small-*_partial_seed0.npy"))
    texts = read_texts(texts_path(index_file), 1500)
    assert np.array_equal(np.load(index_file), np.arange(1500) // 5)
    card = DATASETS.get("synthetic-small")
    ds = card.load(None, cache_dir)
    from ncbench.engine.context import make_context
    from ncbench.runner import Runner, RunSettings
    from ncbench.config import RunConfig
    import torch

    cfg = RunConfig("vanilla", "vse_bow", "synthetic-small", 0.4, 0, noise_protocol=NoiseSpec.make("caption", "partial"))
    runner = Runner(RunSettings(results_dir=tmp_path, cache_dir=cache_dir))
    noise = runner.noise_index(cfg, ds)
    assert noise.texts == texts  # the run's own generation is the sweep's
    ctx = make_context(ds, noise, "vse_bow", {}, torch.device("cpu"), torch.Generator())
    row = next(iter(texts))
    batch = ctx.train.batch(np.array([row]))
    expected = ds.vocab.encode(texts[row])
    assert batch.tokens[0, : len(expected)].tolist() == expected.tolist()
    assert tokenize(texts[row]) != tokenize(ds.train.captions[row])
    assert not noise.clean[row] and noise.t2i[row] == row // 5


def test_a_board_never_pools_or_ranks_across_noise_models(model_sweep, tmp_path):
    assert main(["leaderboard", "--results", str(model_sweep), "--out", str(tmp_path / "b")]) == 0
    md = (tmp_path / "b" / "leaderboard.md").read_text()
    titles = [line for line in md.splitlines() if line.startswith("## synthetic-small")]
    assert len(titles) == 4  # one table per noise model
    assert "## synthetic-small, caption-level noise (protocol 1)" in titles
    assert any("neighbour model v1 (ceiling=0.85, embedder=features, k=10)" in t for t in titles)
    for t in titles:  # every table holds exactly one run per method (one seed): nothing pooled
        block = md.split(t, 1)[1].split("\n## ", 1)[0]
        assert sum(1 for line in block.splitlines() if line.startswith("| 40%")) == 2
    pages = sorted(p.name for p in (tmp_path / "b").glob("leaderboard-p1-synthetic-small*.html"))
    assert pages == ["leaderboard-p1-synthetic-small-mixed.html", "leaderboard-p1-synthetic-small-neighbour.html",
                     "leaderboard-p1-synthetic-small-partial.html", "leaderboard-p1-synthetic-small.html"]


def test_compare_pairs_rows_of_one_model_only(model_sweep, capsys):
    common = ["compare", "--methods", "vanilla,ncr", "--dataset", "synthetic-small", "--noise", "0.4",
              "--results", str(model_sweep), "--resamples", "200", "--json"]
    assert main([*common, "--noise-model", "neighbour"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["noise"] == "caption-neighbour"
    loaded = {(r["identity"]["method"], r["identity"]["noise_model"]): r for r in load_results(model_sweep).results}
    assert out["rsum_b"] == pytest.approx(loaded[("ncr", "neighbour")]["test"]["full"]["rsum"], abs=0.05)
    assert main([*common, "--noise-model", "neighbour", "--noise-opt", "k=3"]) == 2
    assert "no ok result" in capsys.readouterr().err


def test_status_knows_the_model(model_sweep, cache_dir, capsys):
    args = ["status", "--dataset", "synthetic-small", "--backbones", "vse_bow", "--noise", "0.4", "--methods", "ncr",
            "--method-opt", "epochs=2", "--results", str(model_sweep), "--cache-dir", str(cache_dir)]
    assert main([*args, "--noise-model", "partial"]) == 0
    out = capsys.readouterr().out
    assert "partial" in out and "done" in out
    assert main([*args, "--noise-model", "partial", "--noise-opt", "words=english"]) == 0
    assert "missing" in capsys.readouterr().out


def test_a_cached_partial_text_file_that_was_edited_is_refused(model_sweep, cache_dir, tmp_path, capsys):
    import shutil

    root = tmp_path / "r"
    shutil.copytree(model_sweep / "noise_index", root / "noise_index")
    tfile = next((root / "noise_index").glob("synthetic-small-*_partial_seed0.texts.json"))
    doc = json.loads(tfile.read_text())
    doc["texts"][0] = "a completely different caption"
    tfile.write_text(json.dumps(doc))
    assert main([*RUN, "--methods", "vanilla", "--noise-model", "partial", "--results", str(root),
                 "--cache-dir", str(cache_dir)]) == 2
    assert "cached corrupted texts" in capsys.readouterr().err


def test_canonical_entries_of_the_models_are_reproducible(cache_dir):
    """The registry's synthetic entries for every noise model: regenerated with the seed-0 generator."""
    card = DATASETS.get("synthetic")
    ds = card.load(None, cache_dir)
    inputs = inputs_from_split(ds.train, ds.vocab, card.word_list, ds.root)
    table = canonical_noise()["synthetic"]
    models = [k for k in table if k not in ("caption", "image")]
    assert sorted(models) == sorted(f"{t}-{m}" for t in ("caption", "image") for m in ("neighbour", "partial", "mixed"))
    for key in models:
        spec = NoiseSpec.from_key(key)
        for ratio, entry in table[key].items():
            idx = generate_noise(spec, inputs, float(ratio), 0)
            assert idx.sha256 == entry["sha256"], (key, ratio)
            assert idx.texts_sha256 == entry.get("texts_sha256"), (key, ratio)
