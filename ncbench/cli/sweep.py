"""Executing a planned sweep: here (one process), in local worker processes sharing it through the
run locks, or as a SLURM job array; shared by ``run``, ``detect`` and ``tune``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ..live_log import check_kinds
from .options import key_values, planned_runs


def execute(args, runs=None):
    """Plan (unless given ``runs``) and execute the sweep of ``run``/``detect``/``tune`` options;
    None after a dry run."""
    import signal

    from .. import preemption
    from ..results import existing_status, result_path

    check_kinds(args.log)  # a logger that is not installed stops the sweep before anything trains
    if runs is None:
        runs = planned_runs(args)
    results = Path(args.results)
    if args.dry_run:
        for cfg in runs:
            print(f"{existing_status(result_path(results, cfg), cfg.config_hash):8s} {cfg.label}")
        return None
    if args.executor == "slurm":
        return _slurm(args, runs)
    # SIGTERM (preemption) and Ctrl-C stop training at the next step with a checkpoint
    with preemption.handling(signal.SIGTERM, signal.SIGINT):
        if args.workers > 1 and args.worker_index is None:
            return _local_workers(args, runs)  # the workers set their own threads
        return _train_here(args, runs, results)


def _train_here(args, runs, results):
    """Train the sweep's runs in this process (one local worker)."""
    from ..ensemble import expand
    from ..runner import (
        RunSettings,
        check_device,
        configure_torch,
        default_device,
        run_sweep,
    )

    configure_torch(args.threads)
    ensembles = expand(args.backbones)[1]
    prefix = "" if args.worker_index is None else f"[worker {args.worker_index}] "
    bars = not args.no_progress and sys.stderr.isatty()
    settings = RunSettings(
        results_dir=results, data_root=Path(args.data_root) if args.data_root else None, cache_dir=Path(args.cache_dir),
        device=check_device(args.device or default_device()), progress=bars,
        verbose=args.verbose or not bars,  # without bars (a log file, a pipe), one line per epoch
        precision=args.precision, compile=args.compile, keep_networks=bool(ensembles),
        log=lambda msg: print(prefix + msg, flush=True), live_log=check_kinds(args.log),
        log_dir=Path(args.log_dir) if args.log_dir else None, accept_code_change=args.accept_code_change,
        # a busy machine is reported by this process, or for local workers by their parent (once)
        warn=None if args.worker_index is not None else lambda msg: print(f"ncbench: {msg}", file=sys.stderr, flush=True),
    )
    print(f"{prefix}ncbench: {len(runs)} run(s) on {settings.device}; results in {results}/", flush=True)
    t0 = time.perf_counter()
    report = run_sweep(runs, settings, ensembles)
    busy = f", {len(report.busy)} being trained by other workers" if report.busy else ""
    kept = f" ({len(report.code_accepted)} kept across a code change)" if report.code_accepted else ""
    print(f"\n{prefix}{report.ran} run(s) trained, {report.skipped} already done{kept}, {len(report.failed)} failed{busy} "
          f"in {time.perf_counter() - t0:.0f}s\n", flush=True)
    if report.code_retrained:
        print(f"{prefix}{len(report.code_retrained)} run(s) were trained again because their results were made by other "
              "code (set aside under superseded/); --accept-code-change keeps such results instead, recorded in each "
              "file\n", flush=True)
    return report


