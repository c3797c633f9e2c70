"""Every GPU figure in one command (issue 33 item 5): ``python benchmarks/gpu.py``.

On a GPU machine (under eight minutes on one H100/H200) it measures, each beside its reference
timed in the same run:

* recall on an F30K 1K (1,000 × 5,000) and a COCO 5K (5,000 × 25,000) matrix: ncbench's ``ranks``
  on the device vs the official per-query argsort loop (NumPy, on the CPU as the official code runs)
  and vs the **physical limit**: the bytes the kernel reads (counted by ``SyncCounter``) at the
  device's copy bandwidth measured in the same run;
* the loss split (GMM) on 145k and 566k losses vs scikit-learn, and L2RM's partial-OT plan of a
  128-pair batch vs the official NumPy loop;
* SGR/SAF test-time scoring at the papers' widths (36 × 2048 regions, embed 1024, sim 256) vs the
  official structure (one caption at a time against every image, as the official ``shard_attn_scores``
  / ``forward_sim`` do), extrapolated to F30K 1K and COCO 5K;
* training throughput of vanilla and NCR on SGR (``ncbench.throughput.measure``);
* the host synchronisations each kernel makes on the device.

It prints one Markdown table and writes the figures as JSON (``--out``). With ``--quick`` (what CI
runs, on the CPU, in well under a minute) every size is reduced so that the script never rots; the
figures of a quick run mean nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import test_kernels as ref  # noqa: E402  (the benchmark suite's references: argsort loop, NumPy Sinkhorn, scikit-learn)

from ncbench.atomic import write_text_atomic  # noqa: E402
from ncbench.benchmarking import fingerprint, min_time  # noqa: E402
from ncbench.host_syncs import SyncCounter  # noqa: E402
from ncbench.kernels.mixture import gmm_split  # noqa: E402
from ncbench.kernels.recall import ranks  # noqa: E402
from ncbench.kernels.transport import partial_ot_plan  # noqa: E402


@dataclass
class Figure:
    what: str
    ncbench_ms: float
    reference: str
    reference_ms: float | None
    limit_ms: float | None = None  # the physical limit (bytes at the measured bandwidth), where one applies
    syncs: int | None = None
    note: str = ""

    @property
    def speedup(self) -> float | None:
        return None if self.reference_ms is None else self.reference_ms / self.ncbench_ms


@dataclass
class Sizes:
    recall: tuple[tuple[str, int], ...]
    split: tuple[int, ...]
    eval_images: int
    eval_captions: int
    train_pairs: int
    rounds: int
    backbone: dict  # SGR/SAF options (the papers' widths unless reduced)


FULL = Sizes((("F30K 1K", 1000), ("COCO 5K", 5000)), (145_000, 566_435), 1000, 1000, 640, 5, {})
QUICK = Sizes((("F30K 1K / 50", 20),), (5_000,), 8, 16, 20, 1, {"embed_dim": 32, "sim_dim": 16, "word_dim": 16})


def _sync(device: torch.device):
    return torch.cuda.synchronize if device.type == "cuda" else None


def copy_bandwidth(device: torch.device, mib: int = 256) -> float:
    """Bytes per second of a device-to-device copy (read + write) of ``mib`` MiB: the achievable
    memory bandwidth the recall figure is compared with."""
    x = torch.empty(mib * 2**20 // 4, dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    t = min_time(lambda: y.copy_(x), 5, _sync(device))
    return 2 * x.numel() * 4 / t


def recall_figures(device: torch.device, sizes: Sizes) -> list[Figure]:
    bw = copy_bandwidth(device, 256 if device.type == "cuda" else 16)
    out = []
    for name, n_img in sizes.recall:
        sims_np = np.random.default_rng(0).normal(size=(n_img, 5 * n_img)).astype(np.float32)
        sims = torch.from_numpy(sims_np).to(device)
        with SyncCounter(watch=[sims]) as c:
            ranks(sims, 5)
        t = min_time(lambda: ranks(sims, 5), sizes.rounds, _sync(device))
        t_ref = min_time(lambda: ref.loop_recall(sims_np, 5), 1)
        out.append(Figure(f"recall {name} ({n_img:,} × {5 * n_img:,})", 1e3 * t, "official argsort loop (CPU)",
                          1e3 * t_ref, 1e3 * c.bytes_read / bw, c.syncs,
                          f"reads {c.bytes_read / sims.numel() / 4:.2f}× the matrix; copy bandwidth {bw / 1e9:.0f} GB/s"))
    return out


def split_figures(device: torch.device, sizes: Sizes) -> list[Figure]:
    out = []
    for n in sizes.split:
        x = ref.losses(n)
        xt = torch.from_numpy(x).to(device)
        gmm_split(xt)  # warm-up
        with SyncCounter() as c:
            gmm_split(xt)
        t = min_time(lambda: gmm_split(xt), sizes.rounds, _sync(device))
        t_ref = min_time(lambda: ref.sklearn_split(x), 1)
        out.append(Figure(f"GMM loss split, {n:,} losses", 1e3 * t, "scikit-learn GaussianMixture (CPU)", 1e3 * t_ref,
                          syncs=c.syncs))
    rng = np.random.default_rng(7)
    cost = np.maximum(1 - np.clip(0.5 + 0.15 * rng.normal(size=(128, 128)), 0.01, 0.99), 1e-10)
    ct = torch.from_numpy(cost).to(device)
    with SyncCounter() as c:
        partial_ot_plan(ct, 0.1, 0.01)
    t = min_time(lambda: partial_ot_plan(ct, 0.1, 0.01), sizes.rounds, _sync(device))
    t_ref = min_time(lambda: ref.numpy_partial_ot(cost, 0.1, 0.01), 1)
    out.append(Figure("partial-OT plan, one 128-pair batch", 1e3 * t, "official NumPy Sinkhorn loop (CPU)", 1e3 * t_ref,
                      syncs=c.syncs))
    return out


def scoring_figures(device: torch.device, sizes: Sizes, amp: str) -> list[Figure]:
    """Test-time scoring of ``eval_images`` × ``eval_captions`` pairs at the papers' widths, ncbench's
    ``score`` vs the official structure, extrapolated to the F30K 1K and COCO 5K test sets."""
    from ncbench.data.batching import pad_tokens
    from ncbench.data.shaped import shaped_dataset
    from ncbench.precision import autocast
    from ncbench.throughput import _probe, score_all_pairs, score_per_caption

    ds = shaped_dataset("f30k", 20, max(sizes.eval_images, sizes.eval_captions // 5 + 1))
    out = []
    for backbone in ("sgr", "saf"):
        torch.manual_seed(0)
        net, _ = _probe(backbone, ds, sizes.backbone)
        net.eval().to(device)
        split = ds.test
        rows = split.image_rows()[:sizes.eval_images]
        tokens, lengths = pad_tokens([split.tokens[i] for i in range(sizes.eval_captions)])
        with torch.no_grad(), autocast(device, amp):
            img = net.encode_images(torch.as_tensor(np.asarray(split.images[rows])).to(device))
            cap = net.encode_captions(tokens.to(device), lengths.to(device))
        lens = lengths.tolist()

        def ours():
            with torch.no_grad(), autocast(device, amp):
                return score_all_pairs(net, img, cap, lens)

        def official():
            with torch.no_grad(), autocast(device, amp):
                return score_per_caption(net, img, cap, lens)

        ours(), official()  # warm-up
        t = min_time(ours, max(1, sizes.rounds // 2), _sync(device))
        t_ref = min_time(official, 1, _sync(device))
        pairs = sizes.eval_images * sizes.eval_captions
        per_pair = t / pairs
        out.append(Figure(f"{backbone.upper()} scoring {sizes.eval_images} × {sizes.eval_captions} ({amp})", 1e3 * t,
                          "official structure (one caption × all images)", 1e3 * t_ref,
                          note=f"⇒ F30K 1K {per_pair * 5e6:.1f} s, COCO 5K {per_pair * 1.25e8:.0f} s "
                               f"(official structure: {t_ref / pairs * 5e6:.1f} s, {t_ref / pairs * 1.25e8:.0f} s)"))
    return out


def training_figures(device: torch.device, sizes: Sizes, amp: str) -> list[Figure]:
    from ncbench.data.shaped import shaped_dataset
    from ncbench.throughput import measure

    ds = shaped_dataset("f30k", sizes.train_pairs // 5, 10)
    rows = measure(["vanilla", "ncr"], "sgr", ds, str(device), repeats=max(1, sizes.rounds // 2), amp=amp,
                   backbone_config=sizes.backbone, warmup=1)
    ref_row = rows[0]
    return [Figure(f"training epoch, {r.method} on SGR ({r.n_train_pairs:,} pairs, {amp})", 1e3 * r.train_s_per_epoch,
                   "vanilla on SGR, same run" if r.method != "vanilla" else "—",
                   1e3 * ref_row.train_s_per_epoch if r.method != "vanilla" else None,
                   note=f"{r.pairs_per_s:,.0f} pairs/s") for r in rows]


def table(figures: list[Figure]) -> str:
    lines = ["| figure | ncbench (ms) | reference | reference (ms) | ratio | physical limit (ms) | host syncs | note |",
             "|---|---|---|---|---|---|---|---|"]
    for f in figures:
        cell = lambda v, fmt: "" if v is None else format(v, fmt)  # noqa: E731
        lines.append(f"| {f.what} | {f.ncbench_ms:.3f} | {f.reference} | {cell(f.reference_ms, '.3f')} | "
                     f"{cell(f.speedup, '.2f')}{'×' if f.speedup else ''} | {cell(f.limit_ms, '.3f')} | "
                     f"{cell(f.syncs, 'd')} | {f.note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="reduced sizes (CI, on the CPU): checks the script, not speed")
    p.add_argument("--amp", default="bf16", choices=["off", "bf16", "fp16"], help="precision of the scoring and training figures")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    amp = args.amp if device.type == "cuda" else "off"
    sizes = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    figures = [*recall_figures(device, sizes), *split_figures(device, sizes), *scoring_figures(device, sizes, amp),
               *training_figures(device, sizes, amp)]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else fingerprint(torch.get_num_threads())["cpu"]
    print(f"# ncbench GPU figures: {name}, torch {torch.__version__}{' (quick: sizes reduced)' if args.quick else ''}\n")
    print(table(figures))
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    if args.out:
        write_text_atomic(args.out, json.dumps({"device": name, "quick": args.quick, "amp": amp,
                                                "env": fingerprint(torch.get_num_threads()),
                                                "figures": [{**asdict(f), "speedup": f.speedup} for f in figures]},
                                               indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
