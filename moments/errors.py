"""The errors every stage raises for expected failures, and the exit code each maps to.

One exit-code policy for the whole ``moments`` command:

* ``0``: the work was done;
* ``1``: the work failed (a store unreachable, a source down, a crawl unhealthy);
* ``2``: bad usage or bad input (an unknown option, a malformed config, a missing
  file, a stale ``--if-version``).

A stage raises one of these with a one-line message; :mod:`moments.cli` prints it as
``moments COMMAND: error: MESSAGE`` and exits with :attr:`MomentsError.exit_code`.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class MomentsError(Exception):
    """An expected failure with a one-line message and an exit code."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class WorkFailed(MomentsError):
    """The work could not be done (exit 1)."""

    exit_code = EXIT_FAILED


class UsageError(MomentsError):
    """Bad usage or bad input (exit 2)."""

    exit_code = EXIT_USAGE


class ConflictError(UsageError):
    """A compare-and-set lost: the record changed since it was read (exit 2).

    Attributes:
        record_id: The record that changed.
        expected: The version the writer had read.
        actual: The version now stored (``None`` when the record is gone).
        changed_by: Who made the change the writer did not see, when known.
        changed_at: When, when known.
    """

    def __init__(
        self,
        record_id: str,
        expected: int | None,
        actual: int | None,
        *,
        changed_by: str | None = None,
        changed_at: str | None = None,
    ) -> None:
        self.record_id = record_id
        self.expected = expected
        self.actual = actual
        self.changed_by = changed_by
        self.changed_at = changed_at
        who = f" by {changed_by}" if changed_by else ""
        when = f" at {changed_at}" if changed_at else ""
        if actual is None:
            message = f"{record_id} does not exist"
        else:
            message = f"{record_id} changed{who}{when}: version is {actual}, not {expected}; reload and retry"
        super().__init__(message)