def worker_threads(workers: int, threads: int | None, gpus: int, cores: int) -> int | None:
    """Torch threads of each local worker: the user's ``--threads``; on CPU without it, the cores
    divided between the workers (torch's default in each would oversubscribe the machine); with GPUs
    (one each) torch's default (None)."""
    if threads is not None or gpus:
        return threads
    return max(1, cores // workers)


def worker_argv(argv: list[str], workers: int, threads: int | None, gpus: int, cores: int) -> list[str]:
    """A worker's command line: the user's, less ``--workers``, with ``--threads`` of
    ``worker_threads`` where the user gave none."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--workers":
            skip = True
        elif not a.startswith("--workers="):
            out.append(a)
    each = worker_threads(workers, threads, gpus, cores)
    if threads is None and each is not None:
        out += ["--threads", str(each)]
    return out


def _local_workers(args, runs):
    """The local executor: N copies of this command share the sweep through the per-run locks."""
    import signal
    import subprocess

    import torch

    from ..ensemble import expand
    from ..runner import collect, load_warning, usable_cores

    gpus = torch.cuda.device_count() if (args.device or "cuda").startswith("cuda") else 0
    argv = worker_argv(args.argv, args.workers, args.threads, gpus, usable_cores())
    each = worker_threads(args.workers, args.threads, gpus, usable_cores())
    print(f"ncbench: {len(runs)} run(s) shared by {args.workers} local workers"
          + (f" on {gpus} GPU(s)" if gpus else f", {each} CPU thread(s) each"), flush=True)
    busy = None if gpus else load_warning(args.workers * each)
    if busy:
        print(f"ncbench: {busy}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    procs = []
    for i in range(args.workers):
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        # own session: a Ctrl-C at the terminal reaches the workers once, forwarded below
        procs.append(subprocess.Popen([sys.executable, "-m", "ncbench", *argv, "--worker-index", str(i), "--no-progress"],
                                      env=env, start_new_session=True))
    try:
        codes = [p.wait() for p in procs]
    except BaseException as exc:  # stopped: each worker saves a checkpoint at its next step, then exits
        for p in procs:
            if p.poll() is None:
                p.send_signal(getattr(exc, "signum", signal.SIGTERM))
        try:
            for p in procs:
                p.wait(timeout=300)
        except BaseException:  # noqa: BLE001 - a second stop, or a worker that does not stop: at once
            for p in procs:
                p.kill()
            raise exc from None
        raise
    report = collect(runs, Path(args.results), expand(args.backbones)[1])
    print(f"\n{args.workers} workers finished in {time.perf_counter() - t0:.0f}s (exit codes {codes}): "
          f"{len(report.done)} of {len(runs)} run(s) done\n")
    return report


def _slurm(args, runs):
    """The SLURM executor: submit the runs that are neither done nor being trained, as one job array."""
    from ..ensemble import expand
    from ..locks import is_locked
    from ..results import claim_result, inspect_result, lock_path, result_path
    from ..runner import collect
    from ..slurm import JobSettings, SlurmOptions, submit, wait

    options = SlurmOptions.from_sources(args.slurm_config, {
        "partition": args.slurm_partition, "time_min": args.slurm_time, "gpus_per_task": args.slurm_gpus,
        "cpus_per_task": args.slurm_cpus, "mem": args.slurm_mem, "array_parallelism": args.slurm_parallel,
        "max_requeues": args.slurm_requeues, "logs": args.slurm_logs, "setup": args.slurm_setup,
        "extra": key_values(args.slurm_opt),
    })
    results, ensembles = Path(args.results).resolve(), expand(args.backbones)[1]
    todo, running = [], 0
    for cfg in runs:
        path = result_path(results, cfg)
        state = inspect_result(path, cfg.config_hash)[0]
        if state == "stale-code" and args.accept_code_change:  # kept here: the array's tasks would train it again
            with claim_result(results, path, cfg.config_hash, print, cfg.label, accept_code=True) as (state, _):
                pass
        if state in ("done", "accepted"):
            continue
        if is_locked(lock_path(path)):
            running += 1
        else:
            todo.append(cfg)
    print(f"ncbench: {len(runs)} run(s): {len(runs) - len(todo) - running} done, {running} being trained, "
          f"{len(todo)} to submit", flush=True)
    if todo:
        settings = JobSettings(results_dir=str(results), data_root=str(Path(args.data_root).resolve()) if args.data_root
                               else None, cache_dir=str(Path(args.cache_dir).resolve()), device=args.device,
                               threads=args.threads, precision=args.precision, compile=args.compile, keep_networks=bool(ensembles),
                               live_log=check_kinds(args.log),
                               log_dir=str(Path(args.log_dir).resolve()) if args.log_dir else None)
        jobs = submit(todo, settings, options)
        array = jobs[0].job_id.split("_")[0]
        print(f"submitted {len(jobs)} run(s) as SLURM job array {array} "
              f"({options.gpus_per_task} GPU(s), {options.time_min} min per task); "
              f"submitit's scripts and logs in {Path(options.logs or results / 'slurm')}/", flush=True)
        for job, cfg in zip(jobs, todo):
            print(f"  {job.job_id}  {cfg.label}")
    if not args.wait:
        print(f"Follow the sweep with `ncbench status` and the same options; results land in {results}/")
        return None
    problems = wait(jobs) if todo else []
    report = collect(runs, results, ensembles)
    report.failed += problems
    return report


def report_failures(report) -> int:
    for f in report.failed:
        print(f"failed: {f}", file=sys.stderr)
    return 1 if report.failed else 0
