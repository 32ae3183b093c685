"""External triggers (gamma-ray bursts, supernova neutrinos) as data: the
GCN notices that announce them and the arithmetic of their coincidence
with gravitational-wave candidates.

Pure modules, without tasks or I/O: :mod:`gwcelery.tasks.external_triggers`
records the notices that :mod:`~gwcelery.external.notices` parses, and
:mod:`gwcelery.tasks.raven` searches with the windows and FARs of
:mod:`~gwcelery.external.coincidence`. Nothing here imports the
application or a task module.
"""
