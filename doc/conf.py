"""Sphinx configuration for the GWCelery documentation."""

import gwcelery

project = 'GWCelery'
author = 'The GWCelery developers'
copyright = '2026, ' + author
release = gwcelery.__version__
version = release

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
    'sphinx.ext.viewcode',
    'celery.contrib.sphinx',
]
autodoc_member_order = 'bysource'
# celery.contrib.sphinx documents tasks through the legacy autodoc classes.
autodoc_use_legacy_class_based = True
exclude_patterns = ['_build']
html_theme = 'alabaster'
nitpicky = False
