"""Handler registration: a table from a key (a GCN notice type, an LVAlert
node) to the Celery tasks that handle it.

The listeners (:mod:`gwcelery.tasks.gcn`, :mod:`gwcelery.tasks.lvalert`)
each own one table; their ``handler`` decorators register into it, and a
received packet is handed to all the tasks of its key that accept it at
once, as a Celery group.
"""

from celery import group

from .. import app


class DispatchTable:
    """Tasks by key.

    Parameters
    ----------
    normalize : callable
        Applied to every key given to :meth:`handler` and
        :meth:`dispatch` (e.g. conversion to an enumeration); it raises
        :exc:`ValueError` for an invalid key.
    """

    def __init__(self, normalize=str):
        self._normalize = normalize
        self._tasks = {}

    def handler(self, *keys, accepts=None, **task_kwargs):
        """Decorator: make the function a Celery task (``app.task`` with
        `task_kwargs`) and the handler of each of `keys`; see
        :meth:`register` for `accepts`."""
        keys = [self._normalize(key) for key in keys]
        if not keys:
            raise TypeError('a handler needs at least one key')

        def decorate(function):
            task = app.task(**task_kwargs)(function)
            self.register(task, *keys, accepts=accepts)
            return task
        return decorate

    def register(self, task, *keys, accepts=None):
        """Make an existing task a handler of each of `keys` (once).

        `accepts`, if given, is a predicate on the dispatched argument:
        the task is sent only the arguments it accepts, so that the
        packets it would ignore cost no message and no worker time.
        """
        for key in keys:
            entries = self._tasks.setdefault(self._normalize(key), {})
            entries.setdefault(task.name, (task, accepts))

    def keys(self):
        """The keys that have at least one handler."""
        return list(self._tasks)

    def tasks(self, key):
        """The handler tasks of `key` (a new list)."""
        return [task for task, _ in
                self._tasks.get(self._normalize(key), {}).values()]

    def accepting(self, key, argument):
        """The handler tasks of `key` that accept `argument`."""
        return [task for task, accepts in
                self._tasks.get(self._normalize(key), {}).values()
                if accepts is None or accepts(argument)]

    def dispatch(self, key, argument):
        """Send `argument` to every handler of `key` that accepts it, as a
        group; return the group's result, or ``None`` if there is none."""
        tasks = self.accepting(key, argument)
        if not tasks:
            return None
        return group(task.s(argument) for task in tasks).apply_async()
