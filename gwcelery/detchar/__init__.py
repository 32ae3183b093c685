"""Detector characterisation as data: the bits of the low-latency state and
data-quality vectors, what they say about a candidate, and the frames that
carry them.

:mod:`~gwcelery.detchar.vectors` holds the pure decisions (bits to
per-detector states to labels, the HTML table, the time window);
:mod:`~gwcelery.detchar.frames` finds and reads the low-latency frames with
gwpy; :mod:`~gwcelery.detchar.mockframes` writes the simulated frames of
the local deployment. :mod:`gwcelery.tasks.detchar` is the only task module
that uses them; nothing here imports the application.
"""
