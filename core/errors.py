"""Errors a user or operator can act on; the CLI prints them without a traceback."""


class PuyiError(Exception):
    """An expected failure with a message meant for people."""


class DatabaseUnavailable(PuyiError):
    pass


class UnknownUser(PuyiError):
    pass


class BadQuestion(PuyiError):
    pass
