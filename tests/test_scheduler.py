"""The scheduler: run, placement and stealing, idleness, shutdown, stats, dump."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from helpers import wait_until
import lwp
from lwp._core import scheduler as sched_mod


def test_run_returns_result_and_raises_exception():
    assert lwp.run(lambda a, b: a * b, 6, 7) == 42
    with pytest.raises(KeyError):
        lwp.run(lambda: {}["x"])


def test_run_rejects_bad_lwps_and_nesting():
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError):
            lwp.run(lambda: None, lwps=bad)

    def main():
        with pytest.raises(RuntimeError):
            lwp.run(lambda: None)

    lwp.run(main)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_run_uses_exactly_n_lwps(n):
    def main():
        return len(lwp.stats())

    assert lwp.run(main, lwps=n) == n


def test_lwps_default_from_environment(monkeypatch):
    monkeypatch.setenv("LWP_LWPS", "3")
    assert lwp.run(lambda: len(lwp.stats())) == 3
    monkeypatch.setenv("LWP_LWPS", "0")
    with pytest.raises(ValueError):
        lwp.run(lambda: None)


def test_run_cancels_leftover_threads_and_runs_their_finally():
    log = []

    def leftover():
        try:
            lwp.sleep(60)
        finally:
            log.append("cleaned")

    def main():
        for _ in range(3):
            lwp.spawn(leftover)
        lwp.sleep(0.01)
        return "main done"

    assert lwp.run(main) == "main done"
    assert log == ["cleaned"] * 3


def test_spawn_after_shutdown_is_refused():
    s = lwp.Scheduler(1)
    s.shutdown()
    with pytest.raises(RuntimeError):
        s.spawn(lambda: None)


def test_shutdown_from_own_thread_is_refused():
    s = lwp.Scheduler(1)
    try:
        t = s.spawn(s.shutdown)
        with pytest.raises(RuntimeError):
            t.join(5)
    finally:
        s.shutdown()


def test_shutdown_warns_about_threads_that_ignore_cancellation():
    s = lwp.Scheduler(1)
    stop = threading.Event()
    running = threading.Event()

    def stubborn():
        running.set()
        while not stop.is_set():
            try:
                lwp.sleep(0.01)
            except lwp.Cancelled:
                pass

    s.spawn(stubborn)
    assert running.wait(5)
    with pytest.warns(RuntimeWarning, match="ignored cancellation"):
        assert s.shutdown(timeout=0.2) is False
    stop.set()
    assert s._all_stopped.wait(5)


def test_idle_lwps_use_no_cpu():
    s = lwp.Scheduler(2)
    try:
        s.spawn(lambda: None).join(5)
        time.sleep(0.1)
        before = time.process_time()
        time.sleep(1.0)
        used = time.process_time() - before
    finally:
        s.shutdown()
    assert used < 0.05, f"idle scheduler used {used:.3f} s of CPU in 1 s"


def test_idle_lwp_steals_unstarted_threads():
    def main():
        def body():
            return lwp._core.park.current_lwp().index

        where = [lwp.spawn(body) for _ in range(200)]
        time.sleep(0.2)  # blocks LWP 0 in the kernel: only LWP 1 can start them
        indexes = [t.join(5) for t in where]
        return indexes, lwp.stats()

    indexes, stats = lwp.run(main, lwps=2)
    assert 1 in indexes
    assert stats[1]["steals"] > 0
    assert sum(s["threads_run"] for s in stats) == 201


def test_started_threads_never_move():
    def main():
        def body():
            first = lwp._core.park.current_lwp()
            for _ in range(50):
                lwp.sleep(0.0005 if _ % 2 else 0)
                assert lwp._core.park.current_lwp() is first
            return True

        return all(t.join(10) for t in [lwp.spawn(body) for _ in range(100)])

    assert lwp.run(main, lwps=4)


def test_local_wakeups_are_not_remote():
    def main():
        a, b = lwp.Event(), lwp.Event()

        def ping():
            for _ in range(500):
                a.wait()
                a.clear()
                b.set()

        t = lwp.spawn(ping)
        for _ in range(500):
            a.set()
            b.wait()
            b.clear()
        t.join(5)
        return lwp.stats()

    stats = lwp.run(main, lwps=1)
    assert stats[0]["remote_wakeups"] == 0
    assert stats[0]["switches"] >= 1000


def test_spawn_from_plain_thread_uses_default_scheduler():
    t = lwp.spawn(lambda: lwp.current())
    assert t.join(5) is t
    assert sched_mod._default is not None
    assert len(lwp.stats()) >= 1


def test_configure_default_scheduler():
    lwp.configure(lwps=3)
    try:
        assert lwp.spawn(lambda: len(lwp.stats())).join(5) == 3
        with pytest.raises(RuntimeError):
            lwp.configure(lwps=1)
    finally:
        sched_mod._default_config.clear()
    with pytest.raises(ValueError):
        lwp.configure(lwps=0)
    with pytest.raises(TypeError):
        lwp.configure(lwp_count=2)


def test_stats_and_dump_outside_any_scheduler():
    assert lwp.stats() == []
    with open(os.devnull, "w") as devnull:
        assert "no lwp scheduler" in lwp.dump(file=devnull)


def test_dump_shows_every_thread_with_its_stack(capsys):
    def parked_here():
        lwp.Event().wait()

    def main():
        threads = [lwp.spawn(parked_here, name=f"dumped-{i}") for i in range(3)]
        lwp.sleep(0.01)
        text = lwp.dump()
        for t in threads:
            t.cancel()
        return text

    text = lwp.run(main)
    assert text.count("dumped-") == 3
    assert "parked_here" in text and "main" in text
    assert "LWP-0" in text
    assert capsys.readouterr().err == text


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_seeded_mode_is_correct_and_replayable(seed):
    def main():
        order = []
        lock = lwp.Lock()

        def body(i):
            for _ in range(3):
                with lock:
                    order.append(i)
                lwp.sleep(0)

        for t in [lwp.spawn(body, i) for i in range(20)]:
            t.join(5)
        return order

    first = lwp.run(main, lwps=1, seed=seed)
    assert sorted(first) == sorted(list(range(20)) * 3)
    assert lwp.run(main, lwps=1, seed=seed) == first


_CTRL_C_SCRIPT = """\
import signal, sys, threading
import lwp
# As in an interactive shell, whatever launched the tests (a background job
# inherits SIGINT ignored, and lwp then rightly leaves it ignored).
signal.signal(signal.SIGINT, signal.default_int_handler)
def say(text):  # one write: main's thread and the main OS thread may both be printing
    sys.stdout.write(text + '\\n')
    sys.stdout.flush()
{prelude}
def main():
    try:
        say('ready')
        lwp.sleep(60)
    except BaseException as e:
        say(type(e).__name__)
        raise
    finally:
        say('finally ran')
