"""The GPU figures of ``--precision`` and ``--compile`` (issue 33 item 4), for ``benchmarks/gpu.py``.

* ``precision_figures``: the evaluation of an SGR at the papers' widths (36 × 2048 regions, embed
  1024, sim 256; 200 images × 1,000 captions of F30K's shape, as in ``docs/gpu-2026-11-28.md``)
  through ``evaluate.similarity_matrix`` at each precision the device runs (fp32; tf32 on CUDA;
  bf16), each beside fp32 timed in the same run, with the largest score difference from fp32 against
  ``precision.EVAL_TOLERANCE``.
* ``compile_figures``: the backbone's ``torch.compile``'d pair kernel (``--compile``) against the
  same network eager, in a child process with a time budget (a compilation cannot be interrupted in
  process; one that does not finish in time is a figure too): the first call of a training step
  (forward + backward of one batch) and of an evaluation (all pairs of images × captions, eval mode,
  no gradients), which is where the compiler runs, their steady-state times, and the compilations
  made under ``precision.execution`` (capped at ``COMPILE_LIMIT``).

Each figure is a dict of ``gpu.Figure``'s fields, so ``gpu.py`` adds them with
``figures += [Figure(**f) for f in gpu_precision.figures(device, quick=args.quick)]``. Run alone:
``python benchmarks/gpu_precision.py [--quick] [--device cuda]``. With ``quick`` the sizes are
reduced and the compiler is torch's ``eager`` backend (the graphs are traced and counted, not
compiled: inductor's C++ compilation takes tens of seconds per graph on a CPU), so the script runs in
CI; the figures of a quick run mean nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

from ncbench.benchmarking import min_time
from ncbench.data.shaped import shaped_dataset
from ncbench.engine.method import build_config
from ncbench.evaluate import similarity_matrix
from ncbench.errors import ConfigError
from ncbench.precision import COMPILE_LIMIT, EVAL_TOLERANCE, PRECISIONS, check_precision, execution
from ncbench.registry import BACKBONES


@dataclass(frozen=True)
class Sizes:
    test_images: int  # × 5 captions each
    batch: int  # a training step's pairs
    rounds: int
    backbone: dict  # SGR/SAF options (the papers' widths unless reduced)
    compile_budget_s: float  # the child process's time limit


FULL = Sizes(200, 128, 5, {}, 240.0)
QUICK = Sizes(2, 4, 1, {"embed_dim": 32, "sim_dim": 16, "word_dim": 16}, 120.0)


def _sync(device: torch.device):
    return torch.cuda.synchronize if device.type == "cuda" else None


def _network(name: str, ds, options: dict, device: torch.device, seed: int = 0):
    bcls = BACKBONES.get(name)
    torch.manual_seed(seed)
    net = bcls(build_config(bcls.Config, {"dropout": 0.0, **options}), len(ds.vocab), int(ds.test.images.shape[-1]))
    return net.to(device)


def device_precisions(device: torch.device) -> list[str]:
    """The precisions ``device`` runs (tf32 only on CUDA)."""
    out = []
    for p in PRECISIONS:
        try:
            out.append(check_precision(p, device))
        except ConfigError:  # not on this device
            continue
    return out


def precision_figures(device: torch.device, sizes: Sizes, backbone: str = "sgr") -> list[dict[str, Any]]:
    """Evaluation (encoding and scoring every pair of the test split) at each precision, beside fp32."""
    ds = shaped_dataset("f30k", 10, sizes.test_images)
    net = _network(backbone, ds, sizes.backbone, device).eval()

    def evaluate(precision: str):
        return similarity_matrix([net], ds.test, device, precision=precision)

    reference = evaluate("fp32")
    t_ref = min_time(lambda: evaluate("fp32"), sizes.rounds, _sync(device))
    out = []
    for precision in device_precisions(device):
        scores = evaluate(precision)  # warm-up, and the scores compared
        t = min_time(lambda: evaluate(precision), sizes.rounds, _sync(device))
        diff = float(abs(scores - reference).max())
        verdict = "within" if diff <= EVAL_TOLERANCE else "OUTSIDE"
        out.append({"what": f"{backbone.upper()} evaluation {ds.test.n_images} × {ds.test.n_captions}, {precision}",
                    "ncbench_ms": 1e3 * t, "reference": "fp32, same run", "reference_ms": 1e3 * t_ref,
                    "note": f"max |score − fp32| {diff:.1e} ({verdict} the tolerance {EVAL_TOLERANCE:g})"})
    return out


# -- --compile: measured in a child process --------------------------------------------------------------
def _batch(ds, n: int, device: torch.device):
    from ncbench.data.batching import pad_tokens

    rows = ds.test.image_rows()[:n]
    images = torch.as_tensor(ds.test.images[rows]).to(device)
    tokens, lengths = pad_tokens([ds.test.tokens[5 * i] for i in range(n)])
    return images, tokens.to(device), lengths.to(device)


def measure_compile(device: torch.device, sizes: Sizes, backbone: str, precision: str, quick: bool) -> dict[str, Any]:
    """In this process: the compiled kernel's first and steady-state calls against eager, and the
    compilations made (``torch._dynamo``'s count of graphs handed to the compiler)."""
    import torch._dynamo.utils as dynamo_utils

    if quick:  # trace and count, do not compile (see the module's text)
        real = torch.compile
        torch.compile = lambda fn, **kw: real(fn, **{**kw, "backend": "eager"})
    ds = shaped_dataset("f30k", 10, max(sizes.batch, sizes.test_images))
    eager, compiled = (_network(backbone, ds, sizes.backbone, device) for _ in range(2))
    compiled.compile_kernels()
    batch = _batch(ds, sizes.batch, device)
    sync = _sync(device)
    out: dict[str, Any] = {}

    def train_step(net):
        net.train()
        net(*batch).sum().backward()

    def evaluate(net):
        net.eval()
        with torch.no_grad():
            return similarity_matrix([net], ds.test, device, precision=precision)

    graphs = lambda: int(dynamo_utils.counters["stats"]["unique_graphs"])  # noqa: E731
    with execution(precision, compile=True):
        for name, fn in (("train", train_step), ("eval", evaluate)):
            before, t0 = graphs(), time.perf_counter()
            fn(compiled)
            if sync:
                sync()
            out[f"{name}_first_s"] = time.perf_counter() - t0
            out[f"{name}_compiled_ms"] = 1e3 * min_time(lambda: fn(compiled), sizes.rounds, sync)
            out[f"{name}_eager_ms"] = 1e3 * min_time(lambda: fn(eager), sizes.rounds, sync)
            out[f"{name}_compilations"] = graphs() - before
    out["compilations"] = graphs()
    out["eval_pairs"] = f"{ds.test.n_images} × {ds.test.n_captions}"
    return out


def compile_figures(device: torch.device, sizes: Sizes, backbone: str = "sgr", precision: str | None = None,
                    quick: bool = False) -> list[dict[str, Any]]:
    """``measure_compile`` in a child process limited to ``sizes.compile_budget_s``."""
    precision = check_precision(precision, device)
    argv = [sys.executable, __file__, "--compile-child", "--device", str(device), "--backbone", backbone,
            "--precision", precision, *(["--quick"] if quick else [])]
    what = f"{backbone.upper()} pair kernel compiled ({precision})"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=sizes.compile_budget_s, check=False)
    except subprocess.TimeoutExpired:
        return [{"what": what, "ncbench_ms": float("nan"), "reference": "eager, same process", "reference_ms": None,
                 "note": f"did not finish compiling within {sizes.compile_budget_s:.0f} s"}]
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [{"what": what, "ncbench_ms": float("nan"), "reference": "eager, same process", "reference_ms": None,
                 "note": f"failed: {tail[:200]}"}]
    m = json.loads(done.stdout.strip().splitlines()[-1])

    def note(part: str) -> str:
        n = m[f"{part}_compilations"]
        return (f"first call {m[f'{part}_first_s']:.1f} s, {n} compilation(s)"
                + (" (this path runs no compiled kernel)" if n == 0 else ""))

    total = f"; {m['compilations']} compilation(s) in all (cap {COMPILE_LIMIT})"
    return [{"what": f"{what}: training step, batch {sizes.batch}", "ncbench_ms": m["train_compiled_ms"],
             "reference": "eager, same process", "reference_ms": m["train_eager_ms"], "note": note("train") + total},
            {"what": f"{what}: evaluation {m['eval_pairs']}", "ncbench_ms": m["eval_compiled_ms"],
             "reference": "eager, same process", "reference_ms": m["eval_eager_ms"], "note": note("eval")}]


def figures(device: torch.device, quick: bool = False, backbone: str = "sgr") -> list[dict[str, Any]]:
    """Every figure of this file, at the device's sizes (``QUICK`` with ``quick``)."""
    sizes = QUICK if quick else FULL
    return [*precision_figures(device, sizes, backbone), *compile_figures(device, sizes, backbone, quick=quick)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backbone", default="sgr", choices=["sgr", "saf"])
    p.add_argument("--quick", action="store_true", help="reduced sizes, eager backend (CI): checks the script, not speed")
    p.add_argument("--precision", help="of the compile figures (default: the device's)")
    p.add_argument("--compile-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    sizes = QUICK if args.quick else FULL
    if args.compile_child:  # one JSON line for compile_figures
        print(json.dumps(measure_compile(device, sizes, args.backbone, args.precision, args.quick)))
        return 0
    for f in [*precision_figures(device, sizes, args.backbone),
              *compile_figures(device, sizes, args.backbone, args.precision, args.quick)]:
        ref = "" if f["reference_ms"] is None else f"  ({f['reference']}: {f['reference_ms']:.1f} ms)"
        print(f"{f['what']}: {f['ncbench_ms']:.1f} ms{ref}  {f['note']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
