"""Submissions (validated as data, never executed) and the ``new-method`` skeletons."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from ncbench.cli import main
from ncbench.data.noise import array_sha256, make_noise_index
from ncbench.registry import METHODS
from ncbench.submission import canonical_noise, result_schema, review


@pytest.fixture
def write_result(write_result):
    """Results of committed code (issue 30 item 3: ``submit`` refuses unknown or uncommitted code)."""
    def write(root, **fields):
        return write_result(root, **({} if "data" in fields else {"committed": True}), **fields)

    return write


def _three(write_result, root, **fields):
    return [write_result(root, seed=s, **fields) for s in range(3)]


def test_canonical_noise_entries_are_reproducible(shared_data):
    """Every sha256 in the reference file is recomputed from its source: the generator for the
    embedded dataset, identity indices, and the papers' shipped files in ../shared/data."""
    table = canonical_noise()
    for kind in ("caption", "image"):
        for ratio, entry in table["synthetic"][kind].items():
            assert make_noise_index(np.arange(5000) // 5, float(ratio), 0, kind).sha256 == entry["sha256"]
    for kind in ("caption", "image"):
        assert table["f30k"][kind]["0"]["sha256"] == array_sha256(np.arange(145000) // 5)
        assert table["coco"][kind]["0"]["sha256"] == array_sha256(np.arange(566435) // 5)
    for ratio in ("0.2", "0.4", "0.5", "0.6"):
        arr = np.load(shared_data / "noise_index_f30k" / "bicro" / f"f30k_precomp_{ratio}.npy")
        assert array_sha256(arr) == table["f30k"]["caption"][ratio]["sha256"]
    assert "0.8" not in table["f30k"]["caption"]  # no caption-level 80% file exists (L2RM's is image-level)
    for dataset, n_img in (("f30k", 29000), ("coco", 113287)):
        for ratio in ("0.2", "0.4", "0.5", "0.6", "0.8"):
            arr = np.load(shared_data / f"noise_index_{dataset}" / "rcl" / f"noise_inx_{ratio}.npy")
            assert len(arr) == n_img
            assert array_sha256(np.repeat(arr, 5)) == table[dataset]["image"][ratio]["sha256"]
    for ratio in ("0.2", "0.4", "0.6", "0.8"):  # L2RM's files are RCL's, expanded
        arr = np.load(shared_data / "noise_index_f30k" / "l2rm" / f"f30k_precomp_{ratio}.npy")
        assert array_sha256(arr) == table["f30k"]["image"][ratio]["sha256"]


def test_complete_valid_submission_is_accepted_and_copied(tmp_path, write_result, capsys):
    files = _three(write_result, tmp_path / "mine", method="mymethod", noise=0.2)
    dest = tmp_path / "lb" / "results"
    assert main(["submit", str(tmp_path / "mine"), "--dest", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "3 accepted, 0 refused" in out
    copied = sorted(dest.rglob("*.json"))
    assert [p.name for p in copied] == ["seed-0.json", "seed-1.json", "seed-2.json"]
    assert copied[0].parent == dest / "protocol-1" / "synthetic" / "noise-0.2" / "mymethod" / "vse_light"
    assert copied[0].read_text() == files[0].read_text()
    # again: nothing changes; a different result for the same run is a conflict unless --replace
    assert main(["submit", str(tmp_path / "mine"), "--dest", str(dest)]) == 0
    assert "already accepted" in capsys.readouterr().out
    write_result(tmp_path / "mine", method="mymethod", noise=0.2, seed=1, r1=61.0)
    assert main(["submit", str(tmp_path / "mine"), "--dest", str(dest)]) == 2
    assert "already holds a different result" in capsys.readouterr().err
    assert main(["submit", str(tmp_path / "mine"), "--dest", str(dest), "--replace"]) == 0
    assert json.loads((copied[1]).read_text())["test"]["full"]["i2t_r1"] == 61.0
    # accepted submissions appear on the leaderboard (default folders: ./results and <out>/results)
    assert main(["leaderboard", "--results", str(dest), "--out", str(tmp_path / "lb"), "--no-plots"]) == 0
    assert "mymethod" in (tmp_path / "lb" / "leaderboard.md").read_text()


def _refusal(tmp_path, write_result, capsys, mutate, **fields) -> str:
    root = tmp_path / "sub"
    files = _three(write_result, root, **fields)
    data = json.loads(files[0].read_text())
    mutate(data)
    files[0].write_text(json.dumps(data))
    dest = tmp_path / "dest"
    code = main(["submit", str(root), "--dest", str(dest)])
    err = capsys.readouterr().err
    assert code == 2 and "refused" in err
    assert not any(p.name == files[0].name and p.parent.name == files[0].parent.name for p in dest.rglob("*.json"))
    return err


@pytest.mark.parametrize("mutate,reason", [
    (lambda d: d["test"]["full"].update(i2t_r1=120.0), "120.0 is greater than the maximum of 100"),
    (lambda d: d["test"]["full"].update(rsum=999.0), "999.0 is greater than the maximum of 600"),
    (lambda d: d["test"]["full"].update(rsum=d["test"]["full"]["rsum"] + 1), "is not the sum of its six recalls"),
    (lambda d: d.pop("identity"), "'identity' is a required property"),
    (lambda d: d.update(status="failed"), "status: 'ok' was expected"),
    (lambda d: d["identity"].update(protocol_version="0"), "unknown protocol version '0'"),
    (lambda d: d["identity"].update(noise_index_sha256="ab" * 32), "is not the canonical"),
    (lambda d: d["identity"].update(method="x/../../evil"), "does not match"),
    (lambda d: d["config"].update(seed=7), "identity.seed = 0 but config.seed = 7"),
], ids=["recall-range", "rsum-range", "rsum-sum", "missing-identity", "failed-run", "protocol", "noise-index",
        "path-name", "identity-vs-config"])
def test_malformed_submissions_are_refused_with_the_reason(tmp_path, write_result, capsys, mutate, reason):
    err = _refusal(tmp_path, write_result, capsys, mutate, method="mymethod", noise=0.2)
    assert reason in err


def test_mixed_protocol_submission_is_refused(tmp_path, write_result, capsys):
    root = tmp_path / "sub"
    write_result(root, method="m", seed=0)
    write_result(root, method="m", seed=1)
    write_result(root, method="m", seed=2, protocol="2")
    assert main(["submit", str(root), "--dest", str(tmp_path / "d"), "--check"]) == 2
    err = capsys.readouterr().err
    assert "unknown protocol version '2'" in err
    # the two protocol-1 seeds alone are an incomplete set
    assert "incomplete seed set for synthetic at caption-level noise 0, m/vse_light: seeds [0, 1] present" in err


def test_incomplete_truncated_and_non_json_files(tmp_path, write_result, capsys):
    root = tmp_path / "sub"
    write_result(root, method="m", noise=0.2, seed=0)
    write_result(root, method="m", noise=0.2, seed=2)
    trunc = root / "truncated.json"
    trunc.write_text('{"schema_version": 1, "status": "ok", "identity": {')
    script = root / "evil.py"
    script.write_text("raise SystemExit('executed!')\n")
    verdicts = {v.path.name: v for v in review([root, script, tmp_path / "missing.json"], tmp_path / "d")}
    assert "missing seeds" not in str(verdicts)
    assert any("seeds [0, 2] present; seed [1] not submitted; the protocol needs [0, 1, 2]" in r
               for r in verdicts["seed-0.json"].reasons)
    assert any("not valid JSON" in r for r in verdicts["truncated.json"].reasons)
    assert any("nothing is executed" in r for r in verdicts["evil.py"].reasons)
    assert verdicts["missing.json"].reasons == ["file not found"]
    assert main(["submit", str(root), "--check", "--dest", str(tmp_path / "d")]) == 2
    assert not (tmp_path / "d").exists()


def test_real_runs_pass_submission(noisy_sweep, sweep_root, tmp_path, capsys):
    """Results written by ``ncbench run`` (vanilla and NCR at 60% on the embedded data, seeds 0-2) are
    schema-valid, carry the canonical noise index, and are accepted."""
    noisy_sweep("ncr")
    folder = sweep_root / "protocol-1" / "synthetic" / "noise-0.6"
    # --allow-dirty: the test's own ncbench is an installed wheel (tox: no commit) or a checkout being
    # edited, not committed code, which submit refuses without it (issue 30 item 3)
    assert main(["submit", str(folder / "ncr" / "vse_bow"), str(folder / "vanilla" / "vse_bow"), "--check",
                 "--allow-dirty"]) == 0
    assert "6 accepted, 0 refused" in capsys.readouterr().out


def test_print_schema(capsys):
    assert main(["submit", "--print-schema"]) == 0
    assert json.loads(capsys.readouterr().out) == result_schema()


# -- new-method ---------------------------------------------------------------------------------
def _import_file(path, name):
    spec = importlib.util.spec_from_file_location(f"ncbench_test_plugin_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("template", ["single", "coteaching"])
def test_new_method_skeleton_registers_and_trains(tmp_path, capsys, small_context, template):
    name = f"skel_{template}"
    assert main(["new-method", name, "--template", template, "--dir", str(tmp_path)]) == 0
    path = tmp_path / f"{name}.py"
    assert "ncbench run --methods" in capsys.readouterr().out
    text = path.read_text()
    assert "Deviations from the paper" in text and "TODO" in text
    try:
        _import_file(path, name)
        cls = METHODS.get(name)
        ctx, _ = small_context(tmp_path / "data")
        method = cls(cls.make_config("synthetic", {"batch_size": 32}), ctx)
        logs = [method.train_epoch(e) for e in range(method.total_epochs if template == "single" else 7)]
        assert logs and all(np.isfinite(v) for row in logs for v in row.values())
        assert len(method.networks()) == cls.ensemble_size
    finally:
        METHODS.unregister(name)
    # refusals: an existing file, a registered name, a bad name
    assert main(["new-method", name, "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["new-method", "ncr", "--dir", str(tmp_path)]) == 2
    assert "already registered" in capsys.readouterr().err
    assert main(["new-method", "Bad-Name", "--dir", str(tmp_path)]) == 2
    assert "must be 2–40 lower-case" in capsys.readouterr().err


def test_an_incomplete_set_names_the_seeds_present_even_when_they_are_refused(tmp_path, write_result, capsys):
    """Issue 23 item 5: with seed 0 present but refused for its own reason, the refusal said
    ``seeds [] present``; it now lists the seeds submitted and says which of them are refused."""
    root = tmp_path / "sub"
    path = write_result(root, method="m", noise=0.2, seed=0)
    data = json.loads(path.read_text())
    data["identity"]["noise_index_sha256"] = "ab" * 32  # refused: not the canonical index (the file is read)
    path.write_text(json.dumps(data))
    (v,) = review([root], tmp_path / "d")
    assert any("is not the canonical" in r for r in v.reasons), v.reasons
    msg = next(r for r in v.reasons if "incomplete seed set" in r)
    # issue 30 item 5: it said "seeds [0] present; seeds [0] are refused ... (missing [0, 1, 2])": seed 0 was
    # both present and missing. Each seed is now named once.
    assert msg.endswith("no seed present; seed [0] refused for the reasons given with them; seeds [1, 2] not "
                        "submitted; the protocol needs [0, 1, 2]"), msg


def test_an_untracked_method_file_makes_the_revision_dirty_and_is_hashed(tmp_path):
    """Issue 23 item 5: a result made by a method file git does not track recorded ``dirty: false``
    at a commit that does not contain it; now it is dirty, and the file's sha256 is recorded."""
    import hashlib
    import subprocess

    from ncbench.results import git_revision

    repo = tmp_path / "repo"
    (repo / "methods").mkdir(parents=True)
    (repo / "methods" / "kept.py").write_text("x = 1\n")

    def git(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                       env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                            "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})

    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "init")
    clean = git_revision(repo)
    assert clean["dirty"] is False and "untracked_methods" not in clean and len(clean["commit"]) == 40
    (repo / "methods" / "lowsim.py").write_text("# a new method, not committed\n")
    (repo / "notes.txt").write_text("an untracked file elsewhere is not a method\n")
    got = git_revision(repo)
    assert got["dirty"] is True and got["commit"] == clean["commit"]
    assert got["untracked_methods"] == {
        "methods/lowsim.py": hashlib.sha256(b"# a new method, not committed\n").hexdigest()}
