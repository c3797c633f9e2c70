"""``ncbench evaluate`` (issue 31 items 1-2): released checkpoints of the NCR, CRCL, DECL and L2RM
layouts, written by the official model code (``tests/fixtures/make_checkpoints.py``), evaluate to
the similarity matrix, recalls and ranks the official evaluation functions gave on the same tiny
split (``<layout>.official.npz``); ncbench networks saved in the official layouts round-trip; a
file holding anything but weights and options is refused without running it."""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ncbench.cli import evaluate as cli
from ncbench.errors import NcbenchError
from ncbench.evaluate import similarity_matrix
from ncbench.external.evaluate import load_checkpoint, networks_for, load_test_split
from ncbench.external.loading import CheckpointError
from ncbench.external.weights import to_official
from ncbench.registry import BACKBONES, DATASETS
from ncbench.results import read_result
from ncbench.engine.method import build_config

FIX = Path(__file__).parent / "fixtures" / "checkpoints"
DATA = FIX / "data"
LAYOUTS = {"ncr": ["ncr.pth.tar"], "crcl": ["crcl_saf.pth.tar", "crcl_sgr.pth.tar"],
           "decl": ["decl_saf.pth.tar", "decl_sgr.pth.tar"], "l2rm": ["l2rm_saf.pth.tar", "l2rm_sgr.pth.tar"]}
SIZES = {"img_dim": 8, "word_dim": 12, "embed_size": 16, "sim_dim": 8}


def run(argv: list[str]) -> int:
    """The command as ``ncbench evaluate`` runs it (its own parser; errors as the CLI prints them)."""
    parser = argparse.ArgumentParser(prog="ncbench")
    cli.add_parser(parser.add_subparsers(dest="command"))
    return cli.command(parser.parse_args(["evaluate", *argv]))


def official_recalls(ranks: np.ndarray) -> list[float]:
    """R@1/5/10 of 0-based ranks, as the official i2t/t2i count them."""
    return [100.0 * float(np.mean(ranks < k)) for k in (1, 5, 10)]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_official_checkpoints_evaluate_as_the_official_code(layout, tmp_path, capsys):
    check_layout(layout, FIX, tmp_path, capsys)


def test_live_checkpoints_written_now_by_the_official_code(tmp_path, capsys, monkeypatch):
    """The live layer: with ``NCBENCH_OFFICIAL`` naming the official checkouts, the fixtures are
    written again by the official model code into a temporary folder (never the repository) and
    each layout checked against the official evaluation's outputs computed in the same run."""
    import os

    if not os.environ.get("NCBENCH_OFFICIAL"):
        pytest.skip("NCBENCH_OFFICIAL (a folder of official checkouts, tests/parity/README.md) is not set")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # the repository root: tests.*
    from tests.fixtures import make_checkpoints

    monkeypatch.setattr(make_checkpoints, "OUT", tmp_path / "fixtures")
    (tmp_path / "fixtures").mkdir()
    make_checkpoints.main()
    for layout in sorted(LAYOUTS):
        check_layout(layout, tmp_path / "fixtures", tmp_path / layout, capsys)


