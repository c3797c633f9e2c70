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
def noisy_sweep(tmp_path_factory, cache_dir):
    """``noisy_sweep(method)``: results of vanilla and ``method`` at 60% noise over seeds 0, 1, 2 on the
    embedded dataset, in one results folder shared by the whole session (vanilla is trained once)."""
    from ncbench.cli import main
    from ncbench.results import load_results

    root = tmp_path_factory.mktemp("noisy-sweep")

    def run(method: str) -> list[dict]:
        argv = ["run", "--methods", f"vanilla,{method}", "--noise", "0.6", "--seeds", "0,1,2", "--results", str(root),
                "--cache-dir", str(cache_dir), "--no-progress", "--device", "cpu"]
        assert main(argv) == 0
        return [r for r in load_results(root).results if r["identity"]["method"] in ("vanilla", method)]

    return run
