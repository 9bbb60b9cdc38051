"""The documentation builds without a warning, its examples run, and the
reference covers every public name.

``sphinx-build -W --keep-going`` turns every warning into a failure, which
also catches broken internal links (``:doc:``, ``:ref:``, ``toctree``
entries, ``literalinclude`` of a missing file): the link check of this
project.  ``-b linkcheck`` is not run, because it would fetch external URLs.

Sphinx is not a test dependency (``pip install '.[docs]'`` brings it); where
it is missing these tests are skipped, saying so.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lwp

DOCS = Path(__file__).resolve().parent.parent / "docs"

needs_sphinx = pytest.mark.skipif(
    importlib.util.find_spec("sphinx") is None,
    reason="sphinx is not installed (pip install '.[docs]'); the docs were not built",
)
needs_docs = pytest.mark.skipif(not (DOCS / "conf.py").exists(), reason=f"no {DOCS}/conf.py")


def _sphinx(builder, out):
    """Run sphinx-build with warnings as errors; fail with its output if it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder,
         "-d", str(out / ".doctrees"), str(DOCS), str(out)],
        capture_output=True, text=True, timeout=50,
    )
    assert proc.returncode == 0, (
        f"sphinx-build -b {builder} failed (exit {proc.returncode}):\n"
        f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def _is_module(name):
    """True if ``name`` is an importable module (``lwp.channel``), not a class (``lwp.Scheduler``)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs-html")
    _sphinx("html", out)
    return out


@needs_sphinx
@needs_docs
def test_html_builds_without_warnings(html):
    assert (html / "index.html").exists()
    assert (html / "reference" / "core.html").exists()


@needs_sphinx
@needs_docs
def test_doctest_examples_run(tmp_path):
    _sphinx("doctest", tmp_path)
    summary = (tmp_path / "output.txt").read_text()
    ran = re.search(r"^\s*(\d+) tests?\s*$", summary, re.M)
    assert ran and int(ran.group(1)) > 0, summary
    assert re.search(r"^\s*0 failures in tests\s*$", summary, re.M), summary


@needs_sphinx
@needs_docs
def test_reference_documents_every_public_name(html):
    """Each name of ``lwp.__all__`` has an entry (an anchor) in the built reference.

    Accepted: ``lwp.NAME`` (the usual case), ``module-lwp.NAME`` (exported
    modules) or ``lwp.MODULE.NAME`` (a name documented where it is defined,
    as ``lwp.channel.select``, whose short name the module ``lwp.select`` takes).
    """
    anchors = set()
    for page in (html / "reference").glob("*.html"):
        anchors.update(re.findall(r'id="((?:module-)?lwp\.[\w.]+)"', page.read_text()))
    short = {a.rsplit(".", 1)[-1] for a in anchors
             if a.count(".") == 2 and a.startswith("lwp.") and _is_module(a.rsplit(".", 1)[0])}
    missing = [name for name in lwp.__all__
               if f"lwp.{name}" not in anchors and f"module-lwp.{name}" not in anchors
               and name not in short]
    assert not missing, f"not in the built reference (docs/reference/*.rst): {missing}"


@needs_docs
def test_performance_tables_match_the_committed_results(tmp_path):
    """The tables in docs/figures/ are what make_figures.py makes of bench-results.json.

    Needs neither Sphinx nor matplotlib: only the tables are regenerated.
    """
    script = DOCS / "figures" / "make_figures.py"
    proc = subprocess.run([sys.executable, str(script), "--tables-only", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr
    made = sorted(tmp_path.glob("*.rst"))
    assert made, "make_figures.py wrote no table"
    stale = [p.name for p in made
             if not (DOCS / "figures" / p.name).exists()
             or (DOCS / "figures" / p.name).read_text() != p.read_text()]
    assert not stale, f"rerun docs/figures/make_figures.py and commit: {stale} differ"


@needs_docs
def test_find_blocking_example_shows_all_three_instruments():
    """docs/examples/find_blocking.py, quoted by docs/howto/finding-blocking.rst, still does what it says."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWP_")}  # default placement
    proc = subprocess.run([sys.executable, str(DOCS / "examples" / "find_blocking.py")],
                          capture_output=True, text=True, timeout=50, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "upcall lwp_blocked" in out and "'legacy'" in out, out       # the upcall names the thread
    assert "<GreenThread 'legacy' running on LWP-0>" in out, out        # the dump shows it running
    assert "WARNING lwp.monitor: LWP-0 stalled" in out, out              # the monitor logged it
    assert "libc.usleep(700_000)" in out, out                            # with the stuck line
