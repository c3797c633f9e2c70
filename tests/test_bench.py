"""``ncbench bench`` (end-to-end throughput) and the speed-regression bookkeeping."""

import json

import numpy as np
import torch

from ncbench.benchmarking import compare, load_baseline, measure_speedup, save_baseline
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
    assert data["env"]["versions"]["torch"]


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
    finally:
        torch.set_num_threads(threads)
    assert good > 1.0, good  # the real kernel beats the loop it replaces
    regressions = compare({"recall-i2t": slowed}, baseline)
    assert regressions and regressions[0].group == "recall-i2t", (good, slowed)
