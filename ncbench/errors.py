"""Exceptions that carry a message meant for a person.

Everything raised on bad input (a missing file, a wrong shape, an unknown name) is an
:class:`NcbenchError`; the command line prints its message on one line and exits non-zero, without a
traceback. Any other exception is a bug in ncbench.
"""


class NcbenchError(Exception):
    """An error caused by input or configuration, explained by its message."""


class DataError(NcbenchError):
    """A data file is missing, truncated, misshapen or inconsistent with its siblings."""


class ConfigError(NcbenchError):
    """A run configuration or command-line value is invalid."""


class UnknownNameError(NcbenchError, KeyError):
    """A method, backbone or dataset name is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PluginError(NcbenchError):
    """A plugin could not be imported or registered."""


class ResultError(NcbenchError):
    """A result file is unreadable or does not follow the result schema."""


class TrainingError(NcbenchError):
    """Training diverged (e.g. the loss became NaN)."""


class Preempted(BaseException):
    """The process was asked to stop (SIGTERM, Ctrl-C, SLURM's pre-timeout signal; see
    ``ncbench.preemption``). Not an ``Exception``, so that nothing on the way up swallows it; the
    command line exits 128 + the signal number and keeps what the checkpoint holds."""

    def __init__(self, signum: int = 15, saved: str | None = None):
        super().__init__(signum, saved)
        self.signum = signum
        self.saved = saved  # what was saved on the way out (e.g. "checkpoint at step 5/12 of epoch 3")
