"""Sphinx configuration for optfree's documentation.

Build: pip install -e '.[docs]', then
  python -m sphinx -W --keep-going -b html docs docs/_build/html

The API listing, the notebook pages and the schedules gallery are generated
here at every build (see ``_generate``), from the modules' ``__all__``, the
repository's ``notebooks/`` and ``tests/reference/schedules.npz``, so none of
them can fall behind the code.
"""

import os
import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))
sys.path.insert(0, str(DOCS.parent))

import _generate  # pylint: disable=g-import-not-at-top,wrong-import-position
import optfree  # pylint: disable=g-import-not-at-top,wrong-import-position

_generate.api_pages(DOCS)
_generate.notebooks(DOCS)
_generate.schedule_gallery(DOCS)
_generate.quality_tables(DOCS)

project = "optfree"
author = "The optfree authors"
copyright = "2026, The optfree authors"  # pylint: disable=redefined-builtin
version = release = optfree.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    # MathJax served with the site, so that the math renders offline too.
    "sphinx-mathjax-offline",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb",
                 ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "_templates", "**/_*.md", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

# API pages: one per public name, generated from the docstrings.
autosummary_generate = True
autosummary_ignore_module_all = False
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
add_module_names = True
# The page TOC lists "count", not "ScheduleFreeState.count".
toc_object_entries_show_parents = "hide"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Notebooks are rendered from the outputs stored in them; the test suite
# executes them (tests/test_notebooks.py), the docs build does not.
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

html_theme = "sphinx_book_theme"
html_title = "optfree"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
    # One search box per page, the sidebar's: pydata-sphinx-theme 0.20 adds a
    # second one to a header bar of its own unless this is set.
    "navbar_persistent": [],
}
