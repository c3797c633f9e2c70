"""Two configs of one method in one results folder (``--tag``), and boards that never pool configs."""

from __future__ import annotations

import hashlib
import json

import pytest

from ncbench.cli import main
from ncbench.config import RunConfig, check_tag
from ncbench.errors import ConfigError

RUN = ["run", "--methods", "vanilla", "--dataset", "synthetic-small", "--noise", "0.2", "--threads", "1",
       "--no-progress"]


def test_a_tag_names_the_row_and_the_folder_and_keeps_untagged_hashes():
    plain = RunConfig("ncr", "vse_light", "synthetic", 0.2, 0)
    tagged = RunConfig("ncr", "vse_light", "synthetic", 0.2, 0, tag="lr1e-3")
    assert plain.row_name == "ncr" and tagged.row_name == "ncr@lr1e-3"
    assert plain.config_hash != tagged.config_hash
    # an untagged run hashes as before tags existed: the canonical JSON has no "tag" key
    data = {k: v for k, v in plain.to_dict().items() if k not in ("recipe", "trial", "noise_type", "tag")}
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    assert plain.config_hash == hashlib.sha256(blob.encode()).hexdigest()
    assert plain.label.startswith("ncr/vse_light") and tagged.label.startswith("ncr@lr1e-3/vse_light")
    for bad in ("", "a/b", "../x", "x" * 41, "-x"):
        with pytest.raises(ConfigError, match="--tag"):
            check_tag(bad)


@pytest.mark.slow
def test_two_configs_of_one_method_coexist_and_each_row_is_its_own(tmp_path, cache_dir, capsys):
    results = tmp_path / "results"
    common = ["--results", str(results), "--cache-dir", str(cache_dir)]
    assert main([*RUN, *common, "--method-opt", "epochs=2"]) == 0
    first = results / "protocol-1" / "synthetic-small" / "noise-0.2" / "vanilla" / "vse_light" / "seed-0.json"
    before = first.read_bytes()
    assert main([*RUN, *common, "--method-opt", "epochs=3", "--tag", "e3"]) == 0
    second = results / "protocol-1" / "synthetic-small" / "noise-0.2" / "vanilla@e3" / "vse_light" / "seed-0.json"
    assert first.read_bytes() == before  # untouched, not superseded
    tagged = json.loads(second.read_text())
    assert tagged["identity"]["tag"] == "e3" and tagged["config"]["method_config"]["epochs"] == 3
    assert not (results / "superseded").exists()
    capsys.readouterr()

    # status chooses by the options it is given: each config is done in its own place
    for extra in (["--method-opt", "epochs=2"], ["--method-opt", "epochs=3", "--tag", "e3"]):
        assert main(["status", "--methods", "vanilla", "--dataset", "synthetic-small", "--noise", "0.2",
                     *common, *extra]) == 0
        assert "1 done (1 run(s))" in capsys.readouterr().out

    # the board has one row per config, each with its own file's numbers
    assert main(["leaderboard", "--results", str(results), "--out", str(tmp_path / "boards"), "--no-plots"]) == 0
    rows = {line.split("|")[2].strip(): line for line in capsys.readouterr().out.splitlines() if "| 20%" in line}
    assert set(rows) == {"vanilla", "vanilla@e3"}
    for name, path in (("vanilla", first), ("vanilla@e3", second)):
        assert f"{json.loads(path.read_text())['test']['full']['rsum']:.1f}" in rows[name]
    assert main(["compare", "--methods", "vanilla,vanilla@e3", "--dataset", "synthetic-small", "--noise", "0.2",
                 "--results", str(results), "--resamples", "100"]) == 0
    assert "vanilla (vse_light) vs vanilla@e3 (vse_light)" in capsys.readouterr().out


def test_a_board_refuses_to_pool_two_configs_in_one_row(tmp_path, result_dict, capsys):
    from ncbench.results import identity_path

    for folder, seed, lr in (("a", 0, 1e-3), ("b", 1, 2e-3)):
        rec = result_dict(method="ncr", seed=seed, noise=0.2)
        rec["config"]["method_config"] = {"lr": lr}
        path = identity_path(tmp_path / folder, rec["identity"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))
    args = ["leaderboard", "--results", str(tmp_path / "a"), "--results", str(tmp_path / "b"),
            "--out", str(tmp_path / "boards"), "--no-plots"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "results of different configs would be pooled into one row" in err
    assert "ncr (vse_light) on synthetic at caption-level noise 0.2: 2 configs in one row" in err
    assert "--tag NAME" in err
    assert main(args[:3] + args[5:]) == 0  # one config alone is fine


def test_a_tagged_config_is_submitted_as_a_row_of_its_own(tmp_path, result_dict, capsys):
    """submit keeps the tag: the accepted files land under <method>@<tag>/, beside the untagged ones."""
    from ncbench.results import identity_path

    for tag in (None, "lr1e-3"):
        for seed in (0, 1, 2):
            rec = result_dict(method="ncr", seed=seed, noise=0.2, committed=True)
            if tag:
                rec["identity"]["tag"] = rec["config"]["tag"] = tag
            path = identity_path(tmp_path / "results", rec["identity"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rec))
    dest = tmp_path / "accepted"
    assert main(["submit", str(tmp_path / "results"), "--dest", str(dest)]) == 0
    assert "6 accepted, 0 refused" in capsys.readouterr().out
    folders = sorted(p.parent.parent.name for p in dest.rglob("seed-*.json"))
    assert folders == ["ncr"] * 3 + ["ncr@lr1e-3"] * 3
