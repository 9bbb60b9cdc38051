"""CPython's own checks of threading's primitives and of queue, run against lwp's.

The classes of CPython 3.11.7's ``Lib/test/lock_tests.py`` (LockTests,
RLockTests, EventTests, ConditionTests, SemaphoreTests, BoundedSemaphoreTests,
BarrierTests) and the test mixins of its ``Lib/test/test_queue.py``, vendored
as ``cpython_lock_tests.py`` and ``cpython_test_queue.py`` with a minimal
stand-in for ``test.support`` (``cpython_support.py``).  ``test.support`` and
``test.lock_tests`` are importable in this project's Python (3.11.7, also in a
fresh venv), but a pinned copy runs the same checks on every supported Python
(their helpers and contents change between releases) and where the ``test``
package is stripped (Debian's python3).

Each lock_tests class runs twice:

* ``OS``: as CPython runs it, the worker threads are plain OS threads
  (``_thread.start_new_thread``): lwp's primitives must work between OS
  threads with no scheduler at all;
* ``Green``: the worker threads are green threads of a 2-LWP scheduler while
  the test body stays in the main OS thread, so every check also runs
  between green threads on two LWPs and an OS thread.

The queue mixins run with OS threads (``queue = lwp.queue``), as CPython runs
them against its pure-Python ``queue``.

Excluded, and why:

* ``test_repr`` and ``test_locked_repr`` (every class): they match CPython's
  own repr formats (``<unlocked _thread.lock object at ...>``,
  ``<threading.Event at ...: unset>``...); lwp's reprs differ by design
  (``<lwp.Lock unlocked waiters=0>``).
* ``RLockTests.test_recursion_count``: ``RLock._recursion_count()`` is a
  private CPython helper that lwp does not provide.
* ``EventTests.test_at_fork_reinit``: it inspects ``Event._cond``, a private
  attribute of threading's implementation (lwp's Event has no Condition).
* test_queue's ``CSimpleQueueTest.test_reentrancy`` and ``test_is_default``:
  CPython runs them only against the C ``_queue.SimpleQueue``;
  ``test_is_default`` checks ``queue.SimpleQueue`` is the C class, and
  ``test_reentrancy`` relies on the C ``put()`` running no Python code, so
  that a garbage-collector ``__del__`` cannot run between evaluating its
  argument and appending it (the pure-Python queue fails it the same way).
* test_queue's C/pure-Python double runs (``PyQueueTest``/``CQueueTest``...):
  there is one lwp queue module, so each mixin runs once.

CPython's checks include a few duration bounds of their own (e.g. a 0.5 s
timeout must take 0.3 to 5 s): they are kept as CPython wrote them.
"""

import unittest

import cpython_lock_tests as lt
import cpython_test_queue as qt

import lwp


def _excluded(reason):
    @unittest.skip(reason)
    def test(self):
        pass  # pragma: no cover

    return test


REPR = "repr format is CPython's own; lwp's differs by design"


class GreenWorkers:
    """Mixin: the Bunch worker threads are green threads of a 2-LWP scheduler."""

    def setUp(self):
        self._sched = lwp.Scheduler(2, name="cpython-lock-tests")
        self._saved_start = lt.start_new_thread
        lt.start_new_thread = lambda fn, args: self._sched.spawn(fn, args)
        super().setUp()

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            lt.start_new_thread = self._saved_start
            self._sched.shutdown()


# -- Lock ---------------------------------------------------------------------------------------

class LockTestsOS(lt.LockTests):
    locktype = staticmethod(lwp.Lock)
    test_repr = _excluded(REPR)
    test_locked_repr = _excluded(REPR)


class LockTestsGreen(GreenWorkers, LockTestsOS):
    pass


# -- RLock --------------------------------------------------------------------------------------

class RLockTestsOS(lt.RLockTests):
    locktype = staticmethod(lwp.RLock)
    test_repr = _excluded(REPR)
    test_locked_repr = _excluded(REPR)
    test_recursion_count = _excluded("RLock._recursion_count() is a private CPython helper")


class RLockTestsGreen(GreenWorkers, RLockTestsOS):
    pass


# -- Event --------------------------------------------------------------------------------------

class EventTestsOS(lt.EventTests):
    eventtype = staticmethod(lwp.Event)
    test_repr = _excluded(REPR)
    test_at_fork_reinit = _excluded("inspects Event._cond, private to threading's Event")


class EventTestsGreen(GreenWorkers, EventTestsOS):
    pass


# -- Condition ----------------------------------------------------------------------------------

class ConditionTestsOS(lt.ConditionTests):
    condtype = staticmethod(lwp.Condition)


class ConditionTestsGreen(GreenWorkers, ConditionTestsOS):
    pass


class ConditionWithLockTestsOS(lt.ConditionTests):
    """The same checks with a plain lwp.Lock under the Condition."""

    @staticmethod
    def condtype(lock=None):
        return lwp.Condition(lock if lock is not None else lwp.Lock())

    test_acquire = _excluded("checks the default lock is reentrant (an RLock)")


class ConditionWithLockTestsGreen(GreenWorkers, ConditionWithLockTestsOS):
    pass


# -- Semaphore, BoundedSemaphore ----------------------------------------------------------------

class SemaphoreTestsOS(lt.SemaphoreTests):
    semtype = staticmethod(lwp.Semaphore)
    test_repr = _excluded(REPR)


class SemaphoreTestsGreen(GreenWorkers, SemaphoreTestsOS):
    pass


class BoundedSemaphoreTestsOS(lt.BoundedSemaphoreTests):
    semtype = staticmethod(lwp.BoundedSemaphore)
    test_repr = _excluded(REPR)


class BoundedSemaphoreTestsGreen(GreenWorkers, BoundedSemaphoreTestsOS):
    pass


# -- Barrier ------------------------------------------------------------------------------------

class BarrierTestsOS(lt.BarrierTests):
    barriertype = staticmethod(lwp.Barrier)
    test_repr = _excluded(REPR)


class BarrierTestsGreen(GreenWorkers, BarrierTestsOS):
    # BarrierTests.setUp/tearDown do not chain to BaseTestCase: chain here.
    def setUp(self):
        GreenWorkers.setUp(self)

    def tearDown(self):
        GreenWorkers.tearDown(self)


# -- queue (Lib/test/test_queue.py) ---------------------------------------------------------------

class QueueTest(qt.QueueTest, unittest.TestCase):
    queue = lwp.queue


class LifoQueueTest(qt.LifoQueueTest, unittest.TestCase):
    queue = lwp.queue


class PriorityQueueTest(qt.PriorityQueueTest, unittest.TestCase):
    queue = lwp.queue


class FailingQueueTest(qt.FailingQueueTest, unittest.TestCase):
    queue = lwp.queue


class SimpleQueueTest(qt.BaseSimpleQueueTest, unittest.TestCase):
    queue = lwp.queue

    def setUp(self):
        self.type2test = self.queue.SimpleQueue
        super().setUp()


def test_every_lock_tests_class_is_run():
    """A newer vendored copy with a new class must not be silently ignored."""
    bases = {cls for cls in vars(lt).values()
             if isinstance(cls, type) and issubclass(cls, lt.BaseTestCase)
             and cls.__name__.endswith("Tests") and not cls.__name__.startswith("Base")}
    covered = {base for cls in globals().values() if isinstance(cls, type)
               for base in cls.__mro__ if base in bases}
    assert covered == bases
