"""Command-line checking shared by the examples: argument types and the one-line error.

Each ``positive_int``, ``non_negative_float``, ... is an argparse ``type=``:
it returns the converted value or raises ``argparse.ArgumentTypeError``, so a
bad value is an argparse error (usage, ``error: argument --x: ...``, exit
status 2) before anything starts.  Floats must be finite: ``nan`` and ``inf``
are refused, since no count of milliseconds or seconds means either.

``check_open_files`` refuses, as an argparse error too, a run that would
open more sockets than the limit of open files (``ulimit -n``) allows: past
it, sockets fail one by one half-way through the run.

``complain`` is for the failures a user causes at run time (a server that
cannot be reached, a port in use): one line on stderr, as argparse writes its
errors, and exit status 1 instead of a traceback.  ``run`` calls an example's
``main`` and exits with its status, or with 130, quietly, on Ctrl-C.

The examples import it as ``_cli``: ``python examples/NAME.py`` puts
``examples/`` first on ``sys.path``.
"""

import argparse
import math
import os
import resource
import sys
from urllib.parse import urlsplit


def _number(kind, text, low, low_included):
    try:
        value = kind(text)
    except ValueError:
        what = "whole number" if kind is int else "number"
        raise argparse.ArgumentTypeError(f"not a {what}: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    if value < low or (value == low and not low_included):
        bound = f"{'>=' if low_included else '>'} {low}"
        raise argparse.ArgumentTypeError(f"must be {bound}, got {text!r}")
    return value


def positive_int(text):
    """An integer >= 1: a count of things that must exist (workers, LWPs, servers)."""
    return _number(int, text, 1, True)


def non_negative_int(text):
    """An integer >= 0."""
    return _number(int, text, 0, True)


def positive_float(text):
    """A finite number > 0 (a timeout: 0 would mean "do not wait at all")."""
    return _number(float, text, 0, False)


def non_negative_float(text):
    """A finite number >= 0 (a simulated cost or a duration; 0 is none)."""
    return _number(float, text, 0, True)


def positive_int_list(text):
    """Comma-separated integers >= 1, such as ``1,2,4,8``: a list of one at least."""
    try:
        return [positive_int(item.strip()) for item in text.split(",")]
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e} in {text!r}" if "," in text else str(e)) from None


def port(text):
    """A TCP port, 0 to 65535 (0: the system picks a free one)."""
    value = _number(int, text, 0, True)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {text!r}")
    return value


def directory(text):
    """An existing directory."""
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"not a directory: {text!r}")
    return text


def http_url(text):
    """An http:// or https:// URL with a host (and a valid port, if it has one)."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a port that is not one
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a valid URL: {text!r} ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"not an http:// or https:// URL: {text!r}")
    return text


def output_file(text):
    """A file name in an existing, writable directory (checked now, written later)."""
    folder = os.path.dirname(text) or "."
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"no such directory: {folder!r}")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"is a directory: {text!r}")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"directory not writable: {folder!r}")
    return text


def check_open_files(parser, sockets, why):
    """``parser.error`` unless ``sockets`` more file descriptors fit under the soft limit.

    ``sockets`` is what the run holds at its peak; 32 more are counted for
    Python, lwp and the standard streams.
    """
    need = sockets + 32
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit != resource.RLIM_INFINITY and need > limit:
        parser.error(f"{why} needs about {need} open files, more than the limit of {limit} "
                     f"(see ulimit -n)")


def complain(message):
    """Print ``PROG: message`` on stderr and return 1, the exit status: ``return complain(...)``."""
    print(f"{os.path.basename(sys.argv[0])}: {message}", file=sys.stderr, flush=True)
    return 1


def run(main):
    """``sys.exit(main())``; Ctrl-C (``lwp.run`` raises KeyboardInterrupt out of its
    ``main`` once that has unwound) ends the example with status 130, as a shell
    reports an interrupted command, instead of a traceback."""
    try:
        status = main()
    except KeyboardInterrupt:
        status = 130
    sys.exit(status)
