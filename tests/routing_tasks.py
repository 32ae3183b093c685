"""Tasks on each queue, for the routing test's workers (``-I`` option)."""

from gwcelery import app


def _where(task):
    return {'hostname': task.request.hostname,
            'queue': task.request.delivery_info.get('routing_key')}


@app.task(bind=True, shared=False, queue='openmp')
def on_openmp(self):
    """Report which worker ran this openmp task."""
    return _where(self)


@app.task(bind=True, shared=False, queue='superevent')
def on_superevent(self):
    """Report which worker ran this superevent task."""
    return _where(self)


@app.task(bind=True, shared=False, queue='exttrig')
def on_exttrig(self):
    """Report which worker ran this exttrig task."""
    return _where(self)


@app.task(bind=True, shared=False)
def on_default(self):
    """Report which worker ran this task of the default queue."""
    return _where(self)
