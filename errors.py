"""Exception types: bad input to compute code, bad input at the command line, and tasks that do not apply."""


class ExplainInputError(ValueError):
    """Bad input to a compute function (wrong target length, unknown option, a layer that did not run, ...).

    The CLI turns it into one line and exit 2; any other exception is an internal error (exit 1).
    """


class UserError(ExplainInputError):
    """Bad input from the command line (a flag, a file, a folder): main.py prints it on one line and exits 2."""


class Skipped(Exception):
    """A task that cannot apply to this run (e.g. a confusion matrix for unlabelled images); main.py notes why."""