def check_layout(layout: str, fix: Path, tmp_path: Path, capsys) -> None:
    """``ncbench evaluate`` on ``layout``'s files in ``fix`` gives the official outputs stored beside them."""
    golden = np.load(fix / f"{layout}.official.npz")
    files = [str(fix / f) for f in LAYOUTS[layout]]
    data = fix / "data"
    assert run([*files, "--data-root", str(data), "--results", str(tmp_path), "--device", "cpu",
                "--claims", "250"]) == 0
    out = capsys.readouterr()
    path = next(tmp_path.rglob("seed-0.json"))
    record = read_result(path)  # schema-valid, rSum the sum of its recalls, ranks within range
    assert record["identity"]["method"] == layout and record["identity"]["tag"] == "checkpoint"
    assert record["meta"]["kind"] == "checkpoint"
    full = record["test"]["full"]
    i2t, t2i = golden["ranks_i2t"], golden["ranks_t2i"]
    assert record["ranks"]["i2t"] == i2t.tolist() and record["ranks"]["t2i"] == t2i.tolist()
    assert [full[k] for k in ("i2t_r1", "i2t_r5", "i2t_r10")] == pytest.approx(golden["i2t"].tolist())
    assert [full[k] for k in ("t2i_r1", "t2i_r5", "t2i_r10")] == pytest.approx(golden["t2i"].tolist())
    assert official_recalls(i2t) == pytest.approx(golden["i2t"].tolist())  # the golden file agrees with itself
    assert full["rsum"] == pytest.approx(float(golden["rsum"]))
    assert record["meta"]["claims"]["delta"] == pytest.approx(float(golden["rsum"]) - 250)
    shas = [c["sha256"] for c in record["meta"]["checkpoints"]]
    import hashlib
    assert shas == [hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files]
    assert "opt fields not used by evaluation: batch_size, data_path" in out.err
    # the similarity matrix itself (DECL's is its averaged evidence, exp(tanh(z) / tau))
    vocab, split, _ = load_test_split(DATASETS.get("f30k"), data, tmp_path)
    nets = networks_for([load_checkpoint(Path(f)) for f in files], vocab, split, "vocab")
    sims = similarity_matrix(nets, split, torch.device("cpu"))
    np.testing.assert_allclose(sims, golden["sims"], rtol=1e-5, atol=0)


def _trained(name: str, vocab_size: int) -> torch.nn.Module:
    """An ncbench network after two training steps on the fixture split (BatchNorm statistics move)."""
    bcls = BACKBONES.get(name)
    sizes = {"embed_dim": 16, "word_dim": 12} | ({"sim_dim": 8} if name != "vse_inf" else {"mlp_hidden": 8})
    net = bcls(build_config(bcls.Config, sizes), vocab_size, 8)
    vocab, split, _ = load_test_split(DATASETS.get("f30k"), DATA, Path("."))
    images = torch.from_numpy(np.array(split.images[:6]))
    from ncbench.data.batching import pad_tokens
    tokens, lengths = pad_tokens(split.tokens[0:30:5])
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(2):
        scores = net(images, tokens, lengths)
        loss = (0.2 + scores - scores.diag()[None]).clamp(min=0).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def test_ncbench_networks_saved_in_official_layouts_round_trip(tmp_path):
    vocab, split, _ = load_test_split(DATASETS.get("f30k"), DATA, tmp_path)
    opt = lambda module: argparse.Namespace(**SIZES, module_name=module, num_layers=1, bi_gru=True,  # noqa: E731
                                            data_name="f30k_precomp", noise_ratio=0.4, sgr_step=3)
    sgr, saf, vse = (_trained(n, len(vocab)) for n in ("sgr", "saf", "vse_inf"))
    cases = {  # file contents in the official layouts → the networks they hold
        "ncr.tar": ({"epoch": 1, "model_A": to_official("sgr", sgr.state_dict()),
                     "model_B": to_official("saf", saf.state_dict()), "best_rsum": 1.0, "opt": opt("SGR")}, None),
        "l2rm.tar": ({"epoch": 1, "net": {f"{e}.{k}": v for e, s in zip(("img_enc", "txt_enc", "sim_enc"),
                                                                       to_official("saf", saf.state_dict()))
                                          for k, v in s.items()}, "opt": opt("SAF")}, None),
        "crcl_vse.tar": ({"schedule": 0, "epoch": 1, "model": to_official("vse_inf", vse.state_dict()),
                          "opt": opt("VSEinfty"), "move_gt": np.ones(4)}, None),
    }
    cases["ncr.tar"][0]["model_B"] = to_official("sgr", sgr.state_dict())
    for name, (content, _) in cases.items():
        torch.save(content, tmp_path / name)
    expect = {"ncr.tar": [sgr, sgr], "l2rm.tar": [saf], "crcl_vse.tar": [vse]}
    for name, nets in expect.items():
        loaded = networks_for([load_checkpoint(tmp_path / name)], vocab, split, "vocab")
        for mine, back in zip(nets, loaded):
            a, b = mine.state_dict(), back.state_dict()
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
        np.testing.assert_array_equal(similarity_matrix(loaded, split, torch.device("cpu")),
                                      similarity_matrix(nets, split, torch.device("cpu")))


