"""Parity of ``cream``: CREAM's InfoNCE loss in every mode, its three-way split and one iteration."""

from __future__ import annotations

import numpy as np
import torch

from ncbench.kernels.mixture import split_clean

from ..official import cpu_only, extract, load_module, require
from ..common import T, close, sgraf_inputs, official_sgraf, state_list, ncbench_sgraf, Meter, ncr_step_inputs


# -- CREAM: InfoNCELoss (every mode, filters 0 / between / ≥ 1) and train.split_samples ------------------
def cream_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(6)
    b = 24
    return {"scores": rng.uniform(0.05, 0.95, size=(b, b)), "labels": rng.uniform(0, 1, size=b),
            "prob_a": rng.uniform(0, 1, size=400), "prob_b": rng.uniform(0, 1, size=400)}


FILTERS = (0.0, 0.02, 0.05, 1.0)


def make_cream() -> dict[str, np.ndarray]:
    root = require("cream")
    off = load_module(root / "InfoNCELoss.py", "cream_infonce")
    split = extract(root / "train.py", ["split_prob", "split_samples"])
    d = cream_inputs()
    crit = off.InfoNCELoss(temperature=0.07)
    s, y = T(d["scores"]).float(), T(d["labels"]).float()[:, None]
    d["warmup"] = crit(s.clone(), mode="warmup")[0].numpy()
    d["eval_loss"] = crit(s.clone(), mode="eval_loss")[0].numpy()
    d["predict"] = crit(s.clone(), mode="predict").numpy()[0]
    for f in FILTERS:
        w = s.clone().requires_grad_(True)
        loss = crit(w, labels=y, mode="train", soft_label=True, smooth_label=False, filter=f)[0]
        loss.backward()
        d[f"train_{f}"], d[f"grad_{f}"] = loss.detach().numpy(), w.grad.numpy()
    clean, hard, noisy = split.split_samples(d["prob_a"], d["prob_b"], 0.5)
    d["clean"], d["hard"], d["noisy"] = clean, hard, noisy
    return d


def check_cream(d) -> None:
    from ncbench.kernels.complementary import batch_match_probability
    from ncbench.kernels.mining import info_nce_per_sample, soft_target_info_nce, three_way_split

    s, y = T(d["scores"]).float(), T(d["labels"]).float()
    close(info_nce_per_sample(s, 0.07).mean(), d["warmup"], "cream warm-up InfoNCE", rtol=1e-6)
    close(info_nce_per_sample(s, 0.07), d["eval_loss"], "cream per-sample InfoNCE", rtol=1e-6)
    close(batch_match_probability(s, 0.07), d["predict"], "cream prediction q", rtol=1e-6)
    for f in FILTERS:
        w = s.clone().requires_grad_(True)
        loss = soft_target_info_nce(w, y, 0.07, f)
        loss.backward()
        close(loss.detach(), d[f"train_{f}"], f"cream soft-target InfoNCE, filter {f}", rtol=1e-6)
        close(w.grad, d[f"grad_{f}"], f"cream gradient, filter {f}", rtol=1e-5, atol=1e-8)
    masks = [split_clean(T(d[k]), 0.5) for k in ("prob_a", "prob_b")]
    for got, name in zip(three_way_split(*masks), ("clean", "hard", "noisy")):
        np.testing.assert_array_equal(got.numpy(), d[name], err_msg=f"cream {name} subset")


# -- CREAM/train.py train_one_epoch: one iteration (clean, hard and noisy step) with CREAM's own SGR -----
class _Loader:
    """What ``train_one_epoch`` reads from a DataLoader: ``len``, ``.dataset`` (its size, for the filter),
    and iterators with the Python-2 ``.next()`` the official calls (absent from today's DataLoader)."""

    def __init__(self, batches: list, size: int):
        self.batches, self.dataset = batches, range(size)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return _Iter(self.batches)


class _Iter:
    def __init__(self, batches):
        self.left = list(batches)

    def __iter__(self):
        return self

    def next(self):
        if not self.left:
            raise StopIteration
        return self.left.pop(0)

    __next__ = next


CREAM_CASES = {"mixed": (60, 10, 30), "mostly_clean": (90, 5, 5)}  # subset sizes: clean share 0.6 and 0.9


