"""``ncbench tune`` and recipes: trials never read the test split (a dataset without test files still
tunes), the same seed and budget choose the same recipe, the recipe is what ``run`` then uses (with
the user's options above it), and a bad recipe file is one clear error naming it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ncbench.cli import main
from ncbench.data.synthetic import ensure_synthetic
from ncbench.recipes import Recipe, load_recipes, write_recipe
from ncbench.registry import DATASETS, METHODS
from ncbench.runner import SweepSpec, plan
from ncbench.tuning import space_of, trial_options

SMALL_SPACE = {"lr": (1e-3, 3e-3), "batch_size": (32, 64), "schedule": ({"epochs": 2, "lr_update": 1}, {"epochs": 3, "lr_update": 2}),
               "warmup_epochs": (1,)}


@pytest.fixture
def small_space(monkeypatch):
    """Vanilla's search space cut down to epochs of seconds; trial 0 (the starting options) shortened too."""
    vanilla = METHODS.get("vanilla")
    monkeypatch.setattr(vanilla, "search_space", SMALL_SPACE)
    monkeypatch.setattr(vanilla, "dataset_defaults", {"synthetic": {"epochs": 2, "lr": 2e-3, "lr_update": 1}})


@pytest.fixture
def no_test_split(tmp_path, cache_dir):
    """synthetic-small written to a folder, with its test files deleted (and a directory where the
    test features were, so any attempt to read them fails loudly)."""
    src = ensure_synthetic(cache_dir / "data", DATASETS.get("synthetic-small").spec)
    root = tmp_path / "data"
    shutil.copytree(src, root)
    for name in ("test_ims.npy", "test_caps.txt"):
        (root / name).unlink()
    (root / "test_ims.npy").mkdir()
    return root


def _tune(root: Path, results: Path, recipes: Path, *extra: str) -> int:
    return main(["tune", "--dataset", "synthetic-small", "--data-root", str(root), "--methods", "vanilla",
                 "--noise", "0.4", "--budget", "3", "--results", str(results), "--recipes", str(recipes),
                 "--no-progress", "--device", "cpu", "--threads", "1", *extra])


def test_tune_never_reads_the_test_split(small_space, no_test_split, tmp_path, monkeypatch):
    import ncbench.runner as runner_module

    def forbidden(*args, **kwargs):
        raise AssertionError("a tuning trial evaluated a split other than dev")

    monkeypatch.setattr(runner_module, "evaluate_split", forbidden)  # the runner's test evaluation
    assert _tune(no_test_split, tmp_path / "res", tmp_path / "recipes") == 0
    trials = sorted((tmp_path / "res" / "tuning").rglob("*.json"))
    assert len(trials) == 3
    for path in trials:
        record = json.loads(path.read_text())
        assert record["status"] == "ok" and "test" not in record and "ranks" not in record
        assert record["config"]["trial"] is not None and record["best_val"]["rsum"] > 0
    recipe = load_recipes("synthetic-small", tmp_path / "recipes")[("vanilla", "vse_light")]
    dev = {p.parent.name: json.loads(p.read_text())["best_val"]["rsum"] for p in trials}
    assert recipe.tuning["chosen_trial"] == int(max(dev, key=lambda k: (dev[k], -int(k[6:])))[6:])
    assert recipe.tuning["budget"] == 3 and recipe.tuning["dev_rsum"] == pytest.approx(max(dev.values()), abs=1e-3)
    # a normal run does need the test split, and says which file is wrong
    assert main(["run", "--dataset", "synthetic-small", "--data-root", str(no_test_split), "--methods", "vanilla",
                 "--noise", "0.4", "--results", str(tmp_path / "res"), "--recipes", str(tmp_path / "recipes"),
                 "--no-progress", "--threads", "1"]) == 2


def test_same_seed_and_budget_choose_the_same_recipe(small_space, no_test_split, tmp_path):
    for name in ("a", "b"):
        assert _tune(no_test_split, tmp_path / f"res-{name}", tmp_path / f"recipes-{name}", "--budget", "2") == 0
    a, b = (load_recipes("synthetic-small", tmp_path / f"recipes-{n}")[("vanilla", "vse_light")] for n in "ab")
    assert (a.method, a.backbone, a.tuning["chosen_trial"], a.tuning["dev_rsum"]) == \
        (b.method, b.backbone, b.tuning["chosen_trial"], b.tuning["dev_rsum"])
    # re-running the same command resumes: every trial is already done
    assert _tune(no_test_split, tmp_path / "res-a", tmp_path / "recipes-a", "--budget", "2") == 0


def test_trial_draws_are_seeded_and_inside_the_space():
    space = space_of("ncr", "vse_bow")
    assert "backbone.image_head" in space and "lr" in space
    draws = [trial_options("ncr", "vse_bow", "flickr8k-clip", t, tune_seed=0) for t in range(1, 9)]
    assert draws == [trial_options("ncr", "vse_bow", "flickr8k-clip", t, tune_seed=0) for t in range(1, 9)]
    assert draws != [trial_options("ncr", "vse_bow", "flickr8k-clip", t, tune_seed=1) for t in range(1, 9)]
    assert trial_options("ncr", "vse_bow", "flickr8k-clip", 0, tune_seed=0) == {}  # trial 0: the starting options
    for d in draws:
        assert d["lr"] in space["lr"] and d["backbone.image_head"] in space["backbone.image_head"]
        assert {k: d[k] for k in ("epochs", "lr_update", "noisy_from")} in space["schedule"]


