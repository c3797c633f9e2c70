"""``ncbench bench`` (end-to-end throughput) and the speed-regression bookkeeping."""

import json

import numpy as np
import pytest
import torch

from ncbench.benchmarking import (
    Regression,
    append_history,
    compare,
    confirm,
    differences,
    load_baseline,
    load_history,
    load_runs,
    measure_speedup,
    reference_speedups,
    save_baseline,
    step_changes,
)
from ncbench.cli import main
from ncbench.data.noise import make_noise_index
from ncbench.data.shaped import shaped_dataset
from ncbench.engine.context import make_context
from ncbench.kernels.mixture import SplitFit
from ncbench.kernels.recall import i2t_ranks
from ncbench.registry import METHODS
from ncbench.runner import seed_everything
from ncbench.throughput import (
    ESTIMATE_NOTE,
    CardSizes,
    PhaseTiming,
    TrainedPairs,
    bench_dataset,
    card_sizes,
    estimate_run,
    measure,
    training_phases,
)

NCR, CREAM = METHODS.get("ncr"), METHODS.get("cream")


def test_bench_command_reports_every_method(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--methods", "vanilla,ncr,bicro,crcl", "--backbones", "vse_bow", "--n-train", "40",
                 "--threads", "1", "--n-test", "10", "--warmup", "0", "--device", "cpu",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "pairs/s" in table and "crcl" in table
    data = json.loads(out.read_text())
    assert [r["method"] for r in data["results"]] == ["vanilla", "ncr", "bicro", "crcl"]
    # issue 33 item 1: co-teaching methods timed before and after their noisy subset joins
    assert [[p["phase"] for p in r["phases"]] for r in data["results"]] == [
        ["steady"], ["warm-up", "clean", "clean+noisy"], ["warm-up", "clean", "clean+noisy"], ["warm-up", "steady"]]
    for r in data["results"]:
        assert r["n_train_pairs"] == 200 and r["eval_s"] > 0
        for p in r["phases"]:
            assert p["pairs_per_s"] > 0
            assert len(p["trained_pairs"]) == (2 if r["method"] in ("ncr", "bicro") else 1)  # one count per network
            # issue 23 item 6: three timed epochs (was one), the median reported with the spread
            assert len(p["epoch_s"]) == 3 and p["train_s_per_epoch"] == pytest.approx(sorted(p["epoch_s"])[1], abs=1e-4)
            assert p["spread"] == pytest.approx((max(p["epoch_s"]) - min(p["epoch_s"])) / p["train_s_per_epoch"], abs=2e-4)
            assert p["trained_pairs_per_s"] == pytest.approx(sum(p["trained_pairs"]) / p["train_s_per_epoch"], rel=1e-3)
        assert r["estimate"]["is_estimate"] is True and r["estimate"]["card"] == "synthetic"
    vanilla, ncr = data["results"][0]["phases"][0], data["results"][1]["phases"]
    assert vanilla["trained_pairs"] == [200.0] and ncr[0]["trained_pairs"] == [200.0, 200.0]  # warm-up: all, each net
    assert all(0 < n < 200 for n in ncr[1]["trained_pairs"])  # only the peer's clean split
    by_hand = ncr[2]["trained_pairs_per_s"] / vanilla["trained_pairs_per_s"]
    assert ncr[2]["trained_relative_to_vanilla"] == pytest.approx(by_hand, rel=1e-3)
    assert "spread" in table and "min–max" in table and "trained pairs/s" in table and "clean+noisy (5)" in table
    assert "ESTIMATE of one full run" in table and "est. total" in table
    assert data["env"]["versions"]["torch"]


def test_bench_warns_when_the_machine_is_busy(tmp_path, capsys, monkeypatch):
    import os

    monkeypatch.setattr(os, "getloadavg", lambda: (16.0, 16.0, 16.0))
    assert main(["bench", "--methods", "vanilla", "--n-train", "20", "--n-test", "5", "--device", "cpu",
                 "--epochs", "2", "--warmup", "0", "--cache-dir", str(tmp_path / "cache")]) == 0
    err = capsys.readouterr().err
    assert "this machine is busy (load average 16.0" in err and "before timing" in err and "after timing" in err


def test_bench_rejects_bad_sizes(capsys):
    assert main(["bench", "--n-train", "3"]) == 2
    assert "--n-train" in capsys.readouterr().err


def test_compare_flags_only_a_worse_ratio():
    base = {"a": 10.0, "b": 4.0, "c": 2.0}
    found = compare({"a": 7.9, "b": 3.3, "c": 2.5, "new": 1.0}, base)
    assert [r.group for r in found] == ["a"]  # 10/7.9 = 1.27 > 1.25; 4/3.3 = 1.21 is within 25%


def slow_i2t_ranks(sims, cpi):
    """The same kernel with a Python loop swapped in: what a careless change might do."""
    out = []
    for i in range(sims.shape[0]):
        row = sims[i]
        best = max(float(row[i * cpi + k]) for k in range(cpi))
        out.append(sum(1 for v in row.tolist() if v > best) + sum(1 for v in row.tolist() if v == best) - 1)
    return torch.tensor(out)


def test_a_deliberately_slowed_kernel_fails_the_regression_check(tmp_path):
    rng = np.random.default_rng(0)
    sims = torch.from_numpy(rng.normal(size=(300, 1500)).astype(np.float32))
    assert torch.equal(slow_i2t_ranks(sims, 5), i2t_ranks(sims, 5))

    def argsort_loop():
        s = sims.numpy()
        return [np.argsort(s[i])[::-1] for i in range(s.shape[0])]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: a busy machine slows kernel and baseline alike
    try:
        good = measure_speedup(lambda: i2t_ranks(sims, 5), argsort_loop, rounds=9)
        save_baseline(tmp_path / "baseline.json", {"recall-i2t": good})
        baseline = load_baseline(tmp_path / "baseline.json")
        slowed = measure_speedup(lambda: slow_i2t_ranks(sims, 5), argsort_loop, rounds=3)
        flagged = compare({"recall-i2t": slowed}, baseline)
        # the re-measure that the benchmark suite does before failing: a real slow-down stays
        confirmed, noise = confirm(flagged, lambda g: measure_speedup(lambda: slow_i2t_ranks(sims, 5), argsort_loop, 3))
    finally:
        torch.set_num_threads(threads)
    assert good > 1.0, good  # the real kernel beats the loop it replaces
    assert flagged and flagged[0].group == "recall-i2t", (good, slowed)
    assert [r.group for r in confirmed] == ["recall-i2t"] and not noise


def test_a_flagged_group_is_failed_only_if_the_second_measurement_agrees():
    flagged = [Regression("noisy", 10.0, 7.5), Regression("slow", 10.0, 5.0), Regression("untimable", 10.0, 7.0)]
    again = {"noisy": 9.1, "slow": 5.2, "untimable": None}
    confirmed, noise = confirm(flagged, again.get)
    assert [(r.group, r.speedup) for r in confirmed] == [("slow", 5.2), ("untimable", 7.0)]
    assert [(r.group, r.speedup) for r in noise] == [("noisy", 9.1)]  # 10/9.1 = 1.10, within 25%


def test_the_stored_baseline_is_the_median_of_the_last_five_recorded_runs(tmp_path):
    history = tmp_path / "history.jsonl"
    # one lucky run (30) among steady ones: the median ignores it; "new" was recorded twice
    for run in [{"a": 1.0}, {"a": 10.0}, {"a": 12.0}, {"a": 30.0}, {"a": 11.0, "new": 4.0}, {"a": 9.0, "new": 6.0}]:
        append_history(history, run, {"threads": 1})
    append_history(history, {"a": 50.0}, {"threads": 8})  # another thread count: not comparable
    runs = load_history(history, threads=1)
    assert runs[0] == {"a": 1.0} and len(runs) == 6 and len(load_history(history)) == 7
    # last five values of a: 10, 12, 30, 11, 9 -> median 11 (the oldest run, 1.0, is out of the window)
    assert reference_speedups(runs) == {"a": 11.0, "new": 5.0}


def test_a_malformed_history_names_the_file_and_line(tmp_path):
    history = tmp_path / "history.jsonl"
    history.write_text('{"speedups": {"a": 2.0}}\n{"speedups": "fast"}\n')
    with pytest.raises(ValueError, match=r"history.jsonl: line 2"):
        load_history(history)


def _env(**changes):
    env = {"cpu": "AMD EPYC", "machine": "x86_64", "threads": 1, "torch": "2.13.0+cpu", "numpy": "2.4.6",
           "scikit-learn": "1.9.1", "python": "3.11.9"}
    return {**env, **changes}


def test_only_runs_of_the_same_machine_make_the_baseline(tmp_path):
    """Issue 33 item 6: a ratio from another CPU or library version is not compared, and runs from
    before machines were recorded count for none."""
    history = tmp_path / "history.jsonl"
    append_history(history, {"a": 70.0}, {"threads": 1})  # machine not recorded
    append_history(history, {"a": 50.0}, {"threads": 1, "env": _env(cpu="Intel Xeon")})
    append_history(history, {"a": 61.0}, {"threads": 1, "env": _env(), "commit": "c" * 40})
    append_history(history, {"a": 63.0}, {"threads": 1, "env": _env(python="3.12.1")})  # python is recorded, not compared
    runs = load_runs(history, env=_env())
    assert [r["speedups"]["a"] for r in runs] == [61.0, 63.0] and runs[0]["commit"] == "c" * 40
    assert load_history(history, env=_env(numpy="2.5.0")) == []
    assert differences(None, _env()) == ["machine not recorded"]
    assert differences(_env(torch="2.12.0"), _env()) == ["torch '2.12.0' vs '2.13.0+cpu'"]


def test_a_step_in_the_history_is_found_and_the_baseline_follows_it():
    """A drop that stays (82 → 70 → 61 in the real history of crcl-acl) is a step at the run that
    brought it; one lucky run is not; the baseline is the median after the last step."""
    values = [82, 81, 83, 82, 70, 71, 69, 70, 95, 70, 71]
    runs = [{"speedups": {"g": float(v)}, "time": f"t{i}", "commit": None} for i, v in enumerate(values)]
    steps = step_changes(runs)
    # by hand: at index 4 the medians of (81, 83, 82) and (70, 71, 69) are 82 and 70 (17% apart, past
    # the 10% step tolerance, and the largest such gap); around the lucky 95 they stay 70 and 71
    assert [(s.group, s.index, s.before, s.after) for s in steps] == [("g", 4, 82.0, 70.0)]
    assert "step change 82.00× → 70.00× from the run of t4" in str(steps[0])
    speedups = [r["speedups"] for r in runs]
    assert reference_speedups(speedups, steps=steps) == {"g": 70.0}  # last five of 70, 71, 69, 70, 95, 70, 71
    # a window reaching back over the step would mix both levels: 69, 70, 70, 70, 71, 71, 82, 95 -> 70.5
    assert reference_speedups(speedups, window=8) == {"g": 70.5}
    assert reference_speedups(speedups, window=8, steps=steps) == {"g": 70.0}
    assert step_changes(runs[4:]) == []  # one machine, one level: no step


# -- issue 33 item 1: the pairs each epoch trains, per phase, and the estimated full run --------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """20 images × 5 captions = 100 training pairs."""
    return bench_dataset("synthetic", 20, 5, tmp_path_factory.mktemp("cache"))


def _force_split(monkeypatch, cls, clean_a, clean_b):
    """Replace the division by fixed splits: network A's clean pairs are ``clean_a``, B's ``clean_b``."""
    masks = [torch.from_numpy(m.astype(np.float32)) for m in (clean_a, clean_b)]
    monkeypatch.setattr(cls, "per_sample_losses", lambda self: masks)
    monkeypatch.setattr(cls, "fit_split", lambda self, prob: SplitFit(prob, prob, None, 0))


def _trained(row):
    return {p.phase: [int(n) for n in p.trained_pairs] for p in row.phases}


def test_ncr_trained_pairs_equal_a_count_by_hand_on_a_forced_split(tiny, monkeypatch):
    monkeypatch.setitem(NCR.dataset_defaults, "synthetic", {**NCR.dataset_defaults["synthetic"], "batch_size": 16})
    ids = np.arange(100)
    _force_split(monkeypatch, NCR, ids < 60, ids < 70)  # A: 60 clean / 40 noisy; B: 70 clean / 30 noisy
    (row,) = measure(["ncr"], "vse_bow", tiny, "cpu", repeats=1, warmup=0)
    assert [(p.phase, p.first_epoch, p.schedule_epochs) for p in row.phases] == [
        ("warm-up", 0, 5), ("clean", 5, 5), ("clean+noisy", 10, 5)]
    # by hand, batches of 16. Warm-up: every pair, each network. Clean phase: A trains on B's clean
    # split (70 pairs), B on A's (60). Once the noisy subset joins, each clean batch brings the next
    # batch of the cycled noisy loader: A's 5 clean batches (16, 16, 16, 16, 6) bring noisy batches
    # of B's 30 noisy pairs 16, 14, 16, 14, 16 = 76; B's 4 (16, 16, 16, 12) bring A's 40 noisy as
    # 16, 16, 8, 16 = 56.
    assert _trained(row) == {"warm-up": [100, 100], "clean": [70, 60], "clean+noisy": [70 + 76, 60 + 56]}
    assert row.n_train_pairs == 100 and row.phases[1].pairs_per_s == pytest.approx(100 / row.phases[1].train_s_per_epoch)
    assert row.phases[2].trained_pairs_per_s == pytest.approx(262 / row.phases[2].train_s_per_epoch)
    assert row.phases[0].plan_s == [0.0] or row.phases[0].plan_s[0] < row.phases[0].epoch_s[0]


def test_cream_trained_pairs_count_the_hard_subset_only_while_its_loader_lasts(tiny, monkeypatch):
    monkeypatch.setitem(CREAM.dataset_defaults, "synthetic", {**CREAM.dataset_defaults["synthetic"], "batch_size": 16})
    ids = np.arange(100)
    a = (ids < 60) | (ids >= 90)
    b = (ids < 50) | ((ids >= 60) & (ids < 80))
    _force_split(monkeypatch, CREAM, a, b)  # clean (both): 0–49; hard (one): 50–79, 90–99; noisy (none): 80–89
    (row,) = measure(["cream"], "vse_bow", tiny, "cpu", repeats=1, warmup=0)
    assert [(p.phase, p.first_epoch, p.schedule_epochs) for p in row.phases] == [
        ("warm-up", 0, 2), ("clean", 2, 2), ("clean+hard", 4, 1), ("clean+hard+noisy", 5, 3)]
    # by hand: 4 iterations over the 50 clean pairs (16, 16, 16, 2); the 40 hard pairs make 3
    # batches (16, 16, 8), trained in the first three iterations only (the fourth keeps the last
    # hard batch for the filter, untrained: 48 if it counted); the 10 noisy pairs, cycled, 4 × 10.
    assert _trained(row) == {"warm-up": [100, 100], "clean": [50, 50], "clean+hard": [90, 90],
                             "clean+hard+noisy": [130, 130]}


def test_counting_leaves_the_training_unchanged_and_counts_only_training_forwards(tiny):
    def one_epoch(counter):
        ctx = make_context(tiny, make_noise_index(tiny.train.caption_to_row(), 0.2, 0), "vse_bow", {},
                           torch.device("cpu"), seed_everything(0))
        if counter:
            ctx.build_backbone = counter.watch(ctx.build_backbone)
        m = METHODS.get("vanilla")(METHODS.get("vanilla").make_config("synthetic"), ctx)
        m.train_epoch(0)
        return m

    counter = TrainedPairs()
    counted, plain = one_epoch(counter), one_epoch(None)
    for (k, v), (k2, v2) in zip(counted.net.state_dict().items(), plain.net.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    assert counter.of(counted.networks()) == [100]  # one batch of all 100 pairs
    net, batch = counted.net, counted.ctx.train.batch(np.arange(4))
    with torch.no_grad():
        net.train()(batch.images, batch.tokens, batch.lengths)  # a prediction without gradients
    net.eval()(batch.images, batch.tokens, batch.lengths)  # an evaluation-mode forward
    assert counter.of([net]) == [100]
    net.train()(batch.images, batch.tokens, batch.lengths)
    net.encode_captions(batch.tokens, batch.lengths)  # a method that encodes on its own is counted too
    assert counter.of([net, plain.net]) == [108, 0]  # a network built without the counter counts none
    wrapper = torch.nn.ModuleDict({"inner": net})  # a method's network that holds a built backbone (MSCN)
    assert counter.of([wrapper]) == [108]
    counter.reset()
    assert counter.of([net]) == [0]


def test_phases_follow_each_schedule(tiny):
    def phases(method, dataset="f30k", **overrides):
        ctx = make_context(tiny, make_noise_index(tiny.train.caption_to_row(), 0.0, 0), "vse_bow", {},
                           torch.device("cpu"), torch.Generator())
        mcls = METHODS.get(method)
        return [(p.name, p.start, p.end) for p in training_phases(mcls(mcls.make_config(dataset, overrides), ctx))]

    # F30K: NCR 5 warm-up + 40 epochs, the noisy subset from co-training epoch 20
    assert phases("ncr") == [("warm-up", 0, 5), ("clean", 5, 25), ("clean+noisy", 25, 45)]
    assert phases("ncr", noisy_from=40) == [("warm-up", 0, 5), ("clean", 5, 45)]  # never joins
    assert phases("bicro", noisy_from=-1, warmup_epochs=0) == [("clean", 0, 20), ("clean+noisy", 20, 40)]  # 40 // 2
    # CREAM: hard from 10, noisy from 15; or the other way round
    assert phases("cream") == [("warm-up", 0, 5), ("clean", 5, 15), ("clean+hard", 15, 20), ("clean+hard+noisy", 20, 45)]
    assert phases("cream", hard_from=4, noisy_from=2) == [("warm-up", 0, 5), ("clean", 5, 7), ("clean+noisy", 7, 9),
                                                          ("clean+noisy+hard", 9, 45)]
    assert phases("vanilla", "synthetic") == [("steady", 0, 12)]
    assert phases("l2rm", "synthetic", warmup_epochs=2, epochs=6) == [("warm-up", 0, 2), ("steady", 2, 8)]  # the default


def test_the_estimate_is_the_arithmetic_of_the_card_and_the_timings():
    warm = PhaseTiming("warm-up", 0, 5, 100, epoch_s=[2.0, 4.0, 3.0], plan_s=[0.0, 0.0, 0.0])
    clean = PhaseTiming("clean", 5, 10, 100, epoch_s=[5.0, 6.0], plan_s=[1.0, 2.0])
    sizes = CardSizes("x", train_pairs=1000, dev_images=10, dev_captions=50, test_images=20, test_captions=100)
    est = estimate_run([warm, clean], 100, eval_s=0.5, eval_pairs=5 * 25, sizes=sizes)
    # by hand: pairs scale 1000 / 100 = 10; steps: 5 × median(2, 4, 3) + 10 × median(5 − 1, 6 − 2) = 15 + 40;
    # division: 10 × median(1, 2) = 15; validation: 15 epochs × 0.5 s × (10 · 50) / (5 · 25) = 30;
    # test: 0.5 s × (20 · 100) / (5 · 25) = 8
    assert (est.train_scale, est.dev_scale, est.test_scale) == (10, 4, 16)
    assert (est.training_s, est.division_s, est.validation_s, est.test_s) == (550, 150, 30, 8)
    assert est.total_s == 738 and est.epochs == {"warm-up": 5, "clean": 10}
    assert est.to_dict()["is_estimate"] is True and est.to_dict()["note"] == ESTIMATE_NOTE


def test_card_sizes_are_the_registered_cards_own(tiny):
    assert card_sizes(tiny.card) == CardSizes("synthetic", 5000, 200, 1000, 500, 2500)  # not the bench's 20 images
    assert card_sizes(shaped_dataset("f30k", 3, 2).card) == CardSizes("f30k", 145000, 1014, 5070, 1000, 5000)
    assert card_sizes(shaped_dataset("coco", 3, 2).card) == CardSizes("coco", 566435, 1000, 5000, 5000, 25000)
