"""The command line: help, listing, and every bad input gives one clear line and a non-zero exit."""

import subprocess
import sys

import numpy as np
import pytest

from ncbench.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "leaderboard" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--noise" in capsys.readouterr().out


def test_list(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    assert "vanilla" in out and "vse_light" in out and "synthetic" in out


def test_unknown_names_suggest_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "ncbench", "run", "--methods", "vanila"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "did you mean 'vanilla'" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("argv,message", [
    (["run", "--backbones", "vse_lite"], "did you mean 'vse_light'"),
    (["run", "--dataset", "flickr30k"], "unknown dataset 'flickr30k'"),
    (["run", "--noise", "1.0"], "noise ratio must be in [0, 1)"),
    (["run", "--noise", "0.2,0.4", "--noise-file", "x.npy"], "exactly one --noise"),
    (["run", "--dataset", "cc152k", "--noise", "0.2"], "real noise only"),
    (["run", "--dataset", "cc152k", "--noise", "0", "--noise-type", "image"], "image-level noise does not apply"),
    (["run", "--dataset", "f30k"], "needs --data-root"),
    (["run", "--method-opt", "epochz=3"], "unknown option(s) epochz"),
    (["run", "--method-opt", "epochs=three"], "cannot read 'three' as int"),
    (["run", "--device", "cuda:0" if False else "tpu"], "unknown device"),
])
def test_bad_run_arguments(capsys, tmp_path, argv, message):
    code, _, err = run_cli(capsys, *argv, "--results", str(tmp_path / "r"))
    assert code == 2
    assert message in err and err.startswith("ncbench: error:")


def test_malformed_number_list_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--noise", "0.2,abc"])
    assert e.value.code == 2
    assert "comma-separated numbers" in capsys.readouterr().err


def _f30k_like(tmp_path, write_precomp):
    root = tmp_path / "data"
    folder = root / "f30k_precomp"
    for split, n in (("train", 12), ("dev", 4), ("test", 4)):
        write_precomp(folder, split, n)
    from ncbench.data.vocab import Vocabulary

    (root / "vocab").mkdir()
    Vocabulary.build((folder / "train_caps.txt").read_text().splitlines(), 1).save(root / "vocab/f30k_precomp_vocab.json")
    return root, folder


@pytest.mark.parametrize("damage,message", [
    ("missing", "train_ims.npy: feature file not found"),
    ("truncated", "train_ims.npy: truncated"),
    ("rank", "expected an array of rank 2"),
    ("captions", "train_caps.txt: expected 60 captions"),
])
def test_bad_data_files_are_named(capsys, tmp_path, make_precomp, damage, message):
    root, folder = _f30k_like(tmp_path, make_precomp)
    ims = folder / "train_ims.npy"
    if damage == "missing":
        ims.unlink()
    elif damage == "truncated":
        ims.write_bytes(ims.read_bytes()[:200])
    elif damage == "rank":
        np.save(ims, np.zeros((12, 2, 3, 4), np.float32))
    else:
        lines = (folder / "train_caps.txt").read_text().splitlines()
        (folder / "train_caps.txt").write_text("\n".join(lines[:-1]) + "\n")
    code, _, err = run_cli(capsys, "run", "--dataset", "f30k", "--data-root", str(root), "--noise", "0",
                           "--results", str(tmp_path / "r"), "--no-progress")
    assert code == 2, err
    assert message in err


@pytest.mark.parametrize("content,message", [
    (np.zeros(10, dtype=np.int64), "expected 60 entries"),
    (np.full(60, 99, dtype=np.int64), "image indices must lie in [0, 12)"),
])
def test_bad_noise_file(capsys, tmp_path, make_precomp, content, message):
    root, _ = _f30k_like(tmp_path, make_precomp)
    np.save(tmp_path / "idx.npy", content)
    code, _, err = run_cli(capsys, "run", "--dataset", "f30k", "--data-root", str(root), "--noise", "0.2",
                           "--noise-file", str(tmp_path / "idx.npy"), "--results", str(tmp_path / "r"))
    assert code == 2 and message in err and "idx.npy" in err


def test_leaderboard_reports_unreadable_results_and_keeps_them(capsys, tmp_path):
    bad = tmp_path / "results" / "protocol-1" / "x" / "seed-0.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"schema_version": 1, "status": "ok"')  # truncated
    code, out, err = run_cli(capsys, "leaderboard", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "lb"))
    assert code == 0
    assert "skipped unreadable result" in err and "seed-0.json" in err
    assert bad.exists()
    assert "No successful results" in out