class WritesAFile:
    """A hostile 'options' object: unpickling it would create ``target``."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (exec, (f"open({str(self.target)!r}, 'w').write('ran')",))


def test_a_hostile_pickle_is_refused_without_running(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pth.tar"
    torch.save({"epoch": 1, "model_A": [], "model_B": [], "opt": WritesAFile(target)}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth\.tar: holds builtins\.exec"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"builtins\.exec"):
        run([str(path), "--data-root", str(DATA), "--results", str(tmp_path / "r")])
    assert not target.exists()
    # a plain pickle (not a torch zip file) with the same payload is refused as well
    (tmp_path / "old.pkl").write_bytes(pickle.dumps({"opt": WritesAFile(target)}))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "old.pkl")
    assert not target.exists() and not (tmp_path / "r").exists()


def test_each_family_admits_only_what_its_files_hold(tmp_path):
    content = torch.load(FIX / "ncr.pth.tar", weights_only=False)  # our own fixture, read to copy it
    content["extra"] = np.ones(3)  # NumPy arrays are CRCL's (move_gt), not NCR's
    torch.save(content, tmp_path / "ncr_numpy.tar")
    with pytest.raises(CheckpointError, match=r"a ncr checkpoint holding .*numpy"):
        load_checkpoint(tmp_path / "ncr_numpy.tar")
    with pytest.raises(CheckpointError, match=r"holds .*numpy.*which a ncr checkpoint may not contain"):
        load_checkpoint(tmp_path / "ncr_numpy.tar", "ncr")
    assert load_checkpoint(FIX / "crcl_saf.pth.tar", "crcl").family.name == "crcl"  # move_gt admitted there


@pytest.mark.parametrize("argv, message", [
    (["{fix}/ncr.pth.tar", "--family", "decl"], r"no 'model'.*not a DECL checkpoint"),
    (["{fix}/ncr.pth.tar", "{fix}/crcl_saf.pth.tar"], r"several families \(crcl, ncr\)"),
    (["{fix}/ncr.pth.tar", "--dataset", "coco"], r"--dataset coco: the checkpoints were trained on f30k_precomp"),
    (["{fix}/missing.tar"], r"missing\.tar: checkpoint file not found"),
    (["{fix}/data/vocab/f30k_precomp_vocab.json"], r"f30k_precomp_vocab\.json: not a PyTorch checkpoint"),
])
def test_bad_inputs_are_one_clear_error(argv, message, tmp_path):
    argv = [a.format(fix=FIX) for a in argv] + ["--data-root", str(DATA), "--results", str(tmp_path)]
    with pytest.raises(NcbenchError, match=message) as info:
        run(argv)
    assert "\n" not in str(info.value)


def test_another_datasets_vocabulary_is_named(tmp_path):
    data = tmp_path / "data"
    (data / "vocab").mkdir(parents=True)
    (data / "f30k_precomp").mkdir()
    for f in ("test_ims.npy", "test_caps.txt"):
        (data / "f30k_precomp" / f).write_bytes((DATA / "f30k_precomp" / f).read_bytes())
    words = json.loads((DATA / "vocab" / "f30k_precomp_vocab.json").read_text())["word2idx"]
    (data / "vocab" / "f30k_precomp_vocab.json").write_text(json.dumps({"word2idx": words | {"zebra": len(words)}}))
    with pytest.raises(NcbenchError, match=rf"ncr\.pth\.tar \(model_A\): the word embedding has {len(words)} rows; "
                                           rf"the vocabulary .*f30k_precomp_vocab\.json has {len(words) + 1} words"):
        run([str(FIX / "ncr.pth.tar"), "--data-root", str(data), "--results", str(tmp_path / "r")])


def test_a_cc152k_checkpoint_is_filed_with_the_reported_cc152k_rows():
    """CC152K has no injected noise: a DECL/L2RM checkpoint (image-level family) evaluated there goes
    on the caption-level board its reported rows are on, not a second CC152K board."""
    from ncbench.external.evaluate import noise_of

    assert noise_of("cc152k", None, "image").type == "caption"
    assert noise_of("cc152k", "image", "image").type == "caption"
    assert noise_of("f30k", None, "image").type == "image" and noise_of("f30k", "caption", "image").type == "caption"
