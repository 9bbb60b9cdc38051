"""Exceptions raised by the scheduler."""


class Cancelled(BaseException):
    """Raised inside a green thread at its next blocking point after ``cancel()``.

    It derives from :class:`BaseException`, like :class:`asyncio.CancelledError`,
    so that ``except Exception:`` in user code does not swallow it; ``finally``
    blocks and context managers run as the exception unwinds the thread.
    """


class InvalidStateError(RuntimeError):
    """``result()`` or ``exception()`` was called on a thread that has not finished."""


def report_unraisable(exc, obj, message):
    """Hand ``exc`` to ``sys.unraisablehook``: for errors with no caller to raise to."""
    import sys
    import types

    sys.unraisablehook(types.SimpleNamespace(
        exc_type=type(exc), exc_value=exc, exc_traceback=exc.__traceback__,
        err_msg=message, object=obj))
