"""Errors the core raises that say something about retrying.

``PermanentError`` marks a failure that no retry can fix (a bad label in the data, a model
that cannot be saved safely, a spec the data does not fit): the Airflow layer maps it to
``AirflowFailException`` so the task fails at once instead of burning its retries.
"""

from __future__ import annotations


class PermanentError(RuntimeError):
    """A failure that the same input will hit again on every retry; the message says what
    to change (the data, the spec or the code)."""


class LabelError(PermanentError, ValueError):
    """Target values the task cannot use (0.9 as a class, an unseen class, inf as a target)."""


class UntrustedModelError(PermanentError):
    """A fitted model holds types the factory will not trust when it is loaded again."""
