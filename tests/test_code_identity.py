"""Results are tied to the code that made them (issue 30 item 1): every result records the hash of
its method's module as imported and of ncbench's training code; a result of other code is
``stale-code`` for ``status``, trained again by ``run`` (the old one set aside) unless
``--accept-code-change`` keeps it (recorded in the file); boards and ``compare`` never pool seeds of
different code. References are computed here by hand (hashlib over the file's bytes)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from ncbench.cli import main
from ncbench.registry import METHODS

TOY = '''"""Test-only toy method: vanilla under another name ({version})."""
from ncbench.registry import METHODS

Vanilla = METHODS.get("vanilla")


@METHODS.register("toy_code")
class Toy(Vanilla):
    """Test-only: vanilla, {version}."""
'''
SMALL = ["--methods", "toy_code", "--dataset", "synthetic-small", "--backbones", "vse_bow", "--noise", "0.2",
         "--method-opt", "epochs=1", "--threads", "1", "--no-progress", "--device", "cpu"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_toy(path: Path, version: str, write: bool = True) -> None:
    """Write the toy method file (``version`` in it) and import it afresh, as a new process would."""
    if write:
        path.write_text(TOY.format(version=version))
    METHODS.unregister("toy_code")
    spec = importlib.util.spec_from_file_location("toy_code_method", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["toy_code_method"] = module
    spec.loader.exec_module(module)


@pytest.fixture
def toy(tmp_path):
    path = tmp_path / "src" / "toy_code_method.py"
    path.parent.mkdir()
    load_toy(path, "v1")
    yield path
    METHODS.unregister("toy_code")
    sys.modules.pop("toy_code_method", None)


def result(results: Path, seed: int = 0) -> dict:
    return json.loads(next(results.rglob(f"toy_code/vse_bow/seed-{seed}.json")).read_text())


def test_a_changed_method_file_makes_its_results_stale_code(tmp_path, cache_dir, toy, capsys):
    results = tmp_path / "r"
    common = ["--results", str(results), "--cache-dir", str(cache_dir), *SMALL]
    v1 = sha256(toy.read_bytes())
    assert main(["run", *common]) == 0
    first = result(results)
    code = first["code"]
    vanilla = sha256(Path(sys.modules["ncbench.methods.vanilla"].__file__).read_bytes())  # the class it inherits
    assert code["method"] == {"name": "toy_code", "module": "toy_code_method", "sha256": v1,
                              "bases": {"ncbench.methods.vanilla": vanilla}}
    assert code["hash"] == sha256((v1 + vanilla + code["ncbench"]["training_sha256"]).encode())[:16]
    assert code["ncbench"]["version"] and len(code["ncbench"]["training_sha256"]) == 64

    # the file edited after its import: the next seed of this process records the imported code
    toy.write_text(TOY.format(version="v2, edited after the import"))
    assert main(["run", *common, "--seeds", "1"]) == 0
    seed1 = result(results, 1)
    assert seed1["code"] == code
    capsys.readouterr()
    assert main(["status", *common, "--seeds", "0,1"]) == 0
    assert "2 done (2 run(s))" in capsys.readouterr().out

    # imported again (a new process would): both results are of other code, apart from stale
    load_toy(toy, "", write=False)
    v2 = sha256(toy.read_bytes())
    assert main(["status", *common, "--seeds", "0,1"]) == 0
    out = capsys.readouterr().out
    assert "2 stale-code (2 run(s))" in out
    assert f"made by other code {code['hash'][:8]}, now" in out

    # run trains it again, says so in one line, and sets the old result aside
    assert main(["run", *common]) == 0
    out = capsys.readouterr().out
    assert sum("result of other code" in line for line in out.splitlines()) == 1
    assert "1 run(s) trained, 0 already done" in out and "--accept-code-change keeps such results" in out
    retrained = result(results)
    assert retrained["code"]["method"]["sha256"] == v2
    aside = list((results / "superseded").rglob("seed-0.stale-code.*.json"))
    assert len(aside) == 1 and json.loads(aside[0].read_text())["code"] == code

    # --accept-code-change keeps seed 1 (no training), recorded in the file; its numbers stay
    assert main(["run", *common, "--seeds", "1", "--accept-code-change"]) == 0
    out = capsys.readouterr().out
    assert "0 run(s) trained, 1 already done (1 kept across a code change)" in out
    kept = result(results, 1)
    assert kept["code"] == code and kept["test"] == seed1["test"] and kept["created"] == seed1["created"]
    (entry,) = kept["code_accepted"]
    assert entry["from"] == code["hash"] and entry["to"] == retrained["code"]["hash"] and entry["at"]
    assert main(["status", *common, "--seeds", "0,1"]) == 0
    assert "2 done (2 run(s))" in capsys.readouterr().out



def code_block(method: str, method_sha: str, training_sha: str = "c" * 64) -> dict:
    """A code block made by hand: its hash from the documented formula."""
    return {"hash": sha256((method_sha + training_sha).encode())[:16],
            "method": {"name": method, "module": f"ncbench.methods.{method}", "sha256": method_sha},
            "ncbench": {"version": "0.1.0", "commit": None, "dirty": None, "training_sha256": training_sha}}


def write(root: Path, rec: dict) -> Path:
    from ncbench.results import identity_path

    path = identity_path(root, rec["identity"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    return path


@pytest.mark.parametrize("codes", [("a", "b"), ("a", None)], ids=["two-codes", "code-and-unknown"])
def test_a_board_refuses_to_pool_two_codes_in_one_row(tmp_path, result_dict, capsys, codes):
    """As test_tags' config-mismatch test: one config, two seeds, made by different code (or one of
    unknown code, written before results recorded it) in two folders."""
    for folder, seed, letter in (("a", 0, codes[0]), ("b", 1, codes[1])):
        rec = result_dict(method="ncr", seed=seed, noise=0.2)
        if letter:
            rec["code"] = code_block("ncr", letter * 64)
        write(tmp_path / folder, rec)
    args = ["leaderboard", "--results", str(tmp_path / "a"), "--results", str(tmp_path / "b"),
            "--out", str(tmp_path / "boards"), "--no-plots"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "results of different code would be pooled into one row" in err
    assert "ncr (vse_light) on synthetic at caption-level noise 0.2: 2 code versions in one row" in err
    first = code_block("ncr", "a" * 64)["hash"][:8]
    assert f"code {first}" in err and ("code unknown" in err) == (codes[1] is None)
    assert main(args[:3] + args[5:]) == 0  # one code alone is fine
    # compare does not pair the row's seeds either
    assert main(["compare", "--methods", "ncr,vanilla", "--dataset", "synthetic", "--noise", "0.2",
                 "--results", str(tmp_path / "a"), "--results", str(tmp_path / "b")]) == 2
    assert "ncr (vse_light): its seeds were made by different code (seed 0: code " + first in capsys.readouterr().err


def test_results_of_one_code_or_of_unknown_code_pool(tmp_path, result_dict, capsys):
    for seed in (0, 1):
        old = result_dict(method="ncr", seed=seed, noise=0.2)  # no code block: written before it existed
        new = {**result_dict(method="vanilla", seed=seed, noise=0.2), "code": code_block("vanilla", "d" * 64)}
        write(tmp_path, old)
        write(tmp_path, new)
    assert main(["leaderboard", "--results", str(tmp_path), "--out", str(tmp_path / "boards"), "--no-plots"]) == 0


def test_builtin_methods_record_their_modules_as_imported():
    from ncbench.code_identity import code_record

    for name in ("ncr", "clean_oracle"):
        rec = code_record(name)
        module = sys.modules[rec["method"]["module"]]
        assert rec["method"]["sha256"] == sha256(Path(module.__file__).read_bytes())
    assert set(code_record("ncr")["method"]) == {"name", "module", "sha256"}  # its bases are training code
    vanilla = sha256(Path(sys.modules["ncbench.methods.vanilla"].__file__).read_bytes())
    assert code_record("clean_oracle")["method"]["bases"] == {"ncbench.methods.vanilla": vanilla}


def test_the_code_block_is_validated(result_dict):
    from ncbench.results import result_problems

    rec = {**result_dict(method="ncr"), "code": code_block("ncr", "a" * 64)}
    assert result_problems(rec) == []
    for change, expect in (
        (lambda c: c.update(hash="0" * 16), "code.hash '0000000000000000' is not the hash of its parts"),
        (lambda c: c["method"].update(name="vanilla"), "code.method.name 'vanilla' is not the result's method"),
        (lambda c: c["method"].update(sha256="A" * 64), "schema: code/method/sha256"),
        (lambda c: c["ncbench"].update(dirty="yes"), "schema: code/ncbench/dirty"),
        (lambda c: c["ncbench"].pop("training_sha256"), "schema: code/ncbench"),
        (lambda c: c.update(extra=1), "schema: code"),
        (lambda c: c["method"].update(module="two words"), "schema: code/method/module"),
    ):
        bad = json.loads(json.dumps(rec))
        change(bad["code"])
        assert any(expect in p for p in result_problems(bad)), (expect, result_problems(bad))
    ok = {**rec, "code_accepted": [{"from": rec["code"]["hash"], "to": "1" * 16, "at": "2025-01-01T00:00:00+0000"}]}
    assert result_problems(ok) == []
    broken = {**ok, "code_accepted": [*ok["code_accepted"], {"from": "2" * 16, "to": "3" * 16, "at": "now"}]}
    assert result_problems(broken) == ["code_accepted[1].from '2222222222222222' is not the code identity before it "
                                       "('1111111111111111')"]


def test_the_state_of_a_result_follows_its_code(tmp_path, result_dict):
    """inspect_result: unknown code and other code are stale-code; this code, or a change accepted
    to this code, is done; another config stays stale."""
    from ncbench.code_identity import code_record
    from ncbench.results import accept_code_change, inspect_result

    rec = result_dict(method="vanilla")
    path = write(tmp_path, rec)
    assert inspect_result(path, rec["config_hash"])[0] == "stale-code"  # unknown code
    assert inspect_result(path, "another")[0] == "stale"
    path.write_text(json.dumps({**rec, "code": code_record("vanilla")}))
    assert inspect_result(path, rec["config_hash"])[0] == "done"
    other = {**rec, "code": code_block("vanilla", "e" * 64)}
    path.write_text(json.dumps(other))
    state, found = inspect_result(path, rec["config_hash"])
    assert state == "stale-code"
    kept = accept_code_change(path, found)
    assert json.loads(path.read_text()) == kept and kept["code"] == other["code"]
    assert kept["code_accepted"][0]["to"] == code_record("vanilla")["hash"]
    assert inspect_result(path, rec["config_hash"])[0] == "done"


def test_a_record_made_elsewhere_is_stored_with_its_methods_code(tmp_path, result_dict):
    """store_result gives a record without a code block (an ensemble's) its method's."""
    from ncbench.code_identity import code_record
    from ncbench.results import identity_path, store_result

    rec = result_dict(method="vanilla")
    path = identity_path(tmp_path, rec["identity"])
    path.parent.mkdir(parents=True)
    assert store_result(tmp_path, path, rec, "missing", print, "here")
    assert json.loads(path.read_text())["code"] == code_record("vanilla")


def test_a_checkpoint_of_other_code_is_set_aside_not_resumed(tmp_path):
    """A run killed, its method edited, then resumed would train one run with two versions of the code
    under the new one's name: its checkpoint records the code and is set aside when the code changed
    (a checkpoint from before code records counts as other code)."""
    from ncbench.checkpoint import Checkpointer

    path = tmp_path / "seed-0.ckpt"
    Checkpointer(path, "cfg", code_hash="a" * 16).save(2, {"weights": torch.ones(3)})
    same = Checkpointer(path, "cfg", code_hash="a" * 16).load()
    assert same is not None and same["epoch"] == 2 and torch.equal(same["weights"], torch.ones(3))
    said = []
    assert Checkpointer(path, "cfg", aside=tmp_path / "aside", log=said.append, code_hash="b" * 16).load() is None
    assert not path.exists() and len(list((tmp_path / "aside").glob("seed-0.stale-code.*.ckpt"))) == 1
    assert "written by other code (aaaaaaaaaaaaaaaa, now bbbbbbbbbbbbbbbb)" in said[0]
    Checkpointer(path, "cfg").save(1, {})  # no code recorded
    assert Checkpointer(path, "cfg", aside=tmp_path / "aside", code_hash="b" * 16).load() is None
    Checkpointer(path, "cfg").save(1, {})
    assert Checkpointer(path, "cfg").load() is not None  # not checked without a code hash (status, tidying)


def test_a_run_page_bands_only_the_seeds_of_its_own_code(tmp_path, result_dict, write_result):
    """The run page's seed band (its sweep group) is a board row: same config, same code."""
    from ncbench.report.run_page import siblings
    from ncbench.results import read_result

    paths = [write_result(tmp_path, data={**result_dict(method="ncr", seed=s, noise=0.2),
                                          "code": code_block("ncr", letter * 64)})
             for s, letter in ((0, "a"), (1, "a"), (2, "b"))]
    first = {**read_result(paths[0]), "_path": str(paths[0])}
    assert sorted(r["identity"]["seed"] for r in siblings(first)) == [0, 1]
