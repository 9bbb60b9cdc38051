"""The machine block the ``measure_*.py`` scripts of this directory save with
their results, so every table made from them can name what it was measured on."""

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's lwp, not whichever is installed

from lwp.bench.machine import cpu_model  # noqa: E402


def git_describe():
    """The checkout's ``git describe --always --dirty``, or "unknown"."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine():
    """Host, CPU, cores, Python, platform, lwp's commit, load average and date, now."""
    return {"host": platform.node(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform(),
            "lwp": git_describe(), "loadavg": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
