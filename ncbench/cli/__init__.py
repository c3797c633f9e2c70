"""The ``ncbench`` command: run sweeps, score noise detection against human judgments, list plugins,
build leaderboards, compare two methods, evaluate released checkpoints, write run pages, submit results,
record accuracy goldens, inspect noise indices.

One module per command (``run``, ``detect``, ``tune``, ``status``, ``listing`` for ``list``,
``leaderboard``, ``compare``, ``evaluate``, ``report``, ``bench``, ``submit``, ``new_method``, ``golden``, ``data``,
``noise``),
each with ``NAMES`` (the command and its aliases), ``add_parser(sub)`` and ``command(args)``; shared
option types in ``options``, sweep execution in ``sweep``. No other ncbench module imports this
package.

Errors caused by input are printed as one line (``ncbench: error: ...``) with exit code 2: an
``NcbenchError``, a folder or output-file option that cannot be one (checked up front,
``options.check_paths``), and any ``OSError`` (permission denied, no space left, a file where a
folder should be), printed with the file it concerns. An interrupted sweep exits 130 and resumes when
the same command is run again. Anything else is a bug: one ``internal error`` line, exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from .. import __version__
from ..errors import NcbenchError, Preempted
from .options import check_paths, path_options
from . import (
    bench,
    compare,
    data,
    detect,
    evaluate,
    golden,
    leaderboard,
    listing,
    new_method,
    noise,
    report,
    run,
    status,
    submit,
    tune,
)

# in the order ``ncbench --help`` lists them
MODULES = (run, detect, tune, status, listing, leaderboard, compare, evaluate, report, bench, submit, new_method, golden,
           data, noise)
COMMANDS = {name: m.command for m in MODULES for name in m.NAMES}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ncbench", description="Noisy-correspondence benchmark harness.")
    p.add_argument("--version", action="version", version=f"ncbench {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for m in MODULES:
        m.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        check_paths(args)
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a reader that has gone away (``| head``) is noticed here, not at exit
        return code
    except BrokenPipeError:  # the output's reader closed it (``ncbench status | head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 0
    except NcbenchError as exc:
        print(f"ncbench: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused (permissions, no space, a file where a folder should be)
        print(f"ncbench: error: {os_error_message(exc, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nncbench: interrupted; finished results and the last checkpoint of the current run are kept, "
              "re-run the same command to resume", file=sys.stderr)
        return 130
    except Preempted as stop:
        import signal

        kept = f"the {stop.saved}" if stop.saved else "any checkpoint of the current run"
        print(f"\nncbench: stopped by {signal.Signals(stop.signum).name}; finished results and {kept} are kept, "
              "re-run the same command to resume", file=sys.stderr)
        return 128 + stop.signum
    except Exception as exc:  # noqa: BLE001 - a bug: say so in one line, traceback only on request
        if os.environ.get("NCBENCH_DEBUG"):
            traceback.print_exc()
        print(f"ncbench: internal error: {type(exc).__name__}: {exc} (set NCBENCH_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


def os_error_message(exc: OSError, args) -> str:
    """``<what went wrong>: <file>`` (and the second file of a rename); without a file (a full disk
    at a write), the folders and files the command works with."""
    what = exc.strerror or str(exc) or type(exc).__name__
    files = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    if files:
        return f"{what}: {' -> '.join(files)}"
    paths = ", ".join(f"{option} {path}" for option, path, _ in path_options(args))
    return f"{what} (ncbench was working in {paths})" if paths else what


if __name__ == "__main__":
    sys.exit(main())
