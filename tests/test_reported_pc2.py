"""PC2's reported NoW rows (``pc2-poster``) against the poster's three tables, typed in here by hand.

The NoW tables (one per caption tokeniser) are images in the authors' ACM MM'24 poster; the numbers
below were read off them independently of ``reported.csv``. Each row's Sum is also checked against its
six recalls with an explicit loop (the poster's Sums all equal them, so no ``printed_rsum``)."""

from __future__ import annotations

import pytest

from ncbench.report.reported import load_reported, load_sources

RECALLS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")
# benchmark (the card of that tokeniser) → method → six recalls and the printed Sum
POSTER = {
    "now": {  # bert, PC2's own NoW command
        "SGR": (9.9, 24.2, 31.7, 9.4, 23.6, 32.6, 131.4), "NCR": (10.5, 24.7, 32.9, 10.4, 24.2, 33.8, 136.5),
        "DECL": (12.2, 25.3, 33.3, 10.2, 24.9, 33.9, 139.8), "BiCro": (11.7, 26.1, 35.7, 10.9, 26.2, 35.1, 145.7),
        "PC2": (12.9, 28.8, 36.4, 11.9, 26.5, 34.1, 150.6),
    },
    "now-bpe": {
        "SGR": (10.5, 24.3, 33.5, 10.8, 23.7, 33.1, 135.9), "NCR": (12.3, 26.0, 35.9, 11.9, 25.8, 35.1, 147.0),
        "DECL": (12.7, 25.8, 36.3, 11.8, 26.0, 35.0, 147.6), "BiCro": (12.7, 26.2, 37.3, 12.0, 27.1, 35.9, 151.2),
        "PC2": (12.8, 28.1, 38.7, 12.5, 27.8, 37.4, 157.3),
    },
    "now-jieba": {
        "SGR": (11.0, 25.3, 34.5, 11.3, 24.7, 34.1, 140.9), "NCR": (13.8, 27.6, 35.6, 13.6, 27.7, 34.4, 152.7),
        "DECL": (14.2, 27.9, 35.8, 13.5, 28.2, 35.4, 155.0), "BiCro": (14.6, 28.3, 36.4, 13.1, 28.7, 36.5, 157.6),
        "PC2": (16.0, 29.5, 36.9, 15.5, 29.0, 37.0, 163.9),
    },
}
# method → (backbone, ensemble size): PC2 and NCR average two co-trained SGR networks; DECL's and BiCro's not stated
ARCH = {"SGR": ("sgr", 1), "NCR": ("sgr", 2), "DECL": ("", None), "BiCro": ("", None), "PC2": ("sgr", 2)}


@pytest.fixture(scope="module")
def pc2_rows():
    return {(r.benchmark, r.method): r for r in load_reported() if r.source == "pc2-poster"}


def test_pc2_now_rows_match_the_poster(pc2_rows):
    assert set(pc2_rows) == {(b, m) for b, table in POSTER.items() for m in table}
    for (bench, method), row in pc2_rows.items():
        *recalls, printed = POSTER[bench][method]
        assert [row.metrics[k] for k in RECALLS] == recalls, (bench, method)
        assert row.metrics["rsum"] == printed and row.printed_rsum is None
        assert (row.backbone, row.ensemble_size) == ARCH[method]
        # real web noise: filed like CC152K, ratio 0 and the type of every run without injected noise
        assert row.noise_ratio == 0.0 and row.noise_type == "caption" and not row.eval_bug


def test_pc2_now_sums_are_the_sums_of_their_recalls(pc2_rows):
    assert len(pc2_rows) == 15
    for row in pc2_rows.values():
        total = 0.0
        for k in RECALLS:
            total += row.metrics[k]
        assert abs(total - row.metrics["rsum"]) < 0.05, (row.benchmark, row.method)


def test_pc2_source_is_cited():
    assert "poster" in load_sources()["pc2-poster"]
