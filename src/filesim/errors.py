"""The errors a user can fix, and the exit codes of every task (README: "Exit codes")."""

EXIT_OK = 0
#: A check ran and failed (check-sync, wait-synced, status with a NAS not ready).
EXIT_FAILED = 1
#: The command line or the values are wrong.
EXIT_BAD_INPUT = 2
#: The machine is not ready: a missing tool, engine, folder or cluster.
EXIT_ENVIRONMENT = 3
#: A bug in filesim (one line; FILESIM_DEBUG=1 shows the traceback).
EXIT_INTERNAL = 70


class UserError(Exception):
    """Something the user can fix on the machine; ``exit_code`` is what the task exits with."""

    exit_code = EXIT_ENVIRONMENT


class BadInput(UserError):
    """A wrong argument or value: the message names it and what to write instead."""

    exit_code = EXIT_BAD_INPUT