def cream_step_inputs() -> dict[str, np.ndarray]:
    d = ncr_step_inputs()
    rng = np.random.default_rng(8)
    hard = {f"hard_{k}": v for k, v in sgraf_inputs().items()}
    hard["hard_images"] = np.maximum(rng.normal(size=hard["hard_images"].shape), 0.0)
    return d | hard | {"prob_a": rng.uniform(0, 1, 18), "prob_b": rng.uniform(0, 1, 18)}


def make_cream_step() -> dict[str, np.ndarray]:
    import time
    import types

    off = extract(require("cream") / "train.py", ["train_one_epoch"],
                  {"AverageMeter": Meter, "ProgressMeter": Meter, "time": time})
    d = cream_step_inputs()
    b = 6
    pa, pb = T(d["prob_a"]).float(), T(d["prob_b"]).float()

    def rows(prefix, first):
        ids = slice(first, first + b)
        return (T(d[f"{prefix}images"]), T(d[f"{prefix}tokens"]), d[f"{prefix}lengths"].tolist(), list(range(b)),
                torch.ones(b, 1).long(), pa[ids, None].double(), pb[ids, None].double(), torch.ones(b))

    clean, hard = rows("", 0), rows("hard_", 6)
    noisy = (T(d["noisy_images"]), T(d["noisy_tokens"]), d["noisy_lengths"].tolist(), list(range(b)), torch.zeros(b),
             torch.ones(b))
    opt = types.SimpleNamespace(hard_start_epoch=1, noisy_start_epoch=2, soft_label=True, smooth_label=False, log_step=100)
    for case, sizes in CREAM_CASES.items():
        nets = []
        for seed, name in ((0, "A"), (1, "B")):
            torch.manual_seed(seed)
            m = official_sgraf("SGR", "cream")
            d |= {f"{case}_{name}_w{i}": v for i, (_, v) in enumerate(state_list(m))}
            nets.append(m)
        loaders = [_Loader([batch], size) for batch, size in zip((clean, hard, noisy), sizes)]
        with cpu_only():
            off.train_one_epoch(opt, nets[0], nets[1], *loaders, epoch=2, model="A", ratio=sizes[0] / sum(sizes))
        d |= {f"{case}_A_after{i}": v for i, (_, v) in enumerate(state_list(nets[0]))}
    return d


def check_cream_step(d) -> None:
    import types

    from ncbench.data.batching import Batch
    from ncbench.engine.method import EpochPlan
    from ncbench.registry import METHODS

    CREAM = METHODS.get("cream")
    ids = torch.arange(6)
    batches = {0: Batch(T(d["images"]), T(d["tokens"]), T(d["lengths"]), ids),
               6: Batch(T(d["hard_images"]), T(d["hard_tokens"]), T(d["hard_lengths"]), ids + 6),
               12: Batch(T(d["noisy_images"]), T(d["noisy_tokens"]), T(d["noisy_lengths"]), ids + 12)}
    train = types.SimpleNamespace(batch=lambda rows: batches[int(rows[0])])
    probs = [T(d["prob_a"]).float(), T(d["prob_b"]).float()]
    for case, sizes in CREAM_CASES.items():
        nets = [ncbench_sgraf("sgr", d, f"{case}_{name}")[0] for name in ("A", "B")]
        method = CREAM.__new__(CREAM)  # the method's own train_step, on the official networks' weights
        method.nets, method.opts = nets, [torch.optim.Adam(n.parameters(), lr=2e-4) for n in nets]
        method.config = CREAM.Config(warmup_epochs=0, hard_from=1, noisy_from=2)
        method.ctx = types.SimpleNamespace(train=train, device=torch.device("cpu"))
        method.record_labels = lambda ids, labels: None
        step = (0, np.arange(6), np.arange(6, 12), True, np.arange(12, 18))
        logs = method.train_step(2, EpochPlan([step], {"warmup": False, "probs": probs, "sizes": list(sizes)}), 0)
        assert {"loss_A", "loss_hard_A", "loss_noisy_A"} <= set(logs), logs
        for i, (k, v) in enumerate(nets[0].state_dict().items()):
            close(v.detach().numpy(), d[f"{case}_A_after{i}"], f"cream ({case}): {k} after one iteration", rtol=1e-6,
                  atol=1e-9)
