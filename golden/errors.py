"""Exception hierarchy for errors a user can cause (bad model, bad configuration, bad input).

The CLI prints these as one line ``error: <message>`` and exits with status 2; anything else is a
bug and keeps its traceback. Every subclass also derives from the builtin exception a Python
caller would expect (``ValueError``, ``TypeError``), so library users can catch either.
"""

from __future__ import annotations

__all__ = ["IlmpqError", "IlmpqValueError", "IlmpqTypeError"]


class IlmpqError(Exception):
    """Base class of all user-facing ilmpq errors."""


class IlmpqValueError(IlmpqError, ValueError):
    """A value is out of range or inconsistent; the message names it and what is allowed."""


class IlmpqTypeError(IlmpqError, TypeError):
    """An argument has the wrong type or dtype; the message names it and what is allowed."""
