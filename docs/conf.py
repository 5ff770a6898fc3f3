"""Sphinx configuration: MyST markdown pages, the furo theme; `make docs` builds it with warnings as errors.

Sphinx + MyST (as verl's docs are built) so that the docstrings' :mod: / :func: roles and our markdown render alike.
The reference pages under reference/generated/ are written by docs/gen_reference.py before each build.
"""

project = "stable-verl"
author = "stable-verl"
copyright = "the stable-verl authors, Apache-2.0"
extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "results/*/record"]  # a run record (pilot_page --export) is data, not pages
myst_heading_anchors = 4  # `page.md#a-heading` links resolve, and a wrong anchor is a warning
myst_enable_extensions = ["colon_fence", "deflist"]
# Heading levels are not checked: results/stress-pilot/results.md is a fragment that pilot_page.py writes at H2.
suppress_warnings = ["myst.header"]
html_theme = "furo"
html_title = "stable-verl"
html_static_path: list[str] = []
# `make docs` also runs the linkcheck builder: every local link, file and anchor is checked; this machine and CI
# reach no web server, so external URLs are not fetched.
linkcheck_ignore = [r"https?://.*"]
linkcheck_anchors = True
