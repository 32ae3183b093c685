"""Jinja2 templates of the pipeline's text products (GCN Circular drafts,
HTML summaries), shipped inside the package."""

import jinja2

_environment = jinja2.Environment(
    loader=jinja2.PackageLoader('gwcelery', 'templates'),
    autoescape=jinja2.select_autoescape(['html']),
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined)


def render(name, **context):
    """Render the template file ``name`` of this directory."""
    return _environment.get_template(name).render(**context)
