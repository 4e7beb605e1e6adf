"""Errors a user can fix. The CLI prints them as one line and exits non-zero, without a traceback."""


class LvdError(Exception):
    """Base class of every error caused by the user's input (files, options, arguments)."""


class DataError(LvdError):
    """A data file is missing, malformed or inconsistent; the message names file, dataset and event."""


class OptionsError(LvdError):
    """An options file or ``key=value`` override is unknown, mistyped or inconsistent."""


class CheckpointError(LvdError):
    """A checkpoint or run folder cannot be found or read."""


class TrainingError(LvdError):
    """Training cannot go on (e.g. the loss became NaN/inf); the message names the last good checkpoint."""
