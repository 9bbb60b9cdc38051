"""Count the machine instructions a Python script executes, with valgrind's callgrind.

Shared by the ``count_*.py`` scripts of this directory, which run a case at
two sizes and divide the difference by the extra iterations.  The script
imports lwp from the checkout this directory is in, not whichever is installed.
"""

import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def instructions(script, *args, env=None):
    """Instructions ``python script args...`` executes (user space, all threads)."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, script, *map(str, args)],
        env=dict(os.environ, PYTHONPATH=ROOT, **(env or {})),
        capture_output=True, text=True, check=True).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))


def extra(source, small, large, env=None):
    """Instructions the script ``source`` executes with arguments ``large``
    beyond those it executes with ``small`` (tuples): start-up and shutdown
    cancel out."""
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "case.py")
        with open(script, "w", encoding="utf-8") as f:
            f.write(source)
        return instructions(script, *large, env=env) - instructions(script, *small, env=env)
