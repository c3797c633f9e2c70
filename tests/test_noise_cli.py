"""``ncbench noise make|info|audit`` with noise models, through the command line."""

from __future__ import annotations

import json

import numpy as np

from ncbench.cli import main
from ncbench.data.noise_models import read_texts


def test_make_partial_on_a_dataset_writes_index_and_texts(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NCBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "p.npy"
    assert main(["noise", "make", "--dataset", "synthetic-small", "--model", "partial", "--ratio", "0.2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    t2i = np.load(out)
    assert np.array_equal(t2i, np.arange(1500) // 5)  # partial keeps every image
    texts = read_texts(tmp_path / "p.texts.json", 1500)
    assert len(texts) == 300 and "300 corrupted caption texts" in printed
    assert main(["noise", "info", str(out)]) == 0
    assert "300 corrupted caption texts (partial noise: 0.20000" in capsys.readouterr().out


def test_make_neighbour_reports_the_swap_similarity_beside_a_shuffle(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NCBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "n.npy"
    assert main(["noise", "make", "--dataset", "synthetic-small", "--model", "neighbour", "--noise-opt", "k=3",
                 "--ratio", "0.4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    line = [x for x in text.splitlines() if "similarity of the swapped images" in x][0]
    hard, rand = (float(x.split(":")[-1]) for x in line.split(";"))
    assert hard > rand + 0.3  # the nearest images are far more alike than random ones
    assert (np.load(out) != np.arange(1500) // 5).mean() == 0.4


def test_make_refuses_a_model_without_data_and_unknown_options(tmp_path, capsys):
    assert main(["noise", "make", "--captions", "100", "--model", "neighbour", "--ratio", "0.2",
                 "--out", str(tmp_path / "x.npy")]) == 2
    assert "give --dataset" in capsys.readouterr().err
    assert main(["noise", "make", "--dataset", "synthetic-small", "--model", "neighbour", "--noise-opt", "kk=3",
                 "--ratio", "0.2", "--out", str(tmp_path / "x.npy")]) == 2
    assert "unknown parameter(s) kk" in capsys.readouterr().err
    assert not (tmp_path / "x.npy").exists()


def test_audit_prints_json_with_the_shuffle_beside_each_model(shared_data, capsys):
    assert main(["noise", "audit", "--data-root", str(shared_data), "--models", "neighbour,partial", "--seeds", "0",
                 "--no-sweep", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    names = [m["model"] for m in doc["audit"]["models"]]
    assert names[0] == "shuffle" and "neighbour" in names and "partial" in names
