"""Small general-purpose tasks used to compose canvases."""

from .. import app


@app.task(shared=False)
def identity(arg):
    """Return the argument unchanged: a placeholder link in a canvas."""
    return arg


@app.task(shared=False)
def get_first(args):
    """Return the first item of a sequence (e.g. a group's results)."""
    return args[0]


@app.task(shared=False)
def get_last(args):
    """Return the last item of a sequence (e.g. a group's results)."""
    return args[-1]
