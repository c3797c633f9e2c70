"""The SLURM executor: a sweep's missing runs submitted through submitit as one job array.

Each array task trains one run with the ordinary sweep code (``runner.run_sweep`` on a list of
one), so everything a local run does holds on the cluster too: the result lands in the shared
results folder, the run is trained under its lock, and it writes a checkpoint after every epoch.
Before the time limit (or on preemption) SLURM sends submitit's signal (USR2): the task finishes
its current training step, writes a mid-epoch checkpoint (``ncbench.preemption``), and only then
hands over to submitit, which requeues it; the requeued task continues at that step. SIGTERM
(``scancel``, preemption on clusters that send it) saves the same checkpoint and ends the task
without a requeue.

Job resources come from :class:`SlurmOptions`: a TOML file (``--slurm-config``) overridden by
command-line flags. Needs the optional dependency ``submitit`` (``pip install 'ncbench[slurm]'``)
and ``sbatch`` on the PATH.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RunConfig
from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_EXTRA_DOC = "extra sbatch options as KEY=VALUE (e.g. account=abc, qos=high, constraint=a100)"


@dataclass
class SlurmOptions:
    """Resources of each array task (one run)."""

    partition: str | None = None
    time_min: int = 24 * 60  # wall-clock limit per task; longer runs are requeued and resume
    gpus_per_task: int = 1
    cpus_per_task: int | None = None
    mem: str | None = None  # e.g. "64G"
    array_parallelism: int = 64  # array tasks allowed to run at once
    max_requeues: int = 5  # requeues after hitting the time limit (preemptions are always requeued)
    job_name: str = "ncbench"
    logs: str | None = None  # submitit's folder (sbatch scripts, pickles, logs); default <results>/slurm
    setup: list[str] = field(default_factory=list)  # shell lines before the run (module load, venv …)
    extra: dict[str, str] = field(default_factory=dict)  # any further sbatch option

    @classmethod
    def from_sources(cls, config_file: str | None, overrides: dict[str, Any]) -> SlurmOptions:
        """Options from a TOML file (keys as the fields above), then the non-None ``overrides``."""
        values: dict[str, Any] = {}
        if config_file:
            path = Path(config_file)
            try:
                values = tomllib.loads(path.read_text())
            except FileNotFoundError:
                raise ConfigError(f"{path}: SLURM config file not found") from None
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path}: not a valid TOML file ({exc})") from None
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(values) - known)
            if unknown:
                raise ConfigError(f"{path}: unknown SLURM option(s) {', '.join(unknown)}; "
                                  f"known: {', '.join(sorted(known))}")
        for key, value in overrides.items():
            if value is None or value == [] or value == {}:
                continue
            if key in ("setup",):
                values[key] = [*values.get(key, []), *value]
            elif key == "extra":
                values[key] = {**values.get(key, {}), **value}
            else:
                values[key] = value
        where = f"{config_file} (with the --slurm-* flags)" if config_file else "--slurm-* options"
        try:
            opts = cls(**values)
            opts.check()
        except (TypeError, ConfigError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return opts

    def check(self) -> None:
        if not isinstance(self.time_min, int) or self.time_min < 1:
            raise ConfigError(f"SLURM time_min must be a positive number of minutes, got {self.time_min!r}")
        for name in ("gpus_per_task", "array_parallelism", "max_requeues"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"SLURM {name} must be a non-negative integer, got {value!r}")
        if not isinstance(self.setup, list) or not all(isinstance(x, str) for x in self.setup):
            raise ConfigError("SLURM setup must be a list of shell lines")
        if not isinstance(self.extra, dict):
            raise ConfigError("SLURM extra must be a table of sbatch options")

    def executor_parameters(self) -> dict[str, Any]:
        """The keyword arguments of ``submitit.SlurmExecutor.update_parameters``."""
        params: dict[str, Any] = {
            "job_name": self.job_name, "time": self.time_min, "array_parallelism": max(self.array_parallelism, 1),
            "nodes": 1, "ntasks_per_node": 1, "setup": list(self.setup),
            "additional_parameters": {k.replace("_", "-"): str(v) for k, v in self.extra.items()},
        }
        if self.gpus_per_task:
            params["gpus_per_task"] = self.gpus_per_task
        for name in ("partition", "cpus_per_task", "mem"):
            if getattr(self, name) is not None:
                params[name] = getattr(self, name)
        return params


@dataclass
class JobSettings:
    """The plain, picklable part of ``RunSettings`` a task needs."""

    results_dir: str
    data_root: str | None
    cache_dir: str
    device: str | None  # None: the task's own default (cuda when it has a GPU)
    threads: int | None = None  # torch CPU threads (None: torch's choice)
    precision: str | None = None  # numeric precision (``ncbench.precision``; None: the device's default)
    compile: bool = False  # torch.compile the backbones' kernels
    keep_networks: bool = False  # keep the selected networks (members of an ensemble such as sgraf)
    live_log: tuple[str, ...] = ()  # ``--log`` kinds (``ncbench.live_log``)
    log_dir: str | None = None


class SweepTask:
    """One array task: train ``cfg`` into the shared results folder. Signalled before its time
    limit or preempted, the task saves a checkpoint at its next step, then submitit calls
    :meth:`checkpoint`; returning this task again makes submitit requeue it, and the run resumes there."""

    def __init__(self, cfg: RunConfig, settings: JobSettings):
        self.cfg = cfg
        self.settings = settings

    def __call__(self) -> dict[str, Any]:
        from . import preemption
        from .errors import Preempted
        from .runner import (
            RunSettings,
            check_device,
            configure_torch,
            default_device,
            run_sweep,
        )

        s = self.settings
        configure_torch(s.threads)
        settings = RunSettings(results_dir=Path(s.results_dir), data_root=Path(s.data_root) if s.data_root else None,
                               cache_dir=Path(s.cache_dir), device=check_device(s.device or default_device()),
                               verbose=True, precision=s.precision, compile=s.compile, keep_networks=s.keep_networks,
                               log=lambda msg: print(msg, flush=True), live_log=tuple(s.live_log),
                               log_dir=Path(s.log_dir) if s.log_dir else None)
        requeue_signal = signal.Signals["SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")]
        requeue = signal.getsignal(requeue_signal)  # submitit's: checkpoint(), scontrol requeue, exit
        try:
            with preemption.handling(requeue_signal, signal.SIGTERM):
                report = run_sweep([self.cfg], settings)
        except Preempted as stop:
            print(f"ncbench: stopped by {signal.Signals(stop.signum).name}; kept {stop.saved or 'no checkpoint (none written yet)'}",
                  flush=True)
            if stop.signum != requeue_signal or not callable(requeue):
                sys.exit(128 + stop.signum)  # cancelled: the checkpoint waits for the next submission
            # handling() has put submitit's handlers back (its SIGTERM one ignores the requeue's SIGTERM)
            requeue(requeue_signal, None)
            raise
        return {"run": self.cfg.label, "ran": report.ran, "skipped": report.skipped, "failed": report.failed,
                "busy": report.busy}

    def checkpoint(self) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(SweepTask(self.cfg, self.settings))


def _submitit():
    try:
        import submitit
    except ImportError:
        raise ConfigError("the slurm executor needs submitit: pip install 'ncbench[slurm]' "
                          "(or pip install submitit)") from None
    return submitit


def submit(runs: list[RunConfig], settings: JobSettings, options: SlurmOptions) -> list[Any]:
    """Submit one array task per run; return submitit's jobs (in the order of ``runs``)."""
    submitit = _submitit()
    if shutil.which("sbatch") is None:
        raise ConfigError("sbatch not found on the PATH: the slurm executor runs on a SLURM login node "
                          "(use --executor local, or --shard with your own launcher)")
    folder = Path(options.logs or Path(settings.results_dir) / "slurm") / "%j"
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=options.max_requeues)
    executor.update_parameters(**options.executor_parameters())
    try:
        with executor.batch():
            jobs = [executor.submit(SweepTask(cfg, settings)) for cfg in runs]
    except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedSubmissionError, OSError) as exc:
        raise ConfigError(f"sbatch refused the submission: {str(exc).strip()}") from None
    return jobs


def wait(jobs: list[Any], poll_s: float = 5.0, log=print) -> list[str]:
    """Block until every job has ended; return one line per job that raised or was killed."""
    import time

    problems, pending = [], list(jobs)
    reported = 0
    while pending:
        still = []
        for job in pending:
            if job.done():
                exc = job.exception()
                if exc is not None:
                    problems.append(f"job {job.job_id}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}")
            else:
                still.append(job)
        pending = still
        finished = len(jobs) - len(pending)
        if finished != reported:
            log(f"slurm: {finished}/{len(jobs)} job(s) ended")
            reported = finished
        if pending:
            time.sleep(poll_s)
    return problems
