"""``--precision fp32|tf32|bf16`` and the bounded ``--compile`` (issue 33 item 4, ``ncbench.precision``).

The tolerance is checked on the parity inputs (the official weights and inputs stored in
``tests/parity/golden``) against the official float64 scores and against fp32, with bf16 run through
autocast on the CPU and TF32 emulated here, independently of ncbench: every matrix product's
float32 operands truncated to TF32's 10 mantissa bits (what a tensor core reads of them). Compilations
are counted by a backend of the test's own (each call is one graph handed to the compiler).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ncbench.cli import build_parser, main
from ncbench.engine.method import build_config
from ncbench.errors import ConfigError, ResultError
from ncbench.precision import (
    COMPILE_LIMIT,
    EVAL_TOLERANCE,
    check_precision,
    compute,
    default_precision,
    execution,
    recorded_precision,
)
from ncbench.registry import BACKBONES

GOLDEN = Path(__file__).parent / "parity" / "golden"
CPU = torch.device("cpu")


# -- the tolerance, on the parity inputs ------------------------------------------------------------
def _tf32(x: torch.Tensor) -> torch.Tensor:
    """``x`` with its float32 mantissa cut to TF32's 10 bits (the low 13 bits zeroed)."""
    return (x.contiguous().view(torch.int32) & ~0x1FFF).view(torch.float32)


class EmulatedTF32(TorchDispatchMode):
    """Matrix products read their float32 operands as TF32 (sums and outputs stay float32)."""

    OPERANDS = {torch.ops.aten.mm.default: (0, 1), torch.ops.aten.bmm.default: (0, 1),
                torch.ops.aten.addmm.default: (1, 2), torch.ops.aten.baddbmm.default: (1, 2)}

    def __init__(self):
        super().__init__()
        self.products = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.OPERANDS:
            self.products += 1
            args = tuple(_tf32(a) if i in self.OPERANDS[func] and a.dtype == torch.float32 else a
                         for i, a in enumerate(args))
        return func(*args, **(kwargs or {}))


