"""Shared fixtures: the real data folder beside the project, small precomp folders, a cache dir."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(os.environ.get("NCBENCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real data folder {SHARED} is absent (set NCBENCH_SHARED_DATA to its location)")
    return SHARED


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache for the whole session, so the synthetic dataset is generated once."""
    return tmp_path_factory.mktemp("ncbench-cache")


@pytest.fixture
def make_precomp():
    """``make_precomp(root, split, n_images, ...)`` writes one split of a precomp folder."""
    return write_precomp


def write_precomp(root: Path, split: str, n_images: int, cpi: int = 5, dim: int = 8, per_caption: bool = False,
                  regions: int | None = None, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    shape = (n_images * (cpi if per_caption else 1), *((regions,) if regions else ()), dim)
    feats = rng.normal(size=shape).astype(np.float32)
    caps = [f"a photo number {i} with caption {k} ." for i in range(n_images) for k in range(cpi)]
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / f"{split}_ims.npy", feats)
    (root / f"{split}_caps.txt").write_text("\n".join(caps) + "\n")
    return feats, caps


@pytest.fixture(scope="session")
def sweep_root(tmp_path_factory) -> Path:
    """One results folder for the slow end-to-end tests, so runs they share are trained once."""
    return tmp_path_factory.mktemp("sweep")


@pytest.fixture(scope="session")
def noisy_sweep(sweep_root, cache_dir):
    """``noisy_sweep(method)``: results of vanilla and ``method`` at 60% noise over seeds 0, 1, 2 on the
    embedded dataset (vanilla is trained once per session)."""
    from ncbench.cli import main
    from ncbench.results import load_results

    def run(method: str) -> list[dict]:
        argv = ["run", "--methods", f"vanilla,{method}", "--noise", "0.6", "--seeds", "0,1,2", "--results", str(sweep_root),
                "--cache-dir", str(cache_dir), "--no-progress", "--device", "cpu"]
        assert main(argv) == 0
        return [r for r in load_results(sweep_root).results
                if r["identity"]["method"] in ("vanilla", method) and r["identity"]["noise_ratio"] == 0.6]

    return run


@pytest.fixture(scope="session")
def beats_vanilla():
    """``beats_vanilla(results, method)``: assert that ``method``'s mean test rSum over its seeds exceeds
    vanilla's by more than the two methods' sample standard deviations added together."""

    def check(results: list[dict], method: str) -> dict:
        rsum = {m: np.array([r["test"]["full"]["rsum"] for r in results if r["identity"]["method"] == m])
                for m in ("vanilla", method)}
        assert len(rsum[method]) >= 3 and len(rsum["vanilla"]) >= 3, rsum
        gap = rsum[method].mean() - rsum["vanilla"].mean()
        assert gap > rsum[method].std(ddof=1) + rsum["vanilla"].std(ddof=1), rsum
        return rsum

    return check


@pytest.fixture
def small_context():
    """``small_context(folder, ratio=0.4, seed=0)``: a TrainContext over a tiny synthetic dataset
    (60 training images) with a tiny ``vse_light``, for method-level unit tests."""
    import torch

    from ncbench.data.batching import TrainingSet
    from ncbench.data.cards import SyntheticCard
    from ncbench.data.noise import make_noise_index
    from ncbench.data.synthetic import SyntheticSpec
    from ncbench.engine.method import TrainContext
    from ncbench.registry import BACKBONES

    def make(folder: Path, ratio: float = 0.4, seed: int = 0):
        ds = SyntheticCard("s", "", spec=SyntheticSpec(n_train=60, n_dev=20, n_test=20)).load(None, folder)
        noise = make_noise_index(ds.train.caption_to_row(), ratio, 0)
        backbone = BACKBONES.get("vse_light")
        conf = backbone.Config(embed_dim=16, word_dim=8, mlp_hidden=16)

        def build(extra_tokens: int = 0):
            return backbone(conf, len(ds.vocab) + extra_tokens, ds.train.images.shape[-1])

        ctx = TrainContext(TrainingSet(ds.train, noise), build, len(ds.vocab), torch.device("cpu"),
                           torch.Generator().manual_seed(seed))
        return ctx, ds

    return make
