"""The SLURM executor: options and their sbatch form, and sweeps through a real single-node SLURM
cluster (Debian's slurm-wlm) that the ``slurm`` fixture starts on this machine, including a
preempted task that submitit requeues and that resumes from its run's checkpoint.

Without slurm-wlm (or without root to start its daemons) the cluster tests skip and say why;
``.ci/run`` installs the packages on CI."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ncbench.errors import ConfigError
from ncbench.slurm import SlurmOptions

SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def _which(name: str) -> str | None:
    return shutil.which(name, path=SBIN)


# -- options -------------------------------------------------------------------------------------
def test_options_come_from_a_toml_file_and_flags_override_it(tmp_path):
    conf = tmp_path / "slurm.toml"
    conf.write_text('partition = "gpu"\ntime_min = 600\nsetup = ["module load cuda"]\n'
                    '[extra]\naccount = "lab"\nqos = "normal"\n')
    opts = SlurmOptions.from_sources(str(conf), {"time_min": 120, "setup": ["source venv/bin/activate"],
                                                 "extra": {"qos": "high"}, "mem": None})
    assert (opts.partition, opts.time_min, opts.gpus_per_task) == ("gpu", 120, 1)
    assert opts.setup == ["module load cuda", "source venv/bin/activate"]
    assert opts.extra == {"account": "lab", "qos": "high"}
    params = opts.executor_parameters()
    assert params["partition"] == "gpu" and params["time"] == 120 and params["gpus_per_task"] == 1
    assert params["additional_parameters"] == {"account": "lab", "qos": "high"}
    assert "gpus_per_task" not in SlurmOptions(gpus_per_task=0).executor_parameters()


def test_submitit_accepts_the_parameters_and_writes_them_into_the_sbatch_script(tmp_path):
    submitit = pytest.importorskip("submitit")
    opts = SlurmOptions(partition="gpu", time_min=90, cpus_per_task=8, mem="64G", setup=["module load cuda"],
                        extra={"constraint": "a100"})
    executor = submitit.SlurmExecutor(folder=tmp_path)
    executor.update_parameters(**opts.executor_parameters())  # raises on a parameter it does not know
    script = executor._make_submission_file_text("python -c pass", "uid")
    for flag in ("--partition=gpu", "--time=90", "--gpus-per-task=1", "--cpus-per-task=8", "--mem=64G",
                 "--constraint=a100", "--signal=USR2@"):
        assert f"#SBATCH {flag}" in script, flag
    assert "module load cuda" in script


@pytest.mark.parametrize("text, message", [
    ("partitionn = 'gpu'\n", "unknown SLURM option(s) partitionn"),
    ("time_min = -5\n", "time_min must be a positive number of minutes"),
    ("time_min = \n", "not a valid TOML file"),
])
def test_bad_option_files_are_refused_with_the_file_named(tmp_path, text, message):
    conf = tmp_path / "slurm.toml"
    conf.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        SlurmOptions.from_sources(str(conf), {})
    assert str(err.value).startswith(str(conf))
    with pytest.raises(ConfigError, match="not found"):
        SlurmOptions.from_sources(str(tmp_path / "none.toml"), {})


def test_without_sbatch_the_cli_says_so(tmp_path, monkeypatch, capsys):
    pytest.importorskip("submitit")
    from ncbench.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch anywhere
    argv = ["run", "--executor", "slurm", "--dataset", "synthetic-small", "--methods", "vanilla", "--noise", "0",
            "--results", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "sbatch not found on the PATH" in capsys.readouterr().err


# -- a real single-node cluster ------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.is_file() else f"({path} absent)"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A single-node SLURM cluster (munged, slurmctld, slurmd) on private ports and folders; yields
    the environment that points SLURM's commands at it. Skips, saying why, where it cannot start."""
    pytest.importorskip("submitit", reason="submitit is not installed (pip install 'ncbench[slurm]')")
    missing = [b for b in ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo") if _which(b) is None]
    if missing:
        pytest.skip(f"SLURM is not installed here ({', '.join(missing)} missing; Debian: apt-get install slurm-wlm)")
    if os.geteuid() != 0:
        pytest.skip("starting munged, slurmctld and slurmd for the test cluster needs root")
    root = tmp_path_factory.mktemp("slurm")
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    sock = root / "munge.socket"
    (root / "state").mkdir()
    (root / "spool").mkdir()
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=ncbenchtest", f"SlurmctldHost={host}(127.0.0.1)", "SlurmUser=root",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        "AuthType=auth/munge", f"AuthInfo=socket={sock},cred_expire=10",  # requeued jobs wait cred_expire s
        "CredType=cred/munge",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/slurmctld.log", f"SlurmdLogFile={root}/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none", "MpiDefault=none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "ReturnToService=2",
        "SlurmdParameters=config_overrides", "SchedulerParameters=sched_interval=1", "KillWait=5",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN",
        f"PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP",
    ]) + "\n")
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": SBIN}
    started: list[list[str]] = []

    def start(cmd: list[str], log: Path) -> None:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            pytest.skip(f"could not start {cmd[0]}: {(done.stderr or done.stdout).strip()[-400:]}\n{_tail(log)}")
        started.append(cmd)

    start([_which("munged"), "--force", f"--key-file={key}", f"--socket={sock}", f"--pid-file={root}/munged.pid",
           f"--log-file={root}/munged.log", f"--seed-file={root}/munged.seed"], root / "munged.log")
    try:
        start([_which("slurmctld"), "-c", "-f", str(conf)], root / "slurmctld.log")
        start([_which("slurmd"), "-f", str(conf), "-N", host], root / "slurmd.log")
        deadline = time.time() + 60
        while True:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, check=False).stdout.strip()
            if state in ("idle", "mix", "alloc"):
                break
            if time.time() > deadline:
                pytest.skip(f"the test SLURM node did not come up (sinfo: {state!r})\n{_tail(root / 'slurmctld.log')}\n"
                            f"{_tail(root / 'slurmd.log')}")
            time.sleep(0.5)
        yield env
    finally:
        subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True, timeout=60, check=False)
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            try:
                os.kill(int((root / pid_file).read_text().strip()), 15)
            except (OSError, ValueError):
                pass