def _golden(name: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN / f"{name}.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _parity_networks():
    """(name, float32 network with the official weights, its inputs, the official float64 eval scores)."""
    d = _golden("sgraf_step")
    sizes = {"embed_dim": 16, "word_dim": 12, "sim_dim": 8, "dropout": 0.0}  # tests/parity/common.SGRAF_SIZES
    for module, name in (("SGR", "sgr"), ("SAF", "saf")):
        bcls = BACKBONES.get(name)
        net = bcls(build_config(bcls.Config, sizes), 40, 8)
        keys = list(net.state_dict())
        net.load_state_dict({k: torch.from_numpy(d[f"{module}_w{i}"]).float() for i, k in enumerate(keys)})
        inputs = (torch.from_numpy(d["images"]).float(), torch.from_numpy(d["tokens"]), torch.from_numpy(d["lengths"]))
        yield name, net.eval(), inputs, d[f"{module}_eval_scores"]
    v = _golden("vse_inf")
    bcls = BACKBONES.get("vse_inf")
    net = bcls(build_config(bcls.Config, {"embed_dim": 16, "word_dim": 12, "mlp_hidden": 8}), 40, 8)
    net.load_state_dict({k[2:]: torch.from_numpy(w) for k, w in v.items() if k.startswith("w:")})
    inputs = (torch.from_numpy(v["images"]), torch.from_numpy(v["tokens"]), torch.from_numpy(v["lengths"]))
    yield "vse_inf", net.eval(), inputs, v["eval_scores"]


def test_reduced_precisions_keep_the_parity_scores_within_the_stated_tolerance():
    """bf16 (autocast on the CPU) and TF32 (emulated) give the parity inputs' evaluation scores within
    ``EVAL_TOLERANCE`` of fp32, which itself equals the official float64 scores; TF32, the CUDA
    default, by a fraction of bf16's difference."""
    assert EVAL_TOLERANCE == 1e-2
    worst = {"bf16": 0.0, "tf32": 0.0}
    for name, net, inputs, official in _parity_networks():
        with torch.no_grad():
            fp32 = net(*inputs).double().numpy()
            with compute(CPU, "bf16"):
                bf16 = net(*inputs).double().numpy()
            with EmulatedTF32() as mode:
                tf32 = net(*inputs).double().numpy()
        assert mode.products > 0, f"{name}: no matrix product was emulated"
        np.testing.assert_allclose(fp32, official, rtol=0, atol=1e-6, err_msg=f"{name}: fp32 vs the official scores")
        for label, scores in (("bf16", bf16), ("tf32", tf32)):
            diff = float(np.abs(scores - fp32).max())
            assert 0 < diff <= EVAL_TOLERANCE, f"{name}: {label} moved the scores by {diff:.2e}"
            worst[label] = max(worst[label], diff)
    assert worst["tf32"] < worst["bf16"] / 2, worst  # the default on CUDA is the finer of the two


def test_the_defaults_and_the_refusal_of_tf32_off_cuda():
    assert default_precision("cuda") == default_precision("cuda:1") == "tf32" and default_precision(CPU) == "fp32"
    assert check_precision(None, "cpu") == "fp32" and check_precision(None, "cuda") == "tf32"
    assert check_precision("off", "cpu") == "fp32" and check_precision("bf16", "cpu") == "bf16"  # --amp's names
    with pytest.raises(ConfigError, match="--precision tf32 needs a CUDA device"):
        check_precision("tf32", "cpu")
    with pytest.raises(ConfigError, match="--precision must be one of fp32, tf32, bf16, got 'fp16'"):
        check_precision("fp16", "cuda")


def test_compute_sets_the_tf32_flags_and_restores_the_callers():
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("medium")  # a caller's own choice, restored on exit
    torch.backends.cudnn.allow_tf32 = True
    try:
        with compute(CPU, "tf32"):
            assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32
            with compute(CPU, "fp32"):
                assert torch.get_float32_matmul_precision() == "highest" and not torch.backends.cudnn.allow_tf32
            assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32
        with pytest.raises(RuntimeError, match="inside"), compute(CPU, "bf16"):
            assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
            assert torch.get_float32_matmul_precision() == "highest"
            raise RuntimeError("inside")
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == ("medium", True)
        # a run's scope: TF32 for the whole run, autocast left to the steps and the scoring (``compute``)
        with execution("tf32"):
            assert torch.get_float32_matmul_precision() == "high" and not torch.is_autocast_enabled("cpu")
        with execution("bf16"), execution("off"):
            assert torch.get_float32_matmul_precision() == "highest" and not torch.backends.cudnn.allow_tf32
            assert not torch.is_autocast_enabled("cpu")
        assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == ("medium", True)
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]


# -- the command line, the result and its schema ------------------------------------------------------
def test_precision_options_and_the_deprecated_amp(capsys):
    parser = build_parser()
    args = parser.parse_args(["run"])
    assert args.precision is None and args.amp is None and capsys.readouterr().err == ""
    args = parser.parse_args(["run", "--precision", "bf16"])
    assert args.precision == args.amp == "bf16" and capsys.readouterr().err == ""
    for old, new in (("off", "fp32"), ("bf16", "bf16")):
        args = parser.parse_args(["tune", "--amp", old])
        assert args.precision == args.amp == new
        assert capsys.readouterr().err == f"ncbench: warning: --amp is deprecated; use --precision {new}\n"
    assert parser.parse_args(["evaluate", "x.tar", "--precision", "fp32"]).precision == "fp32"