def test_tune_refuses_what_it_cannot_tune(tmp_path):
    assert main(["tune", "--methods", "probe", "--dataset", "synthetic-small", "--results", str(tmp_path)]) == 2
    assert main(["tune", "--methods", "clean_oracle", "--dataset", "synthetic-small", "--results", str(tmp_path)]) == 2
    assert main(["tune", "--methods", "vanilla", "--dataset", "synthetic,synthetic-small", "--results", str(tmp_path)]) == 2
    assert main(["tune", "--methods", "vanilla", "--budget", "0", "--results", str(tmp_path)]) == 2


def test_run_uses_the_recipe_below_the_users_options(tmp_path):
    tuning = {"budget": 7, "objective": "x", "chosen_trial": 3}
    write_recipe("synthetic", "vanilla", "vse_light", Recipe({"lr": 0.004, "epochs": 5}, {"embed_dim": 32}, tuning),
                 tmp_path)
    runs = plan(SweepSpec(methods=["vanilla", "clean_oracle", "ncr", "probe"], noise=[0.2], recipes=tmp_path))
    by = {r.method: r for r in runs}
    assert by["vanilla"].method_config["lr"] == 0.004 and by["vanilla"].method_config["epochs"] == 5
    assert by["vanilla"].backbone_config["embed_dim"] == 32
    assert by["vanilla"].recipe["kind"] == "tuned" and by["vanilla"].recipe["tuning"]["budget"] == 7
    # clean_oracle shares vanilla's recipe; ncr has none here, so its dataset_defaults apply
    assert by["clean_oracle"].method_config == by["vanilla"].method_config
    assert by["ncr"].recipe["kind"] == "hand-set" and by["ncr"].method_config["epochs"] == 10
    assert by["probe"].backbone == "bow-ridge" and by["probe"].backbone_config == {}
    # the user's option wins and is recorded as an override; provenance is not part of the hash
    over = plan(SweepSpec(methods=["vanilla"], noise=[0.2], recipes=tmp_path, method_options={"lr": "0.001"}))[0]
    assert over.method_config["lr"] == 0.001 and over.recipe["overrides"] == {"lr": "0.001"}
    plain = plan(SweepSpec(methods=["vanilla"], noise=[0.2], recipes=tmp_path, use_recipes=False))[0]
    assert plain.method_config["lr"] == 2e-3 and plain.recipe["kind"] == "hand-set"
    assert over.config_hash != plain.config_hash
    import dataclasses
    assert dataclasses.replace(plain, recipe={"kind": "other"}).config_hash == plain.config_hash


@pytest.mark.parametrize("text, expected", [
    ("[vanilla.vse_light\nmethod = {}", "not valid TOML"),
    ("vanilla = 3\n", "must be a table of backbones"),
    ("[vanilla.vse_light]\nmethod = { lr = 0.1 }\nextra = 1\n", "unknown key(s) extra"),
    ("[vanilla.vse_light]\nmethod = { lrate = 0.1 }\n", "[vanilla.vse_light]: unknown option(s) lrate"),
    ("[vanilla.vse_light]\nmethod = { epochs = \"many\" }\n", "cannot read 'many'"),
])
def test_a_bad_recipe_file_is_one_clear_error_naming_it(tmp_path, capsys, text, expected):
    (tmp_path / "synthetic.toml").write_text(text)
    code = main(["run", "--methods", "vanilla", "--recipes", str(tmp_path), "--results", str(tmp_path / "r"), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and str(tmp_path / "synthetic.toml") in err and expected in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_shipped_recipes_are_valid_for_their_methods():
    """Every recipe in the repository's recipes/ folder plans without error, and is either tuned or
    written by hand with a file that says so (boards then show ``recipe``, not ``tuned``)."""
    from ncbench.recipes import default_folder

    files = sorted(default_folder().glob("*.toml"))
    for path in files:
        dataset = path.stem
        for (method, backbone) in load_recipes(dataset):
            runs = plan(SweepSpec(methods=[method], backbones=[backbone], datasets=[dataset], noise=[0.2]))
            kind = runs[0].recipe["kind"]
            assert runs[0].recipe["source"].endswith(path.name)
            assert kind == "tuned" or (kind == "recipe" and "Hand-set, NOT tuned" in path.read_text()), (path, method)


def test_recipe_file_round_trips(tmp_path):
    r = Recipe({"schedules": (4, 4, 8), "lr": 1e-3, "momentum": True, "form": "cos\"ine"}, {"image_head": "shift"},
               {"budget": 2, "noise": [0.2, 0.5], "objective": "a \\ b"})
    write_recipe("d", "crcl", "vse_bow", r, tmp_path)
    write_recipe("d", "ncr", "vse_bow", Recipe({"lr": 2e-4}, {}, {}), tmp_path)
    back = load_recipes("d", tmp_path)
    assert back[("crcl", "vse_bow")].method == r.method and back[("crcl", "vse_bow")].tuning == r.tuning
    assert back[("ncr", "vse_bow")].method == {"lr": 2e-4} and back[("ncr", "vse_bow")].provenance()["kind"] == "recipe"
    assert np.isclose(back[("crcl", "vse_bow")].method["lr"], 1e-3)


def test_references_join_the_sweep_with_only_the_options_they_have():
    runs = plan(SweepSpec(methods=["vanilla"], noise=[0.2], references=True, method_options={"epochs": "2"}))
    by = {r.method: r for r in runs}
    assert set(by) == {"vanilla", "clean_oracle", "probe"}
    assert by["clean_oracle"].method_config["epochs"] == 2  # the ceiling follows vanilla's options
    assert by["probe"].method_config["epochs"] == 0 and by["probe"].recipe["kind"] == "closed-form"
    with pytest.raises(Exception, match="alphas"):  # named explicitly, the probe refuses what it lacks
        from ncbench.runner import Runner, RunSettings  # noqa: F401
        METHODS.get("probe")(METHODS.get("probe").Config(epochs=3), None)