try:
    lwp.run(main)
except KeyboardInterrupt:
    say('KeyboardInterrupt')
    sys.exit(3)
"""


def test_ctrl_c_interrupts_main_runs_finally_and_exits(tmp_path):
    script = tmp_path / "ctrlc.py"
    script.write_text(_CTRL_C_SCRIPT.format(prelude=""))
    assert _signal_when_ready(script, signal.SIGINT) == (
        3, ["KeyboardInterrupt", "finally", "ran", "KeyboardInterrupt"])


def test_keyboard_interrupt_from_a_programs_own_handler_reaches_main(tmp_path):
    """A handler of the program's that raises KeyboardInterrupt (here on SIGTERM, as
    ``python -m lwp.wsgi`` had) interrupts ``main`` as Ctrl-C does; it escaped lwp.run's
    wait and ``main`` got only the shutdown's Cancelled."""
    script = tmp_path / "sigterm.py"
    script.write_text(_CTRL_C_SCRIPT.format(prelude=(
        "def on_term(signum, frame):\n"
        "    raise KeyboardInterrupt\n"
        "signal.signal(signal.SIGTERM, on_term)\n")))
    assert _signal_when_ready(script, signal.SIGTERM) == (
        3, ["KeyboardInterrupt", "finally", "ran", "KeyboardInterrupt"])


