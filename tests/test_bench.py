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
from ncbench.kernels.recall import i2t_ranks


def test_bench_command_reports_every_method(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--methods", "vanilla,ncr,bicro,crcl", "--n-train", "40", "--n-test", "10", "--device", "cpu",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "pairs/s" in table and "crcl" in table
    data = json.loads(out.read_text())
    assert [r["method"] for r in data["results"]] == ["vanilla", "ncr", "bicro", "crcl"]
    for r in data["results"]:
        assert r["n_train_pairs"] == 200 and r["pairs_per_s"] > 0 and r["eval_s"] > 0
        # issue 23 item 6: three timed epochs (was one), the median reported with the spread
        assert len(r["epoch_s"]) == 3 and r["train_s_per_epoch"] == pytest.approx(sorted(r["epoch_s"])[1], abs=1e-4)
        assert r["spread"] == pytest.approx((max(r["epoch_s"]) - min(r["epoch_s"])) / r["train_s_per_epoch"], abs=2e-4)
    assert "spread" in table and "min–max" in table
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
