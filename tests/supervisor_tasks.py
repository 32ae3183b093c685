"""A long task, for the test that a killed worker's busy pool process
dies with it (``--include tests.supervisor_tasks``)."""

import time

from gwcelery import app


@app.task(shared=False)
def sleep_for(seconds):
    """Hold a pool process for `seconds`."""
    time.sleep(seconds)
