"""The noise-model summary (``ncbench.report.noise_effect``) against sums done by hand."""

from __future__ import annotations

import pytest

from ncbench.data.noise_spec import NoiseSpec
from ncbench.report.noise_effect import effect_tables, render_effect


def result(method, model, rsum, auc=None, seed=0, ratio=0.5):
    ident = {"method": method, "dataset": "synthetic", "noise_ratio": ratio, "seed": seed,
             **NoiseSpec.make("caption", model).identity_fields()}
    return {"status": "ok", "identity": ident, "test": {"full": {"rsum": rsum}},
            "detection": {"auc": auc} if auc is not None else None}


def test_gain_and_survival_by_hand():
    rs = [result("vanilla", "shuffle", 200), result("vanilla", "shuffle", 210, seed=1),
          result("ncr", "shuffle", 300, 0.9), result("ncr", "shuffle", 310, 0.8, seed=1),
          result("vanilla", "neighbour", 300), result("ncr", "neighbour", 330, 0.7),
          result("probe", "shuffle", 280), result("probe", "neighbour", 320),
          result("ncr", "shuffle", float("nan"), seed=2), {"status": "failed", "identity": {}}]
    (t,) = effect_tables(rs)
    assert t.models == ["caption", "caption-neighbour"]
    assert t.methods == ["vanilla", "ncr", "probe"]
    assert t.cells[("ncr", "caption")].mean == 305 and t.cells[("ncr", "caption")].auc == pytest.approx(0.85)
    assert t.gain("ncr", "caption") == 305 - 205 and t.gain("ncr", "caption-neighbour") == 30
    assert t.survives("ncr", "caption-neighbour") == pytest.approx(30.0)
    text = render_effect(t)
    assert "| method | shuffle rSum | neighbour rSum | shuffle AUC | neighbour AUC |" in text
    assert "| ncr | 305.0 ± 7.1 | 330.0 ± 0.0 | 0.850 | 0.700 | +100.0 | +30.0 | 30% |" in text
    assert "| *probe* |" in text


def test_one_model_alone_gives_no_table():
    assert effect_tables([result("vanilla", "shuffle", 200), result("ncr", "shuffle", 300)]) == []
