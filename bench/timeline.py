"""Per-step timeline of one alert, from the Celery task events the
workers publish (``--events``) and the alerts the benchmark records.

Used by ``bench/alert_latency.py`` and ``bench/burst.py``: a
:class:`TaskEvents` collects every task's sent, started and finished
times from the broker; :func:`print_timeline` prints, for a window of
time, each task (when it was sent, how long it waited in its queue, how
long it ran) interleaved with the alerts of the candidate, so that the
gaps that are not work stand out.
"""

import itertools
import threading
import time

from celery import Celery

#: Long-lived tasks (listeners, the broker) that are not steps of an alert.
ETERNAL_TASKS = ('listen', 'broker', 'mock_', 'write_frames')


class TaskEvents:
    """Task events of every worker, read from the broker in a thread:
    ``tasks[uuid]`` holds the task's ``name``, ``queue`` and the wall
    times (``time.time()``) of its ``sent``, ``received``, ``started`` and
    ``succeeded`` (or ``failed``) events."""

    def __init__(self, broker_url):
        self.app = Celery(broker=broker_url, set_as_current=False)
        self.app.conf.update(accept_content=['json'],
                             event_serializer='json')
        self.lock = threading.Lock()
        self.tasks = {}
        self.ready = threading.Event()
        threading.Thread(target=self._capture, daemon=True).start()
        self.ready.wait(10)

    def _capture(self):
        with self.app.connection_for_read() as connection:
            receiver = self.app.events.Receiver(
                connection, handlers={'*': self._on_event})
            self.ready.set()
            try:
                receiver.capture(limit=None, timeout=None, wakeup=False)
            except Exception:  # noqa: BLE001 (the stack stopped)
                pass

    def _on_event(self, event):
        kind = event.get('type', '')
        if not kind.startswith('task-'):
            return
        with self.lock:
            task = self.tasks.setdefault(event['uuid'], {})
            task[kind[5:]] = event['timestamp']
            for key in ('name', 'queue'):
                if event.get(key):
                    task[key] = event[key]

    def between(self, start, end):
        """Tasks sent (or, when no sent event came, started) within
        ``[start, end]``, in order, without the eternal ones."""
        with self.lock:
            tasks = [dict(task) for task in self.tasks.values()]
        chosen = []
        for task in tasks:
            first = task.get('sent', task.get('received', task.get(
                'started')))
            name = task.get('name', '?')
            if first is None or not start <= first <= end:
                continue
            if any(part in name.rsplit('.', 1)[-1] for part in ETERNAL_TASKS):
                continue
            chosen.append(dict(task, first=first))
        return sorted(chosen, key=lambda task: task['first'])


def _short(name):
    return name.replace('gwcelery.tasks.', '')


def timeline_rows(tasks, marks, start):
    """The rows of a timeline: ``(time from start, text)``, sorted.

    ``tasks`` come from :meth:`TaskEvents.between`; ``marks`` are
    ``(wall time, text)`` of things that are not tasks (alerts, the
    VOEvent at the client)."""
    rows = [(t - start, text) for t, text in marks]
    for task in tasks:
        finished = task.get('succeeded', task.get('failed'))
        began = task.get('started')
        wait = (f'{began - task["first"]:6.3f}' if began is not None
                else '     -')
        run = (f'{finished - began:6.3f}' if None not in (began, finished)
               else '     -')
        end = f'{finished - start:7.3f}' if finished is not None else '      -'
        rows.append((task['first'] - start,
                     f'task  wait {wait} run {run} end {end}  '
                     f'{_short(task.get("name", "?"))} '
                     f'[{task.get("queue") or "?"}]'))
    return sorted(rows, key=lambda row: row[0])


def print_timeline(title, tasks, marks, start):
    """Print :func:`timeline_rows` under `title`, then the largest gaps
    between consecutive steps (the waits to look at first)."""
    rows = timeline_rows(tasks, marks, start)
    print(title)
    for offset, text in rows:
        print(f'  {offset:8.3f}  {text}')
    gaps = sorted(((later[0] - earlier[0], earlier[1], later[1])
                   for earlier, later in itertools.pairwise(rows)),
                  reverse=True)[:5]
    print('  largest gaps between steps (s):')
    for gap, earlier, later in gaps:
        print(f'    {gap:6.3f}  after: {earlier[:70]}')
        print(f'            before: {later[:70]}')


def now():
    """Wall time, comparable with the task events' timestamps."""
    return time.time()