def test_leaderboard_without_results_folder(capsys, tmp_path):
    code, _, err = run_cli(capsys, "leaderboard", "--results", str(tmp_path / "none"))
    assert code == 2 and "results folder not found" in err


def test_noise_make_and_info(capsys, tmp_path):
    out_file = tmp_path / "n.npy"
    code, out, _ = run_cli(capsys, "noise", "make", "--captions", "1000", "--ratio", "0.4", "--seed", "1", "--out", str(out_file))
    assert code == 0 and "realised 0.39" in out
    code, out, _ = run_cli(capsys, "noise", "info", str(out_file))
    assert code == 0 and "1000 captions" in out and "caption-level noise" in out
    code, out, _ = run_cli(capsys, "noise", "make", "--captions", "1000", "--ratio", "0.4", "--type", "image",
                           "--out", str(tmp_path / "i.npy"))
    assert code == 0 and "image-level" in out
    code, out, _ = run_cli(capsys, "noise", "info", str(tmp_path / "i.npy"))
    assert code == 0 and "image-level noise, per-caption" in out


def test_noise_info_names_the_protocol_of_the_papers_files(capsys, shared_data):
    """L2RM's F30K files are image-level (methods-beyond §1), BiCro's caption-level, RCL's per image."""
    files = {"l2rm/f30k_precomp_0.8.npy": "image-level noise, per-caption", "bicro/f30k_precomp_0.2.npy":
             "caption-level noise, per-caption", "rcl/noise_inx_0.2.npy": "image-level noise, per-image (29000 entries, 145000 captions)"}
    for name, words in files.items():
        code, out, _ = run_cli(capsys, "noise", "info", str(shared_data / "noise_index_f30k" / name))
        assert code == 0 and words in out, out


def test_image_level_run_end_to_end(capsys, tmp_path, make_precomp):
    """``--noise-type image``: a per-image file (RCL's layout) is accepted, the result records the
    type in its identity and lives under noise-image-<r>; a caption-level file is refused for it."""
    import json

    root, _ = _f30k_like(tmp_path, make_precomp)
    per_image = np.arange(12, dtype=np.int64)
    per_image[[0, 1, 2]] = [1, 2, 0]
    np.save(tmp_path / "img.npy", per_image)
    code, _, err = run_cli(capsys, "run", "--dataset", "f30k", "--data-root", str(root), "--noise", "0.25",
                           "--noise-type", "image", "--noise-file", str(tmp_path / "img.npy"), "--methods", "probe",
                           "--results", str(tmp_path / "r"), "--no-progress")
    assert code == 0, err
    (path,) = (tmp_path / "r").rglob("seed-0.json")
    assert path.parent.parent.parent.name == "noise-image-0.25"
    ident = json.loads(path.read_text())["identity"]
    assert ident["noise_type"] == "image" and ident["noise_realised_ratio"] == 0.25
    caption_level = np.repeat(np.arange(12, dtype=np.int64), 5)
    caption_level[[0, 7]] = caption_level[[7, 0]]
    np.save(tmp_path / "cap.npy", caption_level)
    code, _, err = run_cli(capsys, "run", "--dataset", "f30k", "--data-root", str(root), "--noise", "0.25",
                           "--noise-type", "image", "--noise-file", str(tmp_path / "cap.npy"), "--methods", "probe",
                           "--results", str(tmp_path / "r2"), "--no-progress")
    assert code == 2 and "holds caption-level noise" in err and "cap.npy" in err


