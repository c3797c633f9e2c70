"""Submissions carry provenance (issue 30 item 3): results of uncommitted or unrecorded code are
refused by ``submit`` and ``submit --check`` alike unless ``--allow-dirty``; ``--check`` gives the
verdict ``submit`` would; the method's code hash and source are stored beside each accepted copy
and shown on the boards (a ``submitted`` badge); a local result that differs from the accepted one
of the same run is shown, never dropped silently. Checkouts are made in temporary git repositories."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ncbench.cli import main
from ncbench.registry import METHODS
from ncbench.report.build import LeaderboardRequest, build_leaderboard
from ncbench.code_identity import git_revision
from ncbench import submission

ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
       "PATH": "/usr/bin:/bin"}
METHOD_SHA, TRAINING_SHA = "a" * 64, "b" * 64


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                         env={**ENV, "HOME": str(repo.parent)})
    return out.stdout.strip()


def checkout(tmp_path: Path, name: str = "repo") -> Path:
    """A committed git repository with one method file, ``methods/toy.py``."""
    repo = tmp_path / name
    (repo / "methods").mkdir(parents=True)
    (repo / "methods" / "toy.py").write_text("x = 1\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo


def code_block(method: str, revision: dict, method_sha: str = METHOD_SHA) -> dict:
    """The ``code`` record of a result made at ``revision`` (its hash computed here from its parts)."""
    return {"hash": hashlib.sha256((method_sha + TRAINING_SHA).encode()).hexdigest()[:16],
            "method": {"name": method, "module": f"ncbench.methods.{method}", "sha256": method_sha},
            "ncbench": {"version": "0.1.0", "commit": revision["commit"], "dirty": revision["dirty"],
                        "training_sha256": TRAINING_SHA}}


def three(write_result, result_dict, root: Path, revision: dict | None, method="mymethod", r1=(50.0, 52.0, 54.0),
          **fields) -> list[Path]:
    """Seeds 0-2 of one configuration made at ``revision`` (None: no ``code`` record, an old result)."""
    paths = []
    for seed in range(3):
        data = result_dict(method=method, seed=seed, noise=0.2, r1=r1[seed], **fields)
        if revision is not None:
            data["code"] = code_block(method, revision)
            data["env"] = {"git": revision}
        paths.append(write_result(root, data=data))
    return paths


def verdict_lines(capsys) -> tuple[list[str], str]:
    """(the verdict lines, stdout and stderr together, in order of files; the summary line)."""
    cap = capsys.readouterr()
    lines = (cap.out + cap.err).splitlines()
    summary = [line for line in lines if " accepted, " in line and " refused" in line]
    return sorted(line for line in lines if line not in summary), summary[-1]


def cells(md: str, method: str) -> list[str]:
    """The cells of the Markdown board row whose Method cell starts with ``method``."""
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in md.splitlines() if line.startswith("|")]
    return next(row for row in rows if row[1].startswith(method))


def source_cell(md: str, method: str) -> str:
    return cells(md, method)[2]


# -- 1. dirty or unknown code ---------------------------------------------------------------------
def test_dirty_or_unknown_code_is_refused_by_check_and_submit_unless_allowed(tmp_path, write_result, result_dict,
                                                                              capsys):
    repo = checkout(tmp_path)
    clean = git_revision(repo)
    assert clean["dirty"] is False and len(clean["commit"]) == 40
    (repo / "methods" / "new.py").write_text("# not committed\n")  # an untracked method file
    untracked = git_revision(repo)
    (repo / "methods" / "new.py").unlink()
    (repo / "methods" / "toy.py").write_text("x = 2\n")  # a changed tracked file
    changed = git_revision(repo)
    assert untracked["dirty"] is True and "methods/new.py" in untracked["untracked_methods"]
    assert changed["dirty"] is True and "untracked_methods" not in changed
    cases = {
        "untracked": (untracked, "dirty code: made with method file(s) git does not track: methods/new.py"),
        "changed": (changed, "dirty code: made by a checkout with uncommitted changes"),
        "no-code": (None, "unknown code: the result records no code hash"),
        "no-commit": ({"commit": None, "dirty": None}, "unknown code: no commit recorded"),
    }
    for name, (revision, why) in cases.items():
        files = three(write_result, result_dict, tmp_path / name, revision)
        dest = tmp_path / f"dest-{name}"
        outputs = []
        for check in (["--check"], []):
            assert main(["submit", str(tmp_path / name), "--dest", str(dest), *check]) == 2, name
            lines, summary = verdict_lines(capsys)
            assert summary.startswith("0 accepted, 3 refused"), (name, summary)
            # one line per file, naming it and why; nothing else (no seed-set noise: each says why)
            assert len(lines) == 3 and all(line.startswith(f"refused: {f}: {why}")
                                           for line, f in zip(lines, sorted(map(str, files)))), (name, lines)
            assert all("--allow-dirty" in line for line in lines)
            outputs.append(lines)
        assert outputs[0] == outputs[1], name
        assert not dest.exists(), name
    # allowed: accepted, and the provenance says why the code is not clean
    dest = tmp_path / "dest-allowed"
    assert main(["submit", str(tmp_path / "changed"), "--dest", str(dest), "--allow-dirty", "--source", "local"]) == 0
    out = capsys.readouterr().out
    assert "3 accepted, 0 refused" in out and "dirty code allowed by --allow-dirty" in out
    record = json.loads(next(dest.rglob("seed-0.submission")).read_text())
    assert record["code_problem"].startswith("dirty code: made by a checkout with uncommitted changes")
    assert record["source"] == "local"
    board = build_leaderboard(LeaderboardRequest([dest], tmp_path / "boards", plots=False)).markdown
    assert source_cell(board, "mymethod") == "measured, submitted, dirty code"
    # a clean checkout's results pass
    three(write_result, result_dict, tmp_path / "clean", clean)
    assert main(["submit", str(tmp_path / "clean"), "--dest", str(tmp_path / "dest-clean"), "--check"]) == 0
    assert "3 accepted, 0 refused" in capsys.readouterr().out


# -- 2. --check says what submit would -------------------------------------------------------------
def test_check_gives_the_verdict_submit_gives_when_a_result_conflicts_with_an_accepted_one(
        tmp_path, write_result, result_dict, capsys):
    """Before: --check said "3 accepted" where submit then refused seed 1 ("already holds a different
    result"): the destination was only looked at while copying."""
    revision = {"commit": "c0ffee" * 6 + "c0ff", "dirty": False}
    three(write_result, result_dict, tmp_path / "sub", revision)
    dest = tmp_path / "dest"
    assert main(["submit", str(tmp_path / "sub"), "--dest", str(dest)]) == 0
    capsys.readouterr()
    changed = three(write_result, result_dict, tmp_path / "sub", revision, r1=(50.0, 61.0, 54.0))
    outputs = []
    for check in (["--check"], []):
        assert main(["submit", str(tmp_path / "sub"), "--dest", str(dest), *check]) == 2
        lines, summary = verdict_lines(capsys)
        assert summary.startswith("2 accepted, 1 refused")
        outputs.append(lines)
    assert outputs[0] == outputs[1]
    refused = [line for line in outputs[0] if line.startswith("refused: ")]
    assert refused == [f"refused: {changed[1]}: {dest / changed[1].relative_to(tmp_path / 'sub')} already holds a "
                       "different result for this run (use --replace)"]
    assert sum(line.startswith("already accepted: ") for line in outputs[0]) == 2
    assert json.loads((dest / changed[1].relative_to(tmp_path / "sub")).read_text())["test"]["full"]["i2t_r1"] == 52.0


# -- 3. provenance on the boards -------------------------------------------------------------------
def test_submitted_rows_carry_a_badge_and_their_source_on_every_board(tmp_path, write_result, result_dict, capsys):
    revision = {"commit": "c0ffee" * 6 + "c0ff", "dirty": False}
    three(write_result, result_dict, tmp_path / "sub", revision, method="mymethod")
    three(write_result, result_dict, tmp_path / "local", revision, method="vanilla", r1=(40.0, 41.0, 42.0))
    dest = tmp_path / "accepted"
    source = "https://example.org/a_b/<x>&y.git@" + "abcdef1"  # characters Markdown, HTML and LaTeX must escape
    assert main(["submit", str(tmp_path / "sub"), "--dest", str(dest), "--source", source]) == 0
    code = code_block("mymethod", revision)["hash"]
    assert f"(code {code}, source {source})" in capsys.readouterr().out
    stored = json.loads((dest / "protocol-1/synthetic/noise-0.2/mymethod/vse_light/seed-2.submission").read_text())
    raw = (dest / "protocol-1/synthetic/noise-0.2/mymethod/vse_light/seed-2.json").read_bytes()
    assert stored == {"code_hash": code, "code_problem": None, "format": 1, "source": source,
                      "result_sha256": hashlib.sha256(raw).hexdigest()}
    out = build_leaderboard(LeaderboardRequest([tmp_path / "local", dest], tmp_path / "boards", plots=False))
    assert out.warnings == []
    md = (tmp_path / "boards" / "leaderboard.md").read_text()
    assert [source_cell(md, "mymethod"), source_cell(md, "vanilla")] == ["measured, submitted", "measured"]
    assert (f"- submitted · mymethod (vse_light), noise 20%: 3 of 3 seed(s) accepted through `ncbench submit`; "
            f"source {source}; code {code}\n") in md
    page = next((tmp_path / "boards").glob("leaderboard-p1-synthetic*.html")).read_text()
    escaped = "https://example.org/a_b/&lt;x&gt;&amp;y.git@abcdef1"
    assert (f'<span class="tag submitted" title="accepted through ncbench submit; source: {escaped}; code: {code}">'
            "submitted</span>") in page
    assert "<x>" not in page and page.count('class="tag submitted"') == 1
    tex = (tmp_path / "boards" / "leaderboard.tex").read_text()
    assert r"mymethod \small(submitted)" in tex and r"vanilla \small(" not in tex
    assert r"https://example.org/a\_b/\textless{}x\textgreater{}\&y.git@abcdef1" in tex
    # a provenance record that is not of this file is not trusted: the row is not badged, a warning says so
    (dest / "protocol-1/synthetic/noise-0.2/mymethod/vse_light/seed-2.submission").write_text(
        json.dumps({**stored, "result_sha256": "0" * 64}))
    out = build_leaderboard(LeaderboardRequest([dest], tmp_path / "boards2", plots=False))
    assert len(out.warnings) == 1 and "seed-2.submission: records the submission of another version" in out.warnings[0]
    assert "2 of 3 seed(s) accepted" in out.markdown


# -- 4. a local result and an accepted one of the same run -------------------------------------------
def test_a_local_result_that_differs_from_the_accepted_one_is_shown_not_dropped(tmp_path, write_result, result_dict,
                                                                                capsys):
    """Before: the board kept whichever copy came first (the local one) and dropped the other silently."""
    revision = {"commit": "c0ffee" * 6 + "c0ff", "dirty": False}
    three(write_result, result_dict, tmp_path / "sub", revision)
    dest = tmp_path / "accepted"
    assert main(["submit", str(tmp_path / "sub"), "--dest", str(dest)]) == 0
    local = three(write_result, result_dict, tmp_path / "results", revision, r1=(50.0, 61.0, 54.0))
    accepted = dest / local[1].relative_to(tmp_path / "results")
    out = build_leaderboard(LeaderboardRequest([tmp_path / "results", dest], tmp_path / "boards", plots=False))
    assert out.warnings == [
        f"mymethod (vse_light), synthetic caption-level noise 0.2, seed 1: {local[1]} and {accepted} hold different "
        f"results of this run; the board shows {accepted} (marked ≢); remove one, or `ncbench submit --replace` the "
        "local one"]
    md = out.markdown
    assert cells(md, "mymethod")[1] == "mymethod ≢" and source_cell(md, "mymethod") == "measured, submitted"
    assert f"- ≢ {out.warnings[0]}\n" in md
    # the accepted copy is the one averaged: i2t R@1 of seeds 0-2 = 50, 52, 54 (not 61): mean 52.0 ± 2.0
    assert cells(md, "mymethod")[3] == "52.0 ± 2.0"
    page = next((tmp_path / "boards").glob("leaderboard-p1-synthetic*.html")).read_text()
    assert "≢ results differ" in page and str(local[1]) in page
    assert r"mymethod$^{\not\equiv}$" in (tmp_path / "boards" / "leaderboard.tex").read_text()
    # the command says it too, on stderr
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(tmp_path / "results"), "--results", str(dest),
                 "--out", str(tmp_path / "boards2"), "--no-plots"]) == 0
    assert f"warning: {out.warnings[0]}" in capsys.readouterr().err
    # the same result found twice is one run, and no conflict
    out = build_leaderboard(LeaderboardRequest([tmp_path / "sub", dest], tmp_path / "boards3", plots=False))
    assert out.warnings == [] and out.n_results == 3 and "≢" not in out.markdown


