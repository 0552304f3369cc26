"""Errors that mean "the user asked for something we cannot do".

The CLI turns each into one line on stderr and exit code 2; library users catch them as
ValueError.
"""


class UsageError(ValueError):
  """Bad input from the user: the message names the problem and the fix."""


class ConfigError(UsageError):
  """A config field has a wrong name, type or value."""


class WorkdirError(UsageError):
  """A workdir cannot be used: unwritable, foreign, or holding a different run."""


class CheckpointError(UsageError):
  """A checkpoint cannot be restored; it is left untouched."""