def test_noise_info_on_the_papers_files(capsys, shared_data):
    code, out, _ = run_cli(capsys, "noise", "info", str(shared_data / "noise_index_f30k/bicro/f30k_precomp_0.6.npy"))
    assert code == 0 and "145000 captions" in out and "realised noise 0.59997" in out


def test_output_into_a_closed_pipe_stops_quietly():
    """Issue 23 item 7: ``ncbench status | head`` printed ``internal error: BrokenPipeError``. Here the
    reader of the output is gone before anything is written (as after ``head`` has its lines)."""
    import subprocess
    import sys

    code = ("import os, sys\n"
            "r, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"
            "from ncbench.cli import main\n"
            "sys.exit(main(['list']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_status_of_a_missing_results_folder_is_an_error_and_no_estimate_is_said_as_such(tmp_path, capsys,
                                                                                      write_result):
    """Issue 23 item 7: a mistyped --results listed every run as missing with exit 0, and a sweep with
    nothing finished printed ``estimated 0.00 hours for 0 of them``."""
    argv = ["status", "--dataset", "synthetic", "--methods", "vanilla", "--noise", "0.2"]
    assert main([*argv, "--results", str(tmp_path / "typo")]) == 2
    err = capsys.readouterr().err
    assert "results folder" in err and "typo" in err and "does not exist" in err
    (tmp_path / "r").mkdir()
    assert main([*argv, "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "no time estimate yet" in out and "0.00" not in out


def test_status_shows_an_interrupted_run_of_another_config_as_partial(tmp_path, capsys):
    """Issue 23 item 7: a run interrupted with some --method-opt showed as ``missing`` unless every
    option was repeated to ``status``; its checkpoint is now reported, as another config's."""
    from ncbench.checkpoint import Checkpointer
    from ncbench.results import result_path
    from ncbench.runner import SweepSpec, checkpoint_path, plan

    results = tmp_path / "r"
    (run,) = plan(SweepSpec(methods=["vanilla"], datasets=["synthetic"], noise=[0.2], method_options={"epochs": "3"}))
    Checkpointer(checkpoint_path(result_path(results, run)), run.config_hash).save(1, {"partial": None})
    argv = ["status", "--dataset", "synthetic", "--methods", "vanilla", "--noise", "0.2", "--results", str(results)]
    assert main([*argv, "--method-opt", "epochs=3"]) == 0
    assert "partial " in capsys.readouterr().out  # with the same options: its own checkpoint
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "partial-other" in out and f"of another config ({run.config_hash[:12]})" in out and "after epoch 1" in out


def test_status_estimate_counts_what_checkpoints_already_hold(tmp_path, capsys, result_dict):
    """Issue 23 item 7: the estimate ignored checkpoint progress. A finished run of 10 epochs took an
    hour; the other seed's checkpoint holds 5 epochs (after epoch 4): half an hour is left."""
    import json

    from ncbench.checkpoint import Checkpointer
    from ncbench.results import result_path
    from ncbench.runner import SweepSpec, checkpoint_path, plan

    results = tmp_path / "r"
    first, second, third = plan(SweepSpec(methods=["vanilla"], datasets=["synthetic"], noise=[0.2], seeds=[0, 1, 2]))
    rec = result_dict(method="vanilla", noise=0.2, seed=0)
    rec.update(config_hash=first.config_hash, timings={"total_s": 3600.0, "gpu_hours": 0.0})
    from ncbench.code_identity import code_record

    rec["code"] = code_record("vanilla")  # made by this code: done, not stale-code
    rec["meta"]["epochs"] = 10
    path = result_path(results, first)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(rec))
    Checkpointer(checkpoint_path(result_path(results, second)), second.config_hash).save(4, {"partial": None})
    argv = ["status", "--dataset", "synthetic", "--methods", "vanilla", "--noise", "0.2", "--seeds", "0,1,2",
            "--results", str(results)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 done, 1 missing, 1 partial" in out
    # seed 1: half of an hour, seed 2: a whole hour
    assert "estimated 1.50 hours for 2 of them" in out and "less the epochs the checkpoints of 1 already hold" in out
