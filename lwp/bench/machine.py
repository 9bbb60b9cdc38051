"""What a result was measured on: the machine block of the report.

Numbers from different machines, Pythons or library versions are not
comparable; this block is saved with every run so a reader can tell. Library
versions are read from installed package metadata without importing the
libraries (nothing is loaded into the harness process); lwp run from a source
tree without metadata is reported by its ``git describe``.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or the platform's guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def library_version(name: str) -> str:
    """The installed version of ``name``, or "not installed"."""
    if importlib.util.find_spec(name) is None:
        return "not installed"
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pass
    if name == "lwp":
        described = _git("describe", "--always", "--dirty", cwd=Path(__file__).resolve().parent)
        if described:
            return f"source tree {described}"
    return "unknown"


def nproc() -> int:
    """Cores this process may run on, as the ``nproc`` command counts them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages: how busy the machine was around a run."""
    try:
        return " ".join(f"{load:.2f}" for load in os.getloadavg())
    except OSError:
        return "unknown"


def describe(libraries: Iterable[str]) -> dict[str, object]:
    """The machine block: host, platform, CPU, cores, Python, library versions, load, date."""
    lwp_source = Path(__file__).resolve().parents[1]
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "nproc": nproc(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "libraries": {name: library_version(name) for name in sorted(set(libraries))},
        "lwp_commit": _git("rev-parse", "HEAD", cwd=lwp_source),
        "loadavg": loadavg(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