def _ncbench(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ncbench", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _slurm_args(results: Path, cache_dir: Path, *extra: str) -> list[str]:
    return ["run", "--executor", "slurm", "--dataset", "synthetic-small", "--results", str(results),
            "--cache-dir", str(cache_dir), "--threads", "1", "--no-progress", "--slurm-gpus", "0", "--slurm-cpus", "1",
            "--slurm-time", "20", *extra]


def test_a_two_run_sweep_goes_through_sbatch_and_both_results_land(slurm, tmp_path, cache_dir):
    results = tmp_path / "r"
    args = _slurm_args(results, cache_dir, "--methods", "vanilla", "--noise", "0,0.4", "--method-opt", "epochs=1")
    done = _ncbench(slurm, *args, "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitted 2 run(s) as SLURM job array" in done.stdout
    files = sorted(results.rglob("seed-0.json"))
    assert len(files) == 2 and all(json.loads(f.read_text())["status"] == "ok" for f in files)
    logs = list((results / "slurm").rglob("*_log.out"))
    assert len(logs) == 2 and all("test rSum" in f.read_text() for f in logs)  # each task trained one run
    again = _ncbench(slurm, *args)
    assert again.returncode == 0 and "2 done, 0 being trained, 0 to submit" in again.stdout


def test_a_preempted_task_is_requeued_and_resumes_from_its_checkpoint(slurm, tmp_path, cache_dir):
    results = tmp_path / "r"
    args = _slurm_args(results, cache_dir, "--methods", "ncr", "--noise", "0.4", "--method-opt", "warmup_epochs=2",
                       "--method-opt", "epochs=8")
    submitted = _ncbench(slurm, *args)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = next(line.split()[0] for line in submitted.stdout.splitlines() if line.startswith("  "))
    ckpt = results / "protocol-1" / "synthetic-small" / "noise-0.4" / "ncr" / "vse_light" / "seed-0.ckpt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert ckpt.exists(), "the task wrote no checkpoint"
    # what SLURM sends before a time limit or a preemption; submitit checkpoints and requeues
    subprocess.run(["scancel", "--signal=USR2", job_id], env=slurm, check=True, timeout=60)
    result = ckpt.with_suffix(".json")
    deadline = time.time() + 400
    while not result.exists() and time.time() < deadline:
        time.sleep(0.5)
    assert result.exists(), _tail(next((results / "slurm").rglob("*_log.err")), 30)
    record = json.loads(result.read_text())
    assert record["status"] == "ok" and record["meta"]["resumed_after_epoch"] is not None
    log = "".join(f.read_text() for f in (results / "slurm").rglob("*_log.*"))
    # the task saved its place before handing over to submitit's requeue, and continued there
    assert "stopped by SIGUSR2; kept checkpoint" in log and "Requeued job" in log
    kept = log.split("stopped by SIGUSR2; kept checkpoint ", 1)[1].split(" (", 1)[0]
    assert f"resuming {kept}" in log


def test_a_refused_submission_is_one_readable_error(slurm, tmp_path, cache_dir):
    args = _slurm_args(tmp_path / "r", cache_dir, "--methods", "vanilla", "--noise", "0", "--slurm-partition", "nope")
    done = _ncbench(slurm, *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "ncbench: error: sbatch refused the submission" in done.stderr and "partition" in done.stderr.lower()
