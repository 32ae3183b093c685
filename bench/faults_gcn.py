"""Fault injection on the GCN listener: hostile packets between notices.

Starts the stack of ``bench/faults_listener.py`` (persistent Redis, a
worker with the recording handlers of ``tests/listener_tasks.py``, Beat,
which starts :func:`gwcelery.tasks.gcn.listen`) and a VOEvent Transport server
(``tests/test_faults_gcn.py``) on the listener's GCN port. The server
sends ``--hostile`` hostile packets (truncated XML, binary, empty, 1 MB,
wrong namespace, billion laughs, external entity, unknown notice type, no
``Param``, no IVORN, XML that is not a VOEvent, a ``nak``) spread between
``--valid`` valid notices, waiting for the ack of each notice; a listener
that died and reconnected is sent the unacknowledged notice again.

It prints a row in the format of :mod:`bench.table`: notices sent,
handled (by the recording handler), lost, duplicated, the time from the
first packet to the last notice handled, and whether the listener kept
its one connection, its task id and a bounded peak memory.

    python bench/faults_gcn.py [--valid 100] [--hostile 10000]
"""

import os
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
sys.path.insert(0, ROOT)

from bench.faults_listener import Stack  # noqa: E402
from bench.table import command_line  # noqa: E402
from tests.listener_support import active_eternal  # noqa: E402
from tests.listener_tasks import GCN_KEY  # noqa: E402
from tests.test_faults_gcn import (  # noqa: E402
    HostileServer,
    ivorn_of,
    peak_memory_kib,
    plan,
)

LISTENER = 'gwcelery.tasks.gcn.listen'


def gcn_listener(timeout=120):
    """The running ``gcn.listen``: ``{'id', 'worker_pid', ...}``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        copies = active_eternal((LISTENER,))
        if len(copies) == 1:
            return copies[0]
        time.sleep(0.2)
    raise RuntimeError('gcn.listen did not start')


def handled(stack):
    client = stack.client()
    try:
        return [ivorn_of(payload)
                for payload in client.lrange(GCN_KEY, 0, -1)]
    finally:
        client.close()


def run_hostile(stack, valid, hostile):
    packets, notices = plan(valid, max(1, hostile // valid))
    sent_hostile = len(packets) - len(notices)
    expected = {ivorn_of(payload) for payload in notices}
    server = HostileServer(stack.settings['gcn_remote_port'], packets,
                           set(notices))
    first = gcn_listener()
    start = time.monotonic()
    server.start()
    try:
        server.finished.wait(600)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if expected <= set(handled(stack)):
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - start
        time.sleep(2)  # a duplicate would arrive now
        got = handled(stack)
        now = gcn_listener()
        memory = peak_memory_kib(now['worker_pid'])
    finally:
        server.stop()
    alive = (now['id'] == first['id'] and server.connections == 1)
    note = (f'{sent_hostile} hostile; listener '
            f'{"alive" if alive else "RESTARTED"} '
            f'({server.connections} connection(s)); peak RSS '
            f'{memory // 1024} MiB')
    return ('hostile gcn-voevent', 1, len(notices),
            len(expected & set(got)), len(expected - set(got)),
            len(got) - len(set(got)), elapsed, note)


def add_arguments(parser):
    """The bench's options."""
    parser.add_argument('--valid', type=int, default=100)
    parser.add_argument('--hostile', type=int, default=10000)


def run(args):
    """Run the bench; return the table's rows."""
    with tempfile.TemporaryDirectory(prefix='gwcelery-faults-') as workdir:
        stack = Stack(workdir)
        try:
            return [run_hostile(stack, args.valid, args.hostile)]
        finally:
            stack.stop()


def main():
    command_line(__doc__, add_arguments, run)
    print('(recovery s: from the first packet to the last notice handled)')


if __name__ == '__main__':
    main()
