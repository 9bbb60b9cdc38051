"""Shared fixtures: every test ends with no leaked kernel thread, LWP or fd.

The default scheduler (used by ``lwp.spawn`` outside ``lwp.run``) is shut down
after each test that started it, so each test starts from a clean process.
"""

import os
import threading
import time

import pytest

from lwp._core import scheduler as _scheduler


def _fds():
    return set(os.listdir("/proc/self/fd"))


def _tasks():
    return set(os.listdir("/proc/self/task"))


@pytest.fixture(autouse=True)
def no_leaks(request):
    threads_before = set(threading.enumerate())
    fds_before = _fds()
    tasks_before = _tasks()
    yield
    _scheduler._shutdown_default()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        extra_threads = set(threading.enumerate()) - threads_before
        extra_fds = _fds() - fds_before
        extra_tasks = _tasks() - tasks_before
        if not (extra_threads or extra_fds or extra_tasks):
            return
        time.sleep(0.01)
    if "allow_leaks" in request.keywords:
        return
    pytest.fail(f"leaked: threads={sorted(t.name for t in extra_threads)} "
                f"fds={sorted(extra_fds)} kernel tasks={len(extra_tasks)}")


