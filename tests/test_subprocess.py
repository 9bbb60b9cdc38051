"""lwp.subprocess: waiting for children parks the green thread."""

import os
import sys
import time

import pytest

from helpers import N_TICKS, progress_while, run1, settle, start_ticker, wait_until
import lwp
import lwp.subprocess as subprocess

PY = sys.executable
READ_STDIN = [PY, "-c", "import sys; sys.stdin.buffer.read()"]  # exits once stdin closes
CAT = [PY, "-c", "import shutil, sys; shutil.copyfileobj(sys.stdin.buffer, sys.stdout.buffer)"]
ECHO = [PY, "-c", "import os\nwhile True:\n d = os.read(0, 65536)\n if not d: break\n os.write(1, d)"]


def test_names():
    import subprocess as std

    for name in std.__all__:
        assert hasattr(subprocess, name), name
    assert issubclass(subprocess.Popen, std.Popen)
    assert subprocess.TimeoutExpired is std.TimeoutExpired and subprocess.PIPE == std.PIPE


def test_wait_parks():
    def main():
        with subprocess.Popen(READ_STDIN, stdin=subprocess.PIPE) as p:
            code, seen = progress_while(p.wait, p.stdin.close)
            assert code == 0 and p.returncode == 0
            return seen

    assert run1(main) >= N_TICKS


def test_wait_without_pidfd_polls(monkeypatch):
    monkeypatch.setattr(subprocess, "_pidfd_open", None)

    def main():
        with subprocess.Popen(READ_STDIN, stdin=subprocess.PIPE) as p:
            code, seen = progress_while(p.wait, p.stdin.close)
            assert code == 0
            return seen

    assert run1(main) >= N_TICKS


def test_wait_timeout_then_kill():
    def main():
        with subprocess.Popen(READ_STDIN, stdin=subprocess.PIPE) as p:
            with pytest.raises(subprocess.TimeoutExpired):
                p.wait(0.05)
            assert p.poll() is None
            p.kill()
            assert p.wait(5) == -9

    run1(main)


