"""Exceptions raised by the scheduler."""


class Cancelled(BaseException):
    """Raised inside a green thread at its next blocking point after ``cancel()``.

    It derives from :class:`BaseException`, like :class:`asyncio.CancelledError`,
    so that ``except Exception:`` in user code does not swallow it; ``finally``
    blocks and context managers run as the exception unwinds the thread.
    """


class InvalidStateError(RuntimeError):
    """``result()`` or ``exception()`` was called on a thread that has not finished."""
