"""Shared fixtures: the real data folder beside the project, small precomp folders, a cache dir, the
accuracy golden's shared sweep, and the registry-driven ``registered_method``/``backbone_method``
parametrisation."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(os.environ.get("NCBENCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def registered_methods() -> list[str]:
    """Every registered method: the built-ins of the ``methods/`` folder and entry-point plugins."""
    from ncbench.registry import METHODS

    return METHODS.names()


def backbone_methods() -> list[str]:
    """The registered methods that train a backbone: all but those with a similarity model of their
    own (``fixed_backbone``, as the training-free ``probe``), to which backbones do not apply."""
    from ncbench.registry import METHODS

    return [m for m in registered_methods() if not METHODS.get(m).fixed_backbone]


def pytest_generate_tests(metafunc):
    """Registry-driven parametrisation, read when the tests are collected: a test taking
    ``registered_method`` runs once per registered method, one taking ``backbone_method`` once per
    method that trains a backbone. A method added as ``methods/<name>.py`` or as a plugin is in both
    without a line of the tests changed."""
    for fixture, names in (("registered_method", registered_methods), ("backbone_method", backbone_methods)):
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, names())


#: tests that must run in one pytest-xdist worker (``tox`` runs the suite with ``-n 2 --dist loadgroup``):
#: those sharing the session's trained sweep (trained once, not once per worker), the real SLURM cluster
#: (one per machine), and the registry-driven runs (their uninterrupted reference runs are shared)
_GROUPS = (("sweep", lambda item: {"noisy_sweep", "sweep_root"} & set(getattr(item, "fixturenames", ()))),
           ("slurm", lambda item: item.path.name == "test_slurm.py"),
           ("registry-driven", lambda item: item.path.name == "test_registry_driven.py"))


def pytest_collection_modifyitems(config, items):
    """Mark the groups' tests, and name each one's group in its id (``id@group``), which is what
    pytest-xdist's ``loadgroup`` scheduler groups on. pytest-xdist's own hook does the naming, but
    it may run before these marks exist, and pytest-xdist 3.8 writes ``item._nodeid``, which pytest
    9.2 no longer reads (its id is ``item._id``): the marks alone left every group spread over both
    workers, and the shared sweep was trained once in each."""
    loadgroup = getattr(config.option, "loadgroup", False)  # True in a pytest-xdist worker under --dist loadgroup
    for item in items:
        for name, member in _GROUPS:
            if member(item):
                item.add_marker(pytest.mark.xdist_group(name))
                if loadgroup and "@" not in item.nodeid:
                    _name_group(item, name)
                break


def _name_group(item, group: str) -> None:
    """``item``'s id becomes ``id@group`` (pytest-xdist's convention), or the run stops saying why."""
    new = f"{item.nodeid}@{group}"
    if hasattr(item, "_id"):  # pytest ≥ 9.2
        from _pytest.nodeid import coerce_node_id

        item._id = coerce_node_id(new)
    else:
        item._nodeid = new
    if item.nodeid != new:
        raise pytest.UsageError(f"cannot put {item.nodeid} in the pytest-xdist group {group!r}: this pytest "
                                "version keeps test ids elsewhere (tests/conftest.py, _name_group)")


def pytest_configure(config):
    """In a pytest-xdist worker, one CPU thread for torch and the BLAS/OpenMP pools (inherited by the
    subprocesses tests start): two workers of two threads each on two cores ran far slower than one."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        import torch

        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded_global_rngs():
    """Every test starts from the same global torch and NumPy state, so a draw that breaks a test
    breaks it on every machine and every run, not once in CI."""
    import torch

    torch.manual_seed(0)
    np.random.seed(0)


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
    """``noisy_sweep(method)``: results of vanilla and ``method`` in the accuracy golden's CI sweep
    (``ncbench.accuracy.CI_SWEEP``: 60% noise, seeds 0, 1, 2, the embedded dataset, ``vse_bow``).
    The first call trains every registered method but the reference rows (``golden_methods``: the
    built-ins and any plugin) in one sweep, the same one ``ncbench golden`` trains (two local
    workers of one thread each: one thread makes the numbers independent of the machine's core
    count, which ``benchmarks/accuracy_golden.json`` relies on); later calls only read. (The same
    sweep on ``vse_light`` is ``pytest benchmarks --accuracy-full``.)"""
    from ncbench.accuracy import CI_SWEEP, golden_methods
    from ncbench.cli.golden import train

    methods = golden_methods()
    trained: list[dict] = []

    def run(method: str) -> list[dict]:
        if not trained:
            trained.extend(train(CI_SWEEP, methods, sweep_root, cache_dir))
        return [r for r in trained if r["identity"]["method"] in ("vanilla", method)]

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


