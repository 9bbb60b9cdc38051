"""lwp/_logwriter.py: log output written off the LWPs, in order, and never lost quietly."""

import io
import logging
import time

import lwp
from lwp._logwriter import LogStream, LogWriter


def test_entries_are_written_in_order():
    out = io.StringIO()

    def main():
        w = LogWriter("t", logging.getLogger("lwp.test"))
        for i in range(5):
            w.line(out, "line %d", (i,))
        w.close(5)

    lwp.run(main, lwps=1)
    assert out.getvalue() == "".join(f"line {i}\n" for i in range(5))


def test_text_written_after_close_is_not_lost():
    """wsgi.errors text an application thread writes after the server stopped was
    queued on an ended writer and never written."""
    out = io.StringIO()

    def main():
        w = LogWriter("t", logging.getLogger("lwp.test"))
        w.close(5)
        LogStream(w, out).write("after stop\n")

    lwp.run(main, lwps=1)
    assert out.getvalue() == "after stop\n"


def test_entries_waiting_when_run_ends_are_not_lost():
    """A server never stopped (lwp.run's main returned, or Ctrl-C): lwp.run cancels
    the writer, and what it had not written yet was lost."""
    a, b = SlowFile(), SlowFile()

    def main():
        w = LogWriter("t", logging.getLogger("lwp.test"))
        for i in range(4):  # four batches: a, b, a, b
            w.text(a if i % 2 == 0 else b, f"{i}\n")

    lwp.run(main, lwps=1)
    assert (a.getvalue(), b.getvalue()) == ("0\n2\n", "1\n3\n")


class SlowFile(io.StringIO):
    """A destination that takes its time: the writer is inside lwp.blocking when cancelled."""

    def write(self, text):
        time.sleep(0.05)
        return super().write(text)


def test_a_write_recalled_by_the_cancel_before_it_started_is_made_again(monkeypatch):
    """lwp.run's cancel could come while the writer's job still waited for an
    activation thread: the job was dropped unrun, and its entries with it."""
    import lwp._logwriter

    real, recalled = lwp._logwriter.blocking, []

    def first_recalled(fn, *args):
        if not recalled:
            recalled.append(fn)
            raise lwp.Cancelled  # as blocking() does when cancelled before the job ran
        return real(fn, *args)

    monkeypatch.setattr(lwp._logwriter, "blocking", first_recalled)
    out = io.StringIO()

    def main():
        w = LogWriter("t", logging.getLogger("lwp.test"))
        w.text(out, "0\n")
        w.text(out, "1\n")

    lwp.run(main, lwps=1)
    assert recalled and out.getvalue() == "0\n1\n"


def test_a_write_the_cancel_interrupted_ends_before_the_next_starts(monkeypatch):
    """The cancel wakes the writer while its write goes on in the activation
    thread: the writer went on to the next write (to the same file, out of order)
    and lwp.run could return before the first had ended."""
    import threading

    import lwp._logwriter

    interrupted = []

    def interrupt_first(fn, *args):
        if not interrupted:
            def slow_write():
                time.sleep(0.2)
                fn(*args)

            interrupted.append(threading.Thread(target=slow_write))
            interrupted[0].start()  # the write goes on in its kernel thread...
            lwp.sleep(60)           # ...while the writer waits, woken by lwp.run's cancel
        return fn(*args)

    monkeypatch.setattr(lwp._logwriter, "blocking", interrupt_first)
    a = SlowFile()

    def main():
        w = LogWriter("t", logging.getLogger("lwp.test"))
        w.text(a, "0\n")
        w.text(io.StringIO(), "other\n")  # a second batch: the writer moves on to it
        w.text(a, "1\n")

    lwp.run(main, lwps=1)
    assert a.getvalue() == "0\n1\n"
    interrupted[0].join(5)