def test_tf32_on_the_cpu_is_one_error_before_anything_trains(tmp_path, cache_dir, capsys):
    code = main(["run", "--dataset", "synthetic-small", "--noise", "0.2", "--precision", "tf32", "--device", "cpu",
                 "--results", str(tmp_path / "r"), "--cache-dir", str(cache_dir), "--no-progress", "--threads", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["ncbench: error: --precision tf32 needs a CUDA device (TensorFloat-32 is a GPU "
                                 "tensor-core format; on cpu it would run fp32): use --precision fp32 or bf16"]
    assert not list((tmp_path / "r").rglob("seed-*.json"))


def _result(folder: Path) -> tuple[Path, dict]:
    (path,) = folder.rglob("seed-0.json")
    return path, json.loads(path.read_text())


def test_results_record_the_precision_and_pool_across_it(tmp_path, cache_dir, capsys):
    """Each result says its precision (``meta.precision``; no ``meta.amp``); the precision is not part
    of the run's identity, so the config hash is the one of the same run before ``--precision`` existed
    (a bf16 run finds the fp32 result done), and results with the old ``meta.amp`` still read."""
    from ncbench.results import read_result

    def run(folder: str, *extra: str) -> int:
        return main(["run", "--dataset", "synthetic-small", "--backbones", "vse_bow", "--noise", "0.2",
                     "--method-opt", "epochs=1", "--threads", "1", "--results", str(tmp_path / folder),
                     "--cache-dir", str(cache_dir), "--no-progress", *extra])

    assert run("a") == 0 and run("b", "--precision", "bf16") == 0
    (pa, a), (pb, b) = _result(tmp_path / "a"), _result(tmp_path / "b")
    assert a["meta"]["precision"] == "fp32" and b["meta"]["precision"] == "bf16"
    assert "amp" not in a["meta"] and "precision" not in a["config"] and a["config_hash"] == b["config_hash"]
    before = pa.read_text()
    capsys.readouterr()
    assert run("a", "--precision", "bf16") == 0 and pa.read_text() == before  # pooled: done, not trained again
    assert "0 run(s) trained, 1 already done" in capsys.readouterr().out
    for meta, want in (({"amp": "off"}, "fp32"), ({"amp": "bf16"}, "bf16"), ({}, "fp32"), ({"precision": "tf32"}, "tf32")):
        old = {**a, "meta": {k: v for k, v in a["meta"].items() if k != "precision"} | meta}
        pa.write_text(json.dumps(old))
        assert recorded_precision(read_result(pa)["meta"]) == want
    pa.write_text(json.dumps({**a, "meta": {**a["meta"], "precision": "fp16"}}))
    with pytest.raises(ResultError, match="fp16"):
        read_result(pa)


# -- --compile: compilations capped ---------------------------------------------------------------------
def _captions(lengths: list[int], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(lengths)
    tokens = torch.randint(1, 40, (len(lengths), longest), generator=generator)
    lengths_t = torch.tensor(lengths)
    tokens[torch.arange(longest)[None, :] >= lengths_t[:, None]] = 0
    return tokens, lengths_t


def test_compilations_are_capped_whatever_the_number_of_batches_and_chunks(monkeypatch):
    """A run's compiled SAF kernel meets training batches of several sizes, evaluation with chunks of
    one caption and one-word captions, and a second network: under ``execution(..., compile=True)``
    the compilations stop at ``COMPILE_LIMIT`` and do not grow with further rounds, and every score
    equals the eager network's (variants past the cap run uncompiled)."""
    import torch._dynamo

    graphs = []

    def counting(gm, example_inputs):  # one call per graph handed to the compiler
        graphs.append(gm)
        return gm.forward

    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, **{**kw, "backend": counting}))
    torch._dynamo.reset()
    bcls = BACKBONES.get("saf")
    config = build_config(bcls.Config, {"embed_dim": 16, "word_dim": 12, "sim_dim": 8, "num_regions": 6,
                                        "dropout": 0.0, "pair_chunk": 6 * 16 * 12})
    g = torch.Generator().manual_seed(0)
    counts = []
    try:
        with execution("fp32", compile=True):
            for network in range(2):  # a run's two networks (NCR's A and B), or the next run's
                torch.manual_seed(network)
                eager = bcls(config, 40, 10)
                compiled = bcls(config, 40, 10)
                compiled.load_state_dict(eager.state_dict())
                compiled.compile_kernels()
                for step in range(4):
                    train = step % 2 == 0
                    n = (5, 8)[step // 2] if train else 6
                    # evaluation: 13 one-word captions (chunks of 12 and 1), then 7 of four words (3, 3, 1)
                    lengths = torch.randint(1, 12, (n,), generator=g).tolist() if train else [1] * 13 if step == 1 \
                        else [4] * 7
                    images, (tokens, lens) = torch.randn(n, 6, 10, generator=g), _captions(lengths, g)
                    with torch.set_grad_enabled(train):
                        got, want = (m.train(train)(images, tokens, lens) for m in (compiled, eager))
                    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
                    counts.append(len(graphs))
    finally:
        torch._dynamo.reset()
    assert 2 <= counts[-1] <= COMPILE_LIMIT, counts  # training and evaluation compiled, no more than the cap
    assert counts[len(counts) // 2 - 1] == counts[-1], counts  # the second network and later rounds add none


def test_the_gpu_precision_figures_run_in_their_quick_mode():
    """``benchmarks/gpu_precision.py`` (the figures ``benchmarks/gpu.py`` adds) runs on the CPU: each
    precision the CPU runs beside fp32 with its score difference, and the compiled kernel measured in
    its child process with its compilations counted; each figure has ``gpu.Figure``'s fields."""
    import dataclasses
    import importlib.util
    import sys

    root = Path(__file__).resolve().parents[1] / "benchmarks"
    spec = importlib.util.spec_from_file_location("ncbench_gpu_precision", root / "gpu_precision.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    figures = module.figures(CPU, quick=True)
    assert [f["what"].split(": ")[0] for f in figures] == [
        "SGR evaluation 2 × 10, fp32", "SGR evaluation 2 × 10, bf16", "SGR pair kernel compiled (fp32)",
        "SGR pair kernel compiled (fp32)"]
    assert "max |score − fp32| 0.0e+00 (within" in figures[0]["note"] and "(within the tolerance 0.01)" in figures[1]["note"]
    assert f"compilation(s) in all (cap {COMPILE_LIMIT})" in figures[2]["note"], figures[2]
    fields = {"what", "ncbench_ms", "reference", "reference_ms", "note"}
    assert all(set(f) == fields and f["ncbench_ms"] > 0 for f in figures)
    gpu_fields = (root / "gpu.py").read_text()
    assert all(f"    {name}:" in gpu_fields for name in fields)  # gpu.Figure(**f) takes them


def test_evaluate_records_its_precision_and_refuses_tf32_on_the_cpu(tmp_path, capsys):
    """``ncbench evaluate --precision bf16`` scores a released checkpoint in bfloat16 and says so in
    ``meta.precision``, under the config hash of fp32 (the default on the CPU); tf32 is one error."""
    fixtures = Path(__file__).parent / "fixtures" / "checkpoints"
    argv = ["evaluate", str(fixtures / "ncr.pth.tar"), "--data-root", str(fixtures / "data"), "--device", "cpu"]
    records = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert main([*argv, "--results", str(out), "--precision", precision]) == 0
        assert f"(precision {precision})" in capsys.readouterr().out
        records[precision] = _result(out)[1]
    assert [r["meta"]["precision"] for r in records.values()] == ["fp32", "bf16"]
    assert records["fp32"]["config_hash"] == records["bf16"]["config_hash"]
    assert main([*argv, "--results", str(tmp_path / "t"), "--precision", "tf32"]) == 2
    assert capsys.readouterr().err.startswith("ncbench: error: --precision tf32 needs a CUDA device")
