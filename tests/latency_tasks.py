"""Tasks for the openmp worker of the latency tests (``-I`` option)."""

import time

from gwcelery import app


@app.task(shared=False, queue='openmp')
def hold(seconds):
    """Keep the openmp worker busy for ``seconds``; return when it began
    and ended (wall time)."""
    began = time.time()
    time.sleep(seconds)
    return [began, time.time()]
