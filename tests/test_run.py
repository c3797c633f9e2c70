"""End to end on the embedded dataset: result files, resume, determinism, and that noise hurts."""

import json

import numpy as np
import pytest

from ncbench.cli import main
from ncbench.results import load_results


def sweep(tmp_path, cache_dir, results="r", *extra):
    argv = ["run", "--results", str(tmp_path / results), "--cache-dir", str(cache_dir), "--no-progress", "--device", "cpu",
            *extra]
    return main(argv)


def test_result_file_contents_resume_and_determinism(tmp_path, cache_dir, capsys):
    args = ("--noise", "0.2", "--method-opt", "epochs=2")
    assert sweep(tmp_path, cache_dir, "r", *args) == 0
    loaded = load_results(tmp_path / "r")
    assert not loaded.errors
    res = [r for r in loaded.results]
    assert len(res) == 1
    r = res[0]
    ident = r["identity"]
    assert (ident["method"], ident["backbone"], ident["dataset"], ident["noise_ratio"], ident["seed"]) == \
        ("vanilla", "vse_light", "synthetic", 0.2, 0)
    assert len(ident["noise_index_sha256"]) == 64 and 0.19 < ident["noise_realised_ratio"] <= 0.2
    assert r["config"]["method_config"]["epochs"] == 2 and len(r["config_hash"]) == 64
    assert r["status"] == "ok" and r["test"]["primary"] == "full"
    assert 0 < r["test"]["full"]["rsum"] <= 600
    assert len(r["ranks"]["i2t"]) == 500 and len(r["ranks"]["t2i"]) == 2500
    assert len(r["history"]) == 2 and r["best_val"]["epoch"] in (0, 1)
    assert r["env"]["versions"]["torch"] and "hardware" in r["env"] and "git" in r["env"]
    assert r["timings"]["total_s"] > 0
    # the noise index was saved in the official format beside the results
    saved = list((tmp_path / "r" / "noise_index").glob("synthetic-*_0.2_seed0.npy"))
    assert len(saved) == 1

    # re-running the same sweep trains nothing
    path = r["_path"]
    before = open(path).read()
    capsys.readouterr()
    assert sweep(tmp_path, cache_dir, "r", *args) == 0
    assert "0 run(s) trained, 1 already done" in capsys.readouterr().out
    assert open(path).read() == before

    # an interrupted sweep resumes: only the missing run is trained
    assert sweep(tmp_path, cache_dir, "r", "--noise", "0,0.2", "--method-opt", "epochs=2") == 0
    assert "1 run(s) trained, 1 already done" in capsys.readouterr().out

    # same config and seed, fresh folder: identical metrics on CPU
    assert sweep(tmp_path, cache_dir, "r2", *args) == 0
    again = [x for x in load_results(tmp_path / "r2").results][0]
    assert again["test"] == r["test"] and again["ranks"] == r["ranks"]
    assert again["identity"]["noise_index_sha256"] == ident["noise_index_sha256"]

    # a changed config replaces the result, and the old one is kept under superseded/
    assert sweep(tmp_path, cache_dir, "r", "--noise", "0.2", "--method-opt", "epochs=1") == 0
    kept = list((tmp_path / "r" / "superseded").rglob("seed-0.stale.*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["config"]["method_config"]["epochs"] == 2

    # the leaderboard reads them back
    assert main(["leaderboard", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "lb")]) == 0
    table = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "| 20%" in table and "vanilla" in table


def test_corrupt_result_is_rerun_and_kept(tmp_path, cache_dir, capsys):
    args = ("--dataset", "synthetic-small", "--noise", "0", "--backbones", "vse_bow", "--method-opt", "epochs=1")
    assert sweep(tmp_path, cache_dir, "r", *args) == 0
    path = next((tmp_path / "r").rglob("seed-0.json"))
    path.write_text("{ truncated")
    assert sweep(tmp_path, cache_dir, "r", *args) == 0
    assert "corrupt, moved to" in capsys.readouterr().out
    assert json.loads(path.read_text())["status"] == "ok"
    assert list((tmp_path / "r" / "superseded").rglob("seed-0.corrupt.*.json"))


@pytest.mark.slow
def test_noise_hurts_the_noise_blind_baseline(sweep_root, cache_dir):
    """The embedded dataset must make noise matter: vanilla loses clearly more rSum at 60% noise.
    On the shared sweep's backbone (``vse_bow``; seed 0 at 60% is the sweep's own run): 433 vs 231
    rSum, the same margin as the default ``vse_light`` at a tenth of the time."""
    argv = ["run", "--noise", "0,0.6", "--backbones", "vse_bow", "--seeds", "0", "--results", str(sweep_root),
            "--cache-dir", str(cache_dir), "--no-progress"]
    assert main(argv) == 0
    by_ratio = {r["identity"]["noise_ratio"]: r["test"]["full"]["rsum"] for r in load_results(sweep_root).results
                if r["identity"]["method"] == "vanilla" and r["identity"]["seed"] == 0}
    assert by_ratio[0.0] > 350
    assert by_ratio[0.0] - by_ratio[0.6] > 150


def test_nan_loss_fails_the_run_with_its_epoch(tmp_path, cache_dir, capsys):
    """A run whose loss turns NaN is written with status failed and the place it happened; the
    command exits non-zero; the rest of the sweep still runs."""
    import torch

    from ncbench.registry import METHODS

    Vanilla = METHODS.get("vanilla")

    class Diverging(Vanilla):
        """Test-only: vanilla whose loss becomes NaN in its second epoch."""

        def train_epoch(self, epoch):
            if epoch == 1:
                with torch.no_grad():
                    for p in self.net.parameters():
                        p.fill_(float("nan"))
            return super().train_epoch(epoch)

    METHODS.register("diverging_test")(Diverging)
    try:
        code = sweep(tmp_path, cache_dir, "r", "--methods", "diverging_test,vanilla", "--noise", "0.2",
                     "--backbones", "vse_bow", "--method-opt", "epochs=2")
    finally:
        METHODS.unregister("diverging_test")
    assert code == 1
    err = capsys.readouterr().err
    assert "failed: diverging_test" in err and "loss became nan (epoch 1" in err
    failed = json.loads(next((tmp_path / "r").rglob("diverging_test/*/seed-0.json")).read_text())
    assert failed["status"] == "failed" and "epoch 1" in failed["error"]
    assert json.loads(next((tmp_path / "r").rglob("vanilla/*/seed-0.json")).read_text())["status"] == "ok"


def test_bf16_autocast_runs_end_to_end_and_is_recorded(tmp_path, cache_dir, capsys):
    """The mixed-precision path (``--amp bf16``), exercised on the CPU's autocast: products run in
    bfloat16, the ranking stays close to float32's, the result records the setting, and the verbose
    epoch line reports throughput and the time still to go."""
    import numpy as np
    import torch

    from ncbench.evaluate import similarity_matrix
    from ncbench.precision import compute
    from ncbench.registry import BACKBONES, DATASETS

    ds = DATASETS.get("synthetic-small").load(None, cache_dir)
    cls = BACKBONES.get("vse_light")
    torch.manual_seed(0)
    net = cls(cls.Config(), len(ds.vocab), ds.test.images.shape[-1]).eval()
    with compute(torch.device("cpu"), "bf16"):
        x = torch.from_numpy(np.array(ds.test.images[:4]))
        assert net.fc(x).dtype == torch.bfloat16
    s32 = similarity_matrix([net], ds.test, torch.device("cpu"))
    s16 = similarity_matrix([net], ds.test, torch.device("cpu"), precision="bf16")
    assert s16.dtype == np.float32 and not np.array_equal(s16, s32)
    assert np.abs(s16 - s32).max() < 0.02  # bfloat16 keeps ~3 significant digits of a cosine

    out = tmp_path / "r"
    assert main(["run", "--dataset", "synthetic-small", "--noise", "0.2", "--method-opt", "epochs=2", "--precision", "bf16",
                 "--results", str(out), "--cache-dir", str(cache_dir), "--no-progress", "-v"]) == 0
    printed = capsys.readouterr().out
    assert "pairs/s" in printed and "ETA" in printed
    (r,) = load_results(out).results
    assert r["status"] == "ok" and r["meta"]["precision"] == "bf16"
    assert all(h["pairs_per_s"] > 0 and h["eta_s"] >= 0 for h in r["history"]) and r["history"][-1]["eta_s"] == 0


def test_a_bad_input_after_a_finished_run_leaves_the_result_in_place(tmp_path, cache_dir, capsys):
    """Issue 23 item 1 (first part): a run of another config with a bad --noise-file moved the finished
    result aside to superseded/ before rejecting the file, and status then showed the run missing.
    Nothing is moved until the replacing run has produced its result."""
    args = ("--noise", "0.2", "--method-opt", "epochs=1")
    assert sweep(tmp_path, cache_dir, "r", *args) == 0
    path = next((tmp_path / "r").rglob("seed-0.json"))
    before = path.read_text()
    bad = tmp_path / "short.npy"
    np.save(bad, np.arange(10))
    capsys.readouterr()
    code = sweep(tmp_path, cache_dir, "r", "--noise", "0.2", "--method-opt", "epochs=2", "--noise-file", str(bad))
    assert code == 2 and "short.npy" in capsys.readouterr().err
    assert path.read_text() == before and not (tmp_path / "r" / "superseded").exists()
    assert main(["status", "--dataset", "synthetic", "--methods", "vanilla", *args, "--results", str(tmp_path / "r")]) == 0
    assert "1 done" in capsys.readouterr().out


def test_the_recipe_column_says_how_a_schedule_was_chosen():
    """Issue 30 item 5: ``defaults`` was shown for the embedded dataset's hand-set schedules too."""
    from ncbench.registry import DATASETS
    from ncbench.report.aggregate import recipe_label
    from ncbench.runner import options

    kind = lambda method, dataset: options(method, "vse_bow", DATASETS.get(dataset), {}, {}, {})[2]["kind"]  # noqa: E731
    assert kind("ncr", "synthetic") == "hand-set" and kind("ncr", "synthetic-small") == "hand-set"
    assert kind("ncr", "f30k") == "paper"
    assert kind("probe", "synthetic") == "closed-form"
    assert recipe_label({"kind": "hand-set", "overrides": {"epochs": 2}}) == "hand-set +opts"
