"""The one exception type for bad user input (exit code 2, one line, no traceback)."""


class UserError(Exception):
    """Bad input from the user: main.py prints the message on one line and exits with 2."""


class Skipped(Exception):
    """A task that cannot apply to this run (e.g. a confusion matrix for unlabelled images); main.py notes why."""