# -- 5. the source, from the submitter's checkout ---------------------------------------------------------
def _register_from(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(f"ncbench_test_provenance_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_source_is_the_origin_and_the_commit_holding_the_code_that_ran(tmp_path, result_dict):
    repo = tmp_path / "plugin"
    (repo / "methods").mkdir(parents=True)
    text = ("from ncbench.registry import METHODS\n\n\n@METHODS.register('provtoy')\nclass ProvToy:\n"
            "    '''A method for the provenance test.'''\n")
    (repo / "methods" / "provtoy.py").write_text(text)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "toy")
    git(repo, "remote", "add", "origin", "https://someone:s3cret@example.org/me/provtoy.git")
    head = git(repo, "rev-parse", "HEAD")
    _register_from(repo / "methods" / "provtoy.py", "provtoy")
    try:
        data = result_dict(method="provtoy")
        data["code"] = code_block("provtoy", {"commit": None, "dirty": False},
                                  method_sha=hashlib.sha256(text.encode()).hexdigest())
        found = submission.detect_source(data)
        assert found == submission.Source("https://example.org/me/provtoy.git", head)  # no credentials
        assert str(found) == f"https://example.org/me/provtoy.git@{head}"
        data["code"]["method"]["sha256"] = "f" * 64  # code that no commit of the checkout holds
        assert submission.detect_source(data) == submission.Source()
        assert str(submission.Source()) == "local"
    finally:
        METHODS.unregister("provtoy")


@pytest.mark.parametrize("value", ["nowhere", "https://example.org/x.git@HEAD", "https://u:p@example.org/x@abcdef1",
                                   "/home/me/repo@abcdef1"])
def test_a_bad_source_is_one_line(tmp_path, capsys, value):
    (tmp_path / "r.json").write_text("{}")
    assert main(["submit", str(tmp_path / "r.json"), "--source", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ncbench: error: --source {value!r}: give URL@COMMIT (a repository URL without credentials and a "
                   "commit of 7-40 lower-case hex digits) or 'local'"]


def test_a_result_made_before_its_method_was_committed_is_accepted_once_that_code_is(tmp_path, result_dict,
                                                                                    monkeypatch):
    """A method author trains, then commits: the results' record says the file was untracked, but the
    code identity is the one the committed checkout has now, so the result is reproducible from that
    commit (before: refused as dirty, and `run` would not retrain it either: same code, already done)."""
    from ncbench import submission
    from ncbench.code_identity import code_record

    data = result_dict(method="vanilla", seed=0, noise=0.2)
    data["code"] = code_record("vanilla")  # the code this process has
    data["env"] = {"git": {"commit": "1" * 40, "dirty": True, "untracked_methods": {"methods/vanilla.py": "0" * 64}}}
    clean = {"commit": "2" * 40, "dirty": False}
    monkeypatch.setattr(submission, "process_revision", lambda: dict(clean))
    assert submission.committed_now(data) == "2" * 40 and submission.code_problem(data) is None
    monkeypatch.setattr(submission, "process_revision", lambda: {**clean, "dirty": True})  # not committed yet
    assert submission.committed_now(data) is None and "dirty code" in submission.code_problem(data)
    monkeypatch.setattr(submission, "process_revision", lambda: dict(clean))
    other = {**data, "code": {**data["code"], "hash": "f" * 16}}  # other code than the checkout's
    assert submission.committed_now(other) is None and "dirty code" in submission.code_problem(other)
