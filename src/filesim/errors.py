"""The base of every error a user can fix; tasks print it as one line per problem."""


class UserError(Exception):
    """Something the user can fix; ``exit_code`` is what the task exits with."""

    exit_code = 1
