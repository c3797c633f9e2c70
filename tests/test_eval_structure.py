"""SGR/SAF test-time scoring (issue 33 item 2): ``test_scores`` equals ``score`` (the vectorised
scoring that training still uses, unchanged) and the official per-caption loop to float tolerance
in eval mode, in float64 and under bf16 autocast; its largest intermediate stays within
``pair_chunk`` and within the cache-sized ``TEST_TILE``; what depends on the weights or on one
side alone is not recomputed per tile; evaluation (``similarity_matrix``) goes through it; and its
matrix-product FLOPs per pair, and those of the official structure, are what the module
docstring's formulas say (counted by ``torch.utils.flop_counter.FlopCounterMode``)."""

import functools
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ncbench.data.precomp import Split
from ncbench.evaluate import similarity_matrix
from ncbench.precision import compute
from ncbench.registry import BACKBONES

KERNELS = Path(__file__).resolve().parents[1] / "benchmarks" / "test_kernels.py"
TINY = {"embed_dim": 24, "word_dim": 12, "sim_dim": 10, "num_regions": 6}


@functools.cache
def _bench():
    """benchmarks/test_kernels.py: the official structure re-implemented, and the official itself."""
    spec = importlib.util.spec_from_file_location("ncbench_bench_kernels", KERNELS)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def _net(name: str, dtype=torch.float64, **config):
    """A tiny eval-mode network whose BatchNorm statistics are not the initial 0/1."""
    torch.manual_seed(3)
    cls = BACKBONES.get(name)
    net = cls(cls.Config(**{**TINY, **config}), 50, 8).to(dtype)
    with torch.no_grad():
        for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _embeddings(net, lengths, n_img=9, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    tokens = torch.randint(1, 50, (len(lengths), int(lengths.max())), generator=g)
    tokens = tokens * (torch.arange(tokens.shape[1])[None] < lengths[:, None])
    with torch.no_grad():
        img = net.encode_images(torch.randn(n_img, net.config.num_regions, 8, generator=g, dtype=dtype).relu())
        cap = net.encode_captions(tokens, lengths)
    return img, cap, lengths.tolist()


LENGTHS = [3, 7, 5, 7, 1, 2, 6, 4, 7, 3, 5]  # padded to 7; several captions of one length


@pytest.mark.parametrize("name", ["sgr", "saf"])
def test_test_scores_equal_score_and_the_official_loop_in_eval_mode(name):
    net = _net(name, pair_chunk=2000)  # 9 images × 11 captions × 7 words × 24 > 2000: several tiles
    img, cap, lengths = _embeddings(net, LENGTHS)
    with torch.no_grad():
        fast = net.test_scores(img, cap)
        np.testing.assert_allclose(fast, net.score(img, cap), rtol=1e-12, atol=1e-14)
        loop = _bench().official_forward_sim(net, img, cap, lengths)
        np.testing.assert_allclose(fast, loop, rtol=1e-12, atol=1e-14)
        assert fast.shape == (9, 11) and fast.dtype == torch.float64


@pytest.mark.parametrize("name", ["sgr", "saf"])
def test_the_official_forward_sim_agrees_when_a_checkout_is_given(name, monkeypatch):
    if not os.environ.get("NCBENCH_OFFICIAL"):
        pytest.skip("NCBENCH_OFFICIAL (a folder of official checkouts, tests/parity/README.md) is not set")
    monkeypatch.syspath_prepend(str(KERNELS.parents[1]))  # the repository root: tests.parity
    from tests.parity.official import require

    require("ncr")
    bench = _bench()
    net = _net(name, num_regions=36)  # the official VisualSA is built for 36 regions
    img, cap, lengths = _embeddings(net, LENGTHS)
    official = bench.official_similarity(net)
    with torch.no_grad():
        ref = official(img, cap, lengths)
        np.testing.assert_allclose(net.test_scores(img, cap), ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(bench.official_forward_sim(net, img, cap, lengths), ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["sgr", "saf"])
def test_test_scores_follow_the_configured_precision(name):
    """Under bf16 autocast (``--amp bf16``) the products run in bfloat16: the scores move from the
    float32 ones by bfloat16 rounding only, as ``score``'s do."""
    net = _net(name, dtype=torch.float32)
    img, cap, _ = _embeddings(net, LENGTHS, dtype=torch.float32)
    with torch.no_grad():
        exact = net.score(img, cap)
        np.testing.assert_allclose(net.test_scores(img, cap), exact, rtol=1e-5, atol=1e-6)
        with compute(torch.device("cpu"), "bf16"):
            low = net.test_scores(img, cap).float()
            low_score = net.score(img, cap).float()
    assert not torch.equal(low, exact)  # bfloat16 did run
    assert (low - exact).abs().max() < 2e-2 and (low_score - exact).abs().max() < 2e-2


class _LargestOutput(TorchDispatchMode):
    """The largest number of elements any operation allocates (views and in-place results excluded)."""

    largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if all(r.alias_info is None for r in func._schema.returns):
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    self.largest = max(self.largest, t.numel())
        return out


def test_no_intermediate_exceeds_the_memory_bound():
    """With ``pair_chunk`` 5,000 elements, 30 images × 11 captions (all pairs' ``(L, E)`` tensors:
    30 × 11 × 7 × 24 ≈ 55,000 elements; the largest tensor of the images alone, VisualSA's
    30 × 6 × 24 = 4,320) are scored in tiles whose every tensor holds at most 5,000 elements, and
    the scores do not depend on the bound."""
    net = _net("sgr", pair_chunk=5000)
    img, cap, _ = _embeddings(net, LENGTHS, n_img=30)
    with torch.no_grad():
        with _LargestOutput() as seen:
            tiled = net.test_scores(img, cap)
        assert seen.largest <= 5000, seen.largest
        net.config.pair_chunk = 2**26
        np.testing.assert_allclose(tiled, net.test_scores(img, cap), rtol=1e-13, atol=1e-15)


def test_tiles_are_cache_sized_whatever_pair_chunk_allows(monkeypatch):
    """The test-time tiles have their own, smaller bound (``TEST_TILE``: a tile's tensors stay in
    the caches): with ``pair_chunk`` at its default 2²⁶ and ``TEST_TILE`` lowered to 5,000
    elements, no operation allocates more than 5,000 (30 × 11 × 7 × 24 ≈ 55,000 in one tile
    otherwise) and the scores do not change; on an accelerator ``pair_chunk`` alone bounds a tile."""
    from ncbench.backbones import sgraf

    net = _net("sgr")
    img, cap, _ = _embeddings(net, LENGTHS, n_img=30)
    with torch.no_grad():
        whole = net.test_scores(img, cap)
        monkeypatch.setattr(sgraf, "TEST_TILE", 5000)
        with _LargestOutput() as seen:
            tiled = net.test_scores(img, cap)
    assert net.config.pair_chunk == 2**26 and seen.largest <= 5000, seen.largest
    np.testing.assert_allclose(tiled, whole, rtol=1e-13, atol=1e-15)
    # on an accelerator a tile's launches, not the caches, set its cost: pair_chunk alone bounds it
    assert list(net._test_tiles(30, 11, 7, torch.device("cuda"))) == [(0, 30, 0, 11)]
    assert len(list(net._test_tiles(30, 11, 7, torch.device("cpu")))) > 1


def _matrix_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        fn()
    return flops.get_total_flops()


def test_work_done_once_per_call_is_not_repeated_per_tile():
    """What depends on the weights alone (SGR's folded ``S × S`` step matrices, ``2S³`` FLOPs each)
    or on one side alone is computed once per call: the matrix-product FLOPs of scoring 9 × 11
    pairs in many tiles (``pair_chunk`` 1,000) equal those of one tile per caption length."""
    net = _net("sgr")
    img, cap, _ = _embeddings(net, LENGTHS)
    one_tile = _matrix_flops(lambda: net.test_scores(img, cap))
    net.config.pair_chunk = 1000  # 1,000 // (7 × 24): 5 pairs per tile for the longest captions
    assert _matrix_flops(lambda: net.test_scores(img, cap)) == one_tile


def test_training_mode_scores_are_score_itself():
    """The training path is untouched: in training mode ``test_scores`` is ``score`` bit for bit."""
    net = _net("saf").train()
    img, cap, _ = _embeddings(net, LENGTHS)
    torch.manual_seed(0)
    with torch.no_grad():
        a = net.test_scores(img, cap)
    net = _net("saf").train()
    torch.manual_seed(0)
    with torch.no_grad():
        b = net.score(img, cap)
    assert torch.equal(a, b)


def test_evaluation_scores_through_test_scores(monkeypatch):
    """``similarity_matrix`` (what ``evaluate_split`` ranks) calls the backbone's ``test_scores``."""
    net = _net("sgr", dtype=torch.float32)
    rng = np.random.default_rng(0)
    tokens = [rng.integers(1, 50, size=n) for n in (3, 5, 4, 6, 2, 5, 3, 4)]
    split = Split("test", rng.random((4, 6, 8), dtype=np.float32), ["c"] * 8, 2, 2, tokens)
    calls = []
    original = type(net).test_scores
    monkeypatch.setattr(type(net), "test_scores", lambda self, i, c: calls.append(c.shape[0]) or original(self, i, c))
    sims = similarity_matrix([net], split, torch.device("cpu"))
    assert calls == [8] and sims.shape == (4, 8)
    img = net.encode_images(torch.from_numpy(split.images))
    with torch.no_grad():
        from ncbench.data.batching import pad_tokens

        padded, lengths = pad_tokens(tokens)
        cap = net.encode_captions(padded, lengths)
        np.testing.assert_allclose(sims, net.score(img, cap).numpy(), rtol=1e-5, atol=1e-6)


# -- FLOPs per pair of each structure: the module docstring's formulas vs FlopCounterMode --------------
def _analytic(structure: str, module: str, r: int, length: int, e: int, s: int, k: int) -> int:
    """Matrix-product FLOPs per pair (2 per multiply-add), written out from the two structures."""
    n = length + 1  # nodes: the global one and one per word
    attention = 2 * r * length * e + 2 * r * length * e  # word-region logits, attended context
    similarity = 2 * length * e * s + 2 * e * s + 2 * s  # local and global vectors, the final score
    if structure == "official":
        reason = (k * (3 * 2 * n * s * s + 2 * 2 * n * n * s) if module == "sgr"  # every node, every step
                  else 2 * n * s + 2 * n * s)  # SAF: the filter and the weighted sum
        return attention + similarity + reason
    norm = 2 * length * r * r  # ‖context‖² from the Gram matrix
    if module == "sgr":  # k − 1 full steps (queries and node map in one product), then node 0 only
        reason = (k - 1) * (2 * n * s * 2 * s + 2 * 2 * n * n * s) + 2 * s * s + 2 * 2 * n * s + 2 * s * s
    else:
        reason = 2 * n * s + 2 * n * s
    return attention + norm + similarity + reason


@pytest.mark.parametrize("name", ["sgr", "saf"])
def test_flops_per_pair_match_the_formulas(name):
    """Counted per pair on captions of 5 words (``pair_costs``: the second difference over one more
    image and one more caption), at the tiny widths and at the papers' (R 36, E 1024, S 256, L 14:
    SGR 28.32 → 18.57 MFLOP, SAF 9.94 → 9.98 MFLOP, as the sgraf docstring says)."""
    bench = _bench()
    net = _net(name)
    cfg = net.config
    img, cap, lengths = _embeddings(net, [5, 5], n_img=2)
    ours, _ = bench.pair_costs(lambda i, c, n: net.test_scores(i, c), img, cap, lengths)
    official, _ = bench.pair_costs(lambda i, c, n: bench.official_forward_sim(net, i, c, n), img, cap, lengths)
    sizes = (cfg.num_regions, 5, cfg.embed_dim, cfg.sim_dim, cfg.sgr_steps)
    assert ours == _analytic("ncbench", name, *sizes)
    assert official == _analytic("official", name, *sizes)
    paper = (36, 14, 1024, 256, 3)
    expected = {"sgr": (28_315_136, 18_568_128), "saf": (9_944_576, 9_980_864)}[name]
    assert (_analytic("official", name, *paper), _analytic("ncbench", name, *paper)) == expected