def test_exit_codes_and_signals():
    def main():
        assert subprocess.call([PY, "-c", "raise SystemExit(3)"], timeout=30) == 3
        p = subprocess.Popen([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"])
        assert p.wait(30) == -15

    run1(main)


def test_communicate_parks_and_serves_all_pipes():
    script = ("import sys; data = sys.stdin.buffer.read(); "
              "sys.stdout.buffer.write(data); sys.stderr.buffer.write(data[:10])")
    payload = os.urandom(3 << 20)  # bigger than any pipe buffer, both ways

    def main():
        ticks, ticker = start_ticker()
        try:
            with subprocess.Popen([PY, "-c", script], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
                out, err = p.communicate(payload, timeout=30)
            assert out == payload and err == payload[:10] and p.returncode == 0
            return ticks[0]
        finally:
            ticker.cancel()

    assert run1(main) >= N_TICKS


def test_communicate_timeout_keeps_partial_output_and_can_resume():
    def main():
        go_r, go_w = os.pipe()  # the child waits on it between its two lines
        script = f"import os; print('early', flush=True); os.read({go_r}, 1); print('late')"
        try:
            with subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True,
                                  pass_fds=[go_r]) as p:
                deadline = time.monotonic() + 10
                while True:
                    assert time.monotonic() < deadline, "the child never spoke"
                    with pytest.raises(subprocess.TimeoutExpired) as info:
                        p.communicate(timeout=0.05)
                    if info.value.output:
                        assert info.value.output == b"early\n"
                        break
                os.write(go_w, b"!")
                out, err = p.communicate(timeout=30)
                assert out == "early\nlate\n" and err is None
        finally:
            os.close(go_r)
            os.close(go_w)

    run1(main)


def test_communicate_with_one_pipe_and_no_pipes():
    def main():
        with subprocess.Popen([PY, "-c", "print('x' * 100000)"], stdout=subprocess.PIPE) as p:
            out, err = p.communicate()
            assert out == b"x" * 100000 + b"\n" and err is None
        with subprocess.Popen([PY, "-c", "pass"]) as p:
            assert p.communicate() == (None, None)

    run1(main)


def test_pipe_objects_are_cooperative():
    def main():
        with subprocess.Popen(CAT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) as p:
            def reader():
                return [line for line in p.stdout]

            t = lwp.spawn(reader)
            for i in range(100):
                p.stdin.write(f"line {i}\n")
            p.stdin.flush()
            lines, seen = progress_while(lambda: t.join(30), p.stdin.close)
            assert lines == [f"line {i}\n" for i in range(100)]
            return seen

    assert run1(main) >= N_TICKS


def test_unbuffered_pipes():
    def main():
        with subprocess.Popen(ECHO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              bufsize=0) as p, lwp.Timeout(30):
            assert p.stdin.write(b"abc") == 3
            assert p.stdout.read(3) == b"abc"
            p.stdin.close()
            assert p.stdout.read() == b""

    run1(main)


@pytest.mark.parametrize("where", ["wait", "communicate", "run", "readline"])
def test_cancel_a_parked_call(where):
    def main():
        # communicate(b"x") closes stdin, which ends READ_STDIN: that child must sleep
        child = [PY, "-c", "import time; time.sleep(60)"] if where == "communicate" else READ_STDIN
        p = subprocess.Popen(child, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            call = {"wait": p.wait,
                    "communicate": lambda: p.communicate(b"x"),
                    "readline": p.stdout.readline,
                    "run": lambda: subprocess.run([PY, "-c", "import time; time.sleep(60)"])}
            t = lwp.spawn(call[where])
            settle()
            lwp.sleep(0.02)
            assert not t.done()
            t.cancel()
            with pytest.raises(lwp.Cancelled):
                t.join(10)
        finally:
            p.kill()
            p.wait(10)
            for f in (p.stdin, p.stdout):
                f.close()

    run1(main)  # conftest: no fd (pidfd, epoll, pipe) left behind


def test_run_and_friends():
    def main():
        r = subprocess.run([PY, "-c", "import sys; print(sys.stdin.read().upper())"],
                           input="abc", capture_output=True, text=True, timeout=30)
        assert (r.returncode, r.stdout, r.stderr) == (0, "ABC\n", "")
        with pytest.raises(subprocess.CalledProcessError) as info:
            subprocess.run([PY, "-c", "raise SystemExit(2)"], check=True, timeout=30)
        assert info.value.returncode == 2
        with pytest.raises(subprocess.TimeoutExpired):
            subprocess.run([PY, "-c", "import time; time.sleep(60)"], timeout=0.1)
        assert subprocess.check_call([PY, "-c", "pass"]) == 0
        with pytest.raises(subprocess.CalledProcessError):
            subprocess.check_call([PY, "-c", "raise SystemExit(1)"])
        assert subprocess.check_output([PY, "-c", "print('out')"]) == b"out\n"
        assert subprocess.check_output([PY, "-c", "import sys; print(repr(sys.stdin.read()))"],
                                       input=None, text=True) == "''\n"
        with pytest.raises(ValueError):
            subprocess.check_output(["true"], stdout=subprocess.PIPE)
        assert subprocess.getstatusoutput("echo hi; exit 4") == (4, "hi")
        assert subprocess.getoutput("echo there") == "there"

    run1(main)


def test_many_children_at_once():
    def main():
        def one(i):
            return subprocess.run([PY, "-c", f"print({i})"], capture_output=True,
                                  timeout=60).stdout

        ts = [lwp.spawn(one, i) for i in range(10)]
        return [t.join(60) for t in ts]

    assert lwp.run(main, lwps=2) == [b"%d\n" % i for i in range(10)]


def test_plain_os_thread_uses_the_standard_waits():
    with subprocess.Popen(CAT, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as p:
        out, _ = p.communicate(b"os thread", timeout=30)
        assert out == b"os thread"
    with subprocess.Popen(READ_STDIN, stdin=subprocess.PIPE) as p:
        with pytest.raises(subprocess.TimeoutExpired):
            p.wait(0.05)
        p.stdin.close()
        assert p.wait(30) == 0
    assert subprocess.run(["true"]).returncode == 0


def _held_spawn(release_fd):
    """A preexec_fn that holds the spawn (the parent waits for the child's exec) until
    ``release_fd`` is readable; it fails the spawn after 5 s, so the test cannot hang."""
    import select as std_select

    def hold():
        if not std_select.select([release_fd], [], [], 5)[0]:
            raise RuntimeError("the spawn was never released")

    return hold


def test_spawn_runs_off_the_lwp():
    """fork/exec waits on an activation: a ticker on the same LWP releases the spawn."""
    def main():
        r, w = os.pipe()
        try:
            ticks, ticker = start_ticker()
            release = lwp.spawn(lambda: (wait_until(lambda: ticks[0] >= N_TICKS),
                                         os.write(w, b"x")))
            settle()  # both started: bound to this LWP, out of the monitor's reach
            with subprocess.Popen([PY, "-c", "pass"], preexec_fn=_held_spawn(r)) as p:
                assert p.wait(30) == 0
            release.join(5)
            ticker.cancel()
            return ticks[0]
        finally:
            os.close(r)
            os.close(w)

    assert run1(main) >= N_TICKS


def test_spawn_errors_are_raised_in_the_caller():
    def main():
        with pytest.raises(FileNotFoundError):
            subprocess.Popen(["/no/such/program-lwp"])
        with pytest.raises(subprocess.SubprocessError, match="preexec_fn"):
            subprocess.Popen([PY, "-c", "pass"], preexec_fn=lambda: 1 / 0)
        with pytest.raises(NotADirectoryError):
            subprocess.Popen([PY, "-c", "pass"], cwd="/dev/null")
        r, w = os.pipe()
        try:  # pass_fds reaches the child although another kernel thread spawns it
            out = subprocess.run([PY, "-c", f"import os; os.write({w}, b'ok')"], pass_fds=(w,),
                                 timeout=30)
            assert out.returncode == 0 and os.read(r, 2) == b"ok"
        finally:
            os.close(r)
            os.close(w)

    run1(main)


def _no_child_left():
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return False


def test_cancel_during_the_spawn_kills_and_reaps_the_child():
    def main():
        r, w = os.pipe()
        try:
            t = lwp.spawn(subprocess.Popen, [PY, "-c", "import time; time.sleep(60)"],
                          stdout=subprocess.PIPE, preexec_fn=_held_spawn(r))
            settle()
            assert not t.done()
            t.cancel()
            with pytest.raises(lwp.Cancelled):
                t.join(5)
            os.write(w, b"x")  # the spawn completes for nobody: its child must not linger
            wait_until(_no_child_left, timeout=10)
        finally:
            os.close(r)
            os.close(w)

    run1(main)  # conftest: the stdout pipe of the abandoned Popen is closed
