"""Every GPU figure in one command (issue 33 item 5): ``python benchmarks/gpu.py``.

On a GPU machine (under eight minutes on one H100/H200) it measures, each beside its reference
timed in the same run:

* recall on an F30K 1K (1,000 × 5,000) and a COCO 5K (5,000 × 25,000) matrix: ncbench's ``ranks``
  on the device vs the official per-query argsort loop (NumPy, on the CPU as the official code runs)
  and vs the **physical limit**: the bytes the kernel reads (counted by ``SyncCounter``) at the
  device's copy bandwidth measured in the same run;
* the loss split (GMM) on 145k and 566k losses vs scikit-learn, and L2RM's partial-OT plan of a
  128-pair batch vs the official NumPy loop;
* SGR/SAF test-time scoring at the papers' widths (36 regions, embed 1024, sim 256) of the whole
  F30K 1K (1,000 × 5,000) and COCO 5K (5,000 × 25,000) test sets: ncbench's ``test_scores`` vs the
  official structure (one caption at a time against every image, as the official ``shard_attn_scores``
  / ``forward_sim`` do; the official code itself with ``NCBENCH_OFFICIAL``), the latter timed on
  all 5,000 F30K captions and on 1,000 of COCO's (scaled), with FLOPs and bytes per pair of each;
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
from ncbench.precision import PRECISIONS, check_precision  # noqa: E402


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
    #: SGR/SAF test-time scoring: (name, images, captions, captions the official structure is timed on)
    scoring: tuple[tuple[str, int, int, int], ...]
    train_pairs: int
    rounds: int
    backbone: dict  # SGR/SAF options (the papers' widths unless reduced)


FULL = Sizes((("F30K 1K", 1000), ("COCO 5K", 5000)), (145_000, 566_435),
             (("F30K 1K", 1000, 5000, 5000), ("COCO 5K", 5000, 25000, 1000)), 640, 5, {})
QUICK = Sizes((("F30K 1K / 50", 20),), (5_000,), (("F30K 1K / 100", 10, 50, 10),), 20, 1,
              {"embed_dim": 32, "sim_dim": 16, "word_dim": 16})


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


def scoring_figures(device: torch.device, sizes: Sizes, precision: str) -> list[Figure]:
    """SGR/SAF test-time scoring of every image × every caption at the papers' widths (36 regions,
    embed 1024, sim 256; random unit-norm region and word embeddings, captions of 8–18 words):
    ncbench's ``test_scores`` over the whole test set, in ``similarity_matrix``'s 1,000-image tiles,
    vs the official structure (``forward_sim`` from an NCR checkout with ``NCBENCH_OFFICIAL``, else
    ``test_kernels.official_forward_sim``) timed on the first captions and scaled to all of them;
    the note gives each structure's FLOPs and bytes written per pair (``test_kernels.pair_costs``)."""
    from ncbench.precision import compute

    widths = {**ref.PAPER, **sizes.backbone}
    out = []
    for backbone in ("sgr", "saf"):
        net, img, _, _ = ref.scoring_inputs(backbone, 2, 2, widths, 36)
        cost = _pair_cost_note(net, img)
        net.to(device)
        loop = _official(net)
        for name, n_img, n_cap, n_official in sizes.scoring:
            img, cap, lengths = _embeddings(n_img, n_cap, net.config.embed_dim, device)

            def ours():
                with torch.no_grad(), compute(device, precision):
                    for i0 in range(0, n_img, 1000):
                        for c0 in range(0, n_cap, 5000):
                            net.test_scores(img[i0:i0 + 1000], cap[c0:c0 + 5000])

            def official():
                with torch.no_grad(), compute(device, precision):
                    return loop(img, cap[:n_official], lengths[:n_official])

            ours(), official()  # warm-up
            t = min_time(ours, max(1, sizes.rounds // 2) if n_img * n_cap <= 5_000_000 else 1, _sync(device))
            t_ref = min_time(official, 1, _sync(device)) * n_cap / n_official
            scaled = "" if n_official == n_cap else f"official timed on {n_official:,} captions, scaled; "
            out.append(Figure(f"{backbone.upper()} test-time scoring, {name} ({n_img:,} × {n_cap:,}, {precision})", 1e3 * t,
                              "official structure (one caption × all images)", 1e3 * t_ref, note=scaled + cost))
    return out


def _embeddings(n_img: int, n_cap: int, dim: int, device: torch.device, seed: int = 0):
    """Unit-norm region embeddings ``(n_img, 36, dim)`` and word embeddings ``(n_cap, 18, dim)`` of
    captions of 8–18 words (zero vectors past a caption's end, as the encoder leaves them)."""
    g = torch.Generator(device=device).manual_seed(seed)
    img = torch.nn.functional.normalize(torch.randn(n_img, 36, dim, generator=g, device=device), dim=-1)
    lengths = torch.randint(8, 19, (n_cap,), generator=g, device=device)
    cap = torch.nn.functional.normalize(torch.randn(n_cap, 18, dim, generator=g, device=device), dim=-1)
    cap *= (torch.arange(18, device=device)[None] < lengths[:, None])[..., None]
    return img, cap, lengths.tolist()


def _official(net):
    """The official structure on ``net``'s weights and device: ``forward_sim`` from a checkout, else
    the benchmark's re-implementation of it."""
    return ref.official_similarity(net) or (lambda i, c, n: ref.official_forward_sim(net, i, c, n))


def _pair_cost_note(net, img: torch.Tensor) -> str:
    """FLOPs and bytes written per pair of both structures (on the CPU, two images, two captions of
    14 words)."""
    words = torch.randint(1, 1000, (2, 14), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cap = net.encode_captions(words, torch.tensor([14, 14]))
    f, b = ref.pair_costs(lambda i, c, n: net.test_scores(i, c), img, cap, [14, 14])
    f_ref, b_ref = ref.pair_costs(_official(net), img, cap, [14, 14])
    return (f"per pair (14 words): {f / 1e6:.2f} MFLOP, {b / 1e3:.0f} kB written "
            f"(official: {f_ref / 1e6:.2f} MFLOP, {b_ref / 1e3:.0f} kB)")


def training_figures(device: torch.device, sizes: Sizes, precision: str) -> list[Figure]:
    """One figure per phase of vanilla's and NCR's schedules (``ncbench bench``'s timing: NCR's
    warm-up, clean-only and clean + noisy epochs each timed apart), with the pairs each network trained."""
    from ncbench.data.shaped import shaped_dataset
    from ncbench.throughput import measure

    ds = shaped_dataset("f30k", sizes.train_pairs // 5, 10)
    rows = measure(["vanilla", "ncr"], "sgr", ds, str(device), repeats=max(1, sizes.rounds // 4), precision=precision,
                   backbone_config=sizes.backbone, warmup=1)
    ref_ms = 1e3 * rows[0].phases[-1].train_s_per_epoch
    return [Figure(f"training epoch, {r.method} {p.phase} on SGR ({r.n_train_pairs:,} pairs, {precision})",
                   1e3 * p.train_s_per_epoch, "vanilla on SGR, same run" if r.method != "vanilla" else "—",
                   ref_ms if r.method != "vanilla" else None,
                   note=f"{p.trained_pairs_per_s:,.0f} trained pairs/s "
                        f"({' + '.join(f'{n:,.0f}' for n in p.trained_pairs)} per network)")
            for r in rows for p in r.phases]


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
    p.add_argument("--precision", choices=PRECISIONS, help="precision of the scoring and training figures "
                   "(default: the device's, tf32 on CUDA, fp32 on the CPU)")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    precision = check_precision(args.precision, device)
    sizes = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    figures = [*recall_figures(device, sizes), *split_figures(device, sizes), *scoring_figures(device, sizes, precision),
               *training_figures(device, sizes, precision)]
    if not args.quick:  # each precision beside fp32, and --compile beside eager (tests/test_precision.py runs its quick mode)
        import gpu_precision

        figures += [Figure(**f) for f in gpu_precision.figures(device)]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else fingerprint(torch.get_num_threads())["cpu"]
    print(f"# ncbench GPU figures: {name}, torch {torch.__version__}{' (quick: sizes reduced)' if args.quick else ''}\n")
    print(table(figures))
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    if args.out:
        write_text_atomic(args.out, json.dumps({"device": name, "quick": args.quick, "precision": precision,
                                                "env": fingerprint(torch.get_num_threads()),
                                                "figures": [{**asdict(f), "speedup": f.speedup} for f in figures]},
                                               indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
