"""Sphinx configuration for lwp's documentation.

Build:   sphinx-build -W --keep-going -b html docs docs/_build/html
Doctest: sphinx-build -W --keep-going -b doctest docs docs/_build/doctest
Both run in tests/test_docs.py.

Nothing here needs the network (no intersphinx) or Graphviz: diagrams are
literal text blocks, plots are PNGs committed under docs/figures/ and made by
docs/figures/make_figures.py from docs/bench-results.json.
"""

import os
import sys

# Document the lwp of this source tree even when sphinx-build runs without an
# editable install.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import lwp  # noqa: E402

project = "lwp"
author = "the lwp developers"
copyright = "the lwp developers"  # noqa: A001 - Sphinx's name
release = lwp.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
]

exclude_patterns = ["_build", "figures/*.rst"]  # figure tables are included, not pages
templates_path = []
root_doc = "index"
default_role = "literal"  # `x` renders like ``x``
pygments_style = "sphinx"
smartquotes_action = "qe"  # curly quotes and ellipses, but keep "--lwps" as typed

# -- autodoc -----------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "none"          # signatures as written; lwp's API has no annotations
autodoc_default_options = {}
add_module_names = True
python_display_short_literal_types = True

# -- doctest -----------------------------------------------------------------
# Every ``.. doctest::`` block runs in this process.  Each block that starts
# green threads does so inside ``lwp.run``, which shuts its scheduler down.
doctest_global_setup = """
import lwp
"""
doctest_test_doctest_blocks = ""  # only explicit ``.. doctest::`` blocks run

# -- HTML --------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"lwp {release}"
html_static_path = ["_static"]
html_css_files = ["lwp.css"]
html_theme_options = {
    "description": "Green threads on a pool of kernel threads, scheduled M:N",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "230px",
    "show_relbars": True,
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
html_show_sourcelink = False
