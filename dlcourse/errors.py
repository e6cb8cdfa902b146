"""Errors caused by the user's input: printed as one paragraph, without a traceback."""


class UserError(Exception):
    """Base class: bad config, missing data, unusable checkpoint."""


class ConfigError(UserError):
    """A config key holds a value that cannot work."""


class DataError(UserError):
    """A dataset cannot be found or read."""


class CheckpointError(UserError):
    """A checkpoint cannot be loaded."""


class DivergenceError(UserError):
    """The loss became NaN or infinite."""