def _metrics(r1: float, rsum_shift: float = 0.0) -> dict:
    vals = {"i2t_r1": r1, "i2t_r5": r1 + 20, "i2t_r10": r1 + 30, "t2i_r1": r1 - 10, "t2i_r5": r1 + 10, "t2i_r10": r1 + 20}
    return {**vals, "rsum": sum(vals.values()) + rsum_shift, "i2t_medr": 2.0, "i2t_meanr": 5.0, "t2i_medr": 3.0,
            "t2i_meanr": 8.0}


COMMIT = "c0ffee" * 6 + "c0ff"


def committed_code(method: str) -> dict:
    """A ``code`` block of committed code (its hash: the first 16 hex of the sha256 of its parts joined,
    as ``code_identity`` computes it)."""
    parts = {"method": "a" * 64, "training": "b" * 64}
    return {"hash": hashlib.sha256((parts["method"] + parts["training"]).encode()).hexdigest()[:16],
            "method": {"name": method, "module": f"ncbench.methods.{method}", "sha256": parts["method"]},
            "ncbench": {"version": "0.1.0", "commit": COMMIT, "dirty": False, "training_sha256": parts["training"]}}


def make_result_dict(method="mymethod", backbone="vse_light", dataset="synthetic", noise=0.0, seed=0, r1=50.0,
                     sha=None, protocol="1", coco=False, ensemble=1, gpu_hours=0.0, rsum_shift=0.0,
                     reference=None, recipe=None, noise_type=None, committed=False) -> dict:
    """A complete, schema-valid result record with hand-chosen recalls (R@1 = ``r1``, the others offset
    from it, so every number in a rendered table can be predicted by hand). ``noise_type=None``: no
    such field, as in results written before image-level noise existed (read as caption-level).
    ``committed``: made by committed code (a ``code`` block and a clean git record, which ``submit``
    requires); otherwise no ``code`` block, as results written before code records existed."""
    from ncbench.submission import canonical_noise

    if sha is None:
        sha = canonical_noise().get(dataset, {}).get(noise_type or "caption", {}).get(f"{noise:g}", {}).get("sha256", "0" * 64)
    test = {"full": _metrics(r1, rsum_shift), "primary": "full", "split": "test"}
    if coco:
        folds = [_metrics(r1 + 10 + d) for d in (-1.0, 1.0)]
        test.update(primary="fold_mean", fold_mean=_metrics(r1 + 10), folds=folds, split="testall")
    cfg = {"method": method, "backbone": backbone, "dataset": dataset, "noise_ratio": noise, "seed": seed,
           **({"noise_type": noise_type} if noise_type else {})}
    return {
        "schema_version": 1, "status": "ok",
        "identity": {**cfg, "protocol_version": protocol, "noise_index_sha256": sha},
        "config": cfg, "config_hash": hashlib.sha256(repr(sorted(cfg.items())).encode()).hexdigest()[:16],
        "test": test, "best_val": {"epoch": 3},
        "meta": {"ensemble_size": ensemble, "selection": "best_val_rsum", **({"reference": reference} if reference else {})},
        **({"recipe": recipe} if recipe else {}),
        "timings": {"gpu_hours": gpu_hours}, "error": None,
        **({"code": committed_code(method), "env": {"git": {"commit": COMMIT, "dirty": False}}} if committed
           else {"env": {}}),
    }


@pytest.fixture
def result_dict():
    """``result_dict(**fields)``: ``make_result_dict`` as a fixture (tests do not import conftest)."""
    return make_result_dict


@pytest.fixture
def write_result():
    """``write_result(root, **fields)``: write ``make_result_dict(**fields)`` at its standard path."""
    import json

    from ncbench.results import identity_path

    def write(root: Path, **fields) -> Path:
        data = fields.pop("data", None) or make_result_dict(**fields)
        path = identity_path(root, data["identity"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
        return path

    return write


@pytest.fixture(scope="session")
def chromium() -> str | None:
    """The headless browser the page tests open pages in (Debian's chromium), or None where there is none."""
    import shutil

    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                 if shutil.which(n)), None)
