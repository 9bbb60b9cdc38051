# The few helpers of CPython's test.support (3.11.7) that the vendored
# cpython_lock_tests.py and cpython_test_queue.py use, rewritten minimally for
# lwp's test suite so that they run where the `test` package is stripped
# (Debian's python3 ships lock_tests.py only in libpython3.x-testsuite) and the
# same on every supported Python (test.support's API changes between
# releases).  Names and behaviour follow CPython's Lib/test/support.
#
# Copyright (c) 2001-2023 Python Software Foundation; All Rights Reserved.
# Licensed under the Python Software Foundation License Version 2
# (https://docs.python.org/3/license.html#psf-license).
#
# One deliberate difference: `time.sleep` here is lwp.sleep, which sleeps
# cooperatively in a green thread and is time.sleep in a plain OS thread, so
# the vendored tests can run their worker threads as green threads too.

import _thread
import builtins
import contextlib
import gc
import os
import time as _time
import types

import lwp

time = types.SimpleNamespace(monotonic=_time.monotonic, sleep=lwp.sleep)

try:
    ExceptionGroup = builtins.ExceptionGroup
except AttributeError:  # Python 3.10
    class ExceptionGroup(Exception):
        def __init__(self, message, exceptions):
            super().__init__(message, exceptions)
            self.exceptions = exceptions


def gc_collect():
    gc.collect()
    gc.collect()
    gc.collect()


class support:
    SHORT_TIMEOUT = 30.0
    LONG_TIMEOUT = 5 * 60.0
    has_fork_support = hasattr(os, "fork")
    gc_collect = staticmethod(gc_collect)

    @staticmethod
    def sleeping_retry(timeout, err_msg=None, /, *, init_delay=0.010, max_delay=1.0,
                       error=True):
        """Yield until ``timeout`` seconds pass, sleeping longer each time."""
        delay = init_delay
        deadline = _time.monotonic() + timeout
        while True:
            yield
            if _time.monotonic() >= deadline:
                if error:
                    raise AssertionError(f"timeout ({timeout:.1f} seconds)"
                                         + (f": {err_msg}" if err_msg else ""))
                break
            time.sleep(delay)
            delay = min(delay * 2, max_delay)

    @staticmethod
    def reap_children():
        pass


class threading_helper:
    @staticmethod
    def threading_setup():
        return (_thread._count(),)

    @staticmethod
    def threading_cleanup(*original_values):
        for _ in support.sleeping_retry(support.SHORT_TIMEOUT, error=False):
            if _thread._count() <= original_values[0]:
                break

    @staticmethod
    @contextlib.contextmanager
    def wait_threads_exit(timeout=None):
        if timeout is None:
            timeout = support.SHORT_TIMEOUT
        old = _thread._count()
        try:
            yield
        finally:
            for _ in support.sleeping_retry(timeout, "threads did not exit"):
                if _thread._count() <= old:
                    break

    @staticmethod
    def join_thread(thread, timeout=None):
        if timeout is None:
            timeout = support.SHORT_TIMEOUT
        thread.join(timeout)
        if thread.is_alive():
            raise AssertionError(f"failed to join the thread in {timeout:.1f} seconds")

    @staticmethod
    @contextlib.contextmanager
    def start_threads(threads, unlock=None):
        threads = list(threads)
        started = []
        try:
            for t in threads:
                t.start()
                started.append(t)
            yield
        finally:
            try:
                if unlock:
                    unlock()
            finally:
                for t in started:
                    t.join(support.SHORT_TIMEOUT)
                alive = [t for t in started if t.is_alive()]
                if alive:
                    raise AssertionError(f"Unable to join {len(alive)} threads")
