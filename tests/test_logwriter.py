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