def _signal_when_ready(script, signum):
    """Run ``script``, send it ``signum`` once it prints "ready"; (exit status, words
    it printed after)."""
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True) as p:
        try:
            assert p.stdout.readline().strip() == "ready"
            p.send_signal(signum)
            out, _ = p.communicate(timeout=20)
        finally:
            p.kill()  # a hung child must not outlive the test (tests that wait for children)
    return p.returncode, out.split()


def test_a_programs_handler_raising_while_the_main_thread_holds_an_lwp_lock(tmp_path):
    """A program's handler that raised KeyboardInterrupt (on SIGTERM) just after the
    main OS thread took an LWP's lock left that lock held: lwp.run hung in its
    shutdown (seen 1 run in 30 of the SIGTERM test above).  It must reach ``main``."""
    script = tmp_path / "sigterm_locked.py"
    script.write_text(_CTRL_C_SCRIPT.format(prelude=(
        "def on_term(signum, frame):\n"
        "    raise KeyboardInterrupt\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
        + _SIGNAL_UNDER_THE_LOCK.format(sig="SIGTERM"))))
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=20)
    assert p.returncode == 3, p.stderr
    out = p.stdout.split()
    assert "signal-under-the-lock" in out and out[-1] == "KeyboardInterrupt"
    assert ("ready" in out) == ("ran" in out)  # main, if it had started, ran its finally


_SIGNAL_UNDER_THE_LOCK = (
    "from lwp._core import thread\n"
    "real, fired = thread.lock_owner, []\n"
    "def lock_owner(t):\n"
    "    owner = real(t)\n"
    "    if not fired and threading.current_thread() is threading.main_thread():\n"
    "        fired.append(True)\n"
    "        say('signal-under-the-lock')\n"
    "        signal.raise_signal(signal.{sig})  # handled right here, lock held\n"
    "    return owner\n"
    "thread.lock_owner = lock_owner\n")


def test_ctrl_c_while_the_main_thread_holds_an_lwp_lock(tmp_path):
    """A SIGINT handled just after the main OS thread took an LWP's lock (joining
    ``main``) raised KeyboardInterrupt there, the lock stayed held and the process
    hung; it must reach ``main`` as any Ctrl-C does."""
    script = tmp_path / "ctrlc_locked.py"
    script.write_text(_CTRL_C_SCRIPT.format(prelude=_SIGNAL_UNDER_THE_LOCK.format(sig="SIGINT")))
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=20)
    assert p.returncode == 3, p.stderr
    out = p.stdout.split()
    assert "signal-under-the-lock" in out and out[-1] == "KeyboardInterrupt"
    assert ("ready" in out) == ("ran" in out)  # main, if it had started, ran its finally


def test_default_scheduler_shuts_down_at_exit(tmp_path):
    script = tmp_path / "atexit_.py"
    script.write_text(
        "import lwp\n"
        "def forever():\n"
        "    try:\n"
        "        lwp.sleep(60)\n"
        "    finally:\n"
        "        print('cancelled at exit', flush=True)\n"
        "lwp.spawn(forever)\n"
        "lwp.spawn(lambda: None).join()\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cancelled at exit"
    assert out.stderr == ""


def test_run_holds_the_signal_handlers_while_it_runs_and_gives_them_back():
    """While lwp.run runs, every Python-level handler is its note-taker (so none
    can raise inside lwp with a lock held); the real one is called at a safe
    point, and each is given back afterwards."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # however the tests were launched
    calls = []

    def mine(signum, frame):
        calls.append(signum)

    def main():
        held = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGINT)
        os.kill(os.getpid(), signal.SIGUSR1)  # to the process: its main thread takes it
        wait_until(lambda: calls)
        return held

    signal.signal(signal.SIGUSR1, mine)
    try:
        held = lwp.run(main)
        assert mine not in held and signal.default_int_handler not in held
        assert calls == [signal.SIGUSR1]
        assert signal.getsignal(signal.SIGUSR1) is mine
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
