"""What the views of a request work on, as :func:`.app.create_app` set it
up."""

from flask import current_app


def store():
    """The :class:`.store.Store` of the app serving this request."""
    return current_app.config['store']
