"""Hostile messages on the transports that ``bench/faults_listener.py``
and ``bench/faults_gcn.py`` leave out: XMPP LVAlert (a real prosody),
igwn-alert and GCN notices over Kafka (a real Tansu) and ``gwcelery
local``'s milestone reader (real Redis pub/sub).

Each listener is the production code in a thread (the milestone reader
polled every 0.5 s as ``gwcelery local`` polls it), Celery eager, with the
recording handler of ``tests/test_dead_letters.py`` and a dead-letter list
of its own. After a warm-up message, ``--hostile`` messages, drawn in turn
from the hostile set (:data:`HOSTILE_JSON`, :data:`HOSTILE_VOEVENT`), go
between ``--valid`` valid ones. A tombstone is an empty XMPP item or
pub/sub message. XMPP cannot carry non-UTF-8 bytes: one, sent as its code
points, counts as refused if prosody closes the sender's stream. The
table (:mod:`bench.table`) has one row per transport.

    python bench/faults_transports.py [--valid 50] [--hostile 1000]
"""

import asyncio
import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
sys.path.insert(0, ROOT)

import redis  # noqa: E402
from confluent_kafka import Producer  # noqa: E402

from bench.table import command_line  # noqa: E402
from gwcelery import app  # noqa: E402
from gwcelery.kafka import gcn_notices, igwn_alert  # noqa: E402
from gwcelery.tasks import gcn as gcn_tasks  # noqa: E402
from gwcelery.tasks import lvalert  # noqa: E402
from gwcelery.tools.milestones import MilestoneReporter  # noqa: E402
from gwcelery.util import dead_letters, lvalert_xmpp  # noqa: E402
from gwcelery.util import voevent_transport as vtp  # noqa: E402
from gwcelery.util.alert_stream import AlertStream  # noqa: E402
from gwcelery.util.dispatch import DispatchTable  # noqa: E402
from gwcelery.util.kafka_broker import KafkaBroker  # noqa: E402
from gwcelery.util.redis_server import RedisServer  # noqa: E402
from tests.fixtures.xmpp import PUBSUB_NS, XMPPServer  # noqa: E402
from tests.kafka_support import SESSION_TIMEOUT_MS  # noqa: E402
from tests.test_dead_letters import (  # noqa: E402
    DEEP_JSON,
    NOT_UTF8,
    RECEIVED,
    VOEVENT,
    record_message,
    run_in_thread,
    strict,
)
from tests.test_faults import GRACEDB, NODE, alert  # noqa: E402

#: Seconds to wait for a listener to be ready, and for the valid messages
#: after the last was sent.
PATIENCE = 60

HOSTILE_JSON = {'deep JSON': DEEP_JSON, 'tombstone': None,
                'not UTF-8': NOT_UTF8, 'JSON list': '[1, 2]',
                'truncated JSON': alert(0)[:40],
                'invalid JSON': "{'uid': 'G0'}"}

HOSTILE_VOEVENT = {
    'deep XML': b'<a>' * 100000 + b'</a>' * 100000, 'tombstone': None,
    'not UTF-8': NOT_UTF8, 'deep JSON': DEEP_JSON.encode(),
    'JSON list': b'[1, 2]', 'truncated VOEvent': VOEVENT[:len(VOEVENT) // 2],
    'bad notice type': VOEVENT.replace(b'value="115"', b'value="G"')}

NOTICE_TYPE = gcn_tasks.NoticeType(gcn_tasks.notice_type(vtp.parse(VOEVENT)))
IVORN = vtp.parse(VOEVENT).get('ivorn').encode()


def poll_until(condition, timeout, interval=0.05):
    """Poll `condition` until true or `timeout` s; return whether true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


class LogWatch(logging.Handler):
    """Keeps the log lines, INFO and up, but the many dead-letter lines."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines, self.errors = [], []

    def emit(self, record):
        if record.name != dead_letters.__name__ \
                or record.levelno != logging.WARNING:
            self.lines.append(record.getMessage())
            if record.levelno >= logging.ERROR:
                self.errors.append(self.lines[-1])

    def count(self, text):
        return sum(text in line for line in self.lines)


@contextlib.contextmanager
def patched(**settings):
    """The app's `settings` and the recording handler on :data:`NODE` and
    on :data:`NOTICE_TYPE`, restored afterwards."""
    old = {key: app.conf[key] for key in settings}
    tables = lvalert._handlers, gcn_tasks._handlers
    app.conf.update(settings)
    lvalert._handlers = DispatchTable()
    lvalert._handlers.register(record_message, NODE)
    gcn_tasks._handlers = DispatchTable(normalize=gcn_tasks.NoticeType)
    gcn_tasks._handlers.register(record_message, NOTICE_TYPE)
    try:
        yield
    finally:
        app.conf.update(old)
        lvalert._handlers, gcn_tasks._handlers = tables


class Listener:
    """A listener in a thread; subclasses start it and send messages."""

    hostile = HOSTILE_JSON
    refused_kinds = ()
    #: Log lines that each start of the listener's loop writes, and that
    #: a failure of its loop writes.
    restarts = failures = ()
    #: The app's settings of the listener (restored afterwards).
    settings = {}
    task = thread = None

    def ready(self, watch):
        return True

    def payload(self, value):
        """What the transport carries of a message of the hostile set."""
        return value

    def valid(self, number):
        return alert(number)

    def handled(self):
        """The numbers of the valid messages that the handler got."""
        return [int(item['uid'][1:]) for item in list(RECEIVED)]

    def start_thread(self, function, *args):
        self.task, self.thread = run_in_thread(function, *args)

    def verdict(self, watch):
        """Whether the listener kept its thread and its one loop."""
        if not self.thread.is_alive():
            return 'listener DIED'
        wrong = [f'{watch.count(text)}x "{text}"' for text in self.restarts
                 + self.failures if watch.count(text) != (
                     text in self.restarts)]
        return (f'listener RESTARTED: {", ".join(wrong)}' if wrong
                else 'listener alive, same loop')

    def stop(self):
        if self.thread is not None:
            self.task.abort()
            self.thread.join(30)


class Xmpp(Listener):
    """lvalert_xmpp.listen on a private prosody."""

    scenario = 'hostile xmpp'
    refused_kinds = ('not UTF-8',)
    restarts = ('LVAlert: logged in',)

    def __init__(self, workdir):
        self.server = XMPPServer(os.path.join(workdir, 'prosody'))
        self.settings = self.server.settings

    def ready(self, watch):
        """Subscribed: XMPP delivers only what is published afterwards."""
        return watch.count(f'LVAlert: subscribed to node {NODE}')

    def start(self):
        os.makedirs(self.server.data_dir)
        self.server.start()
        self.server.run_client(self._create_node)
        self.start_thread(lvalert_xmpp.listen, app.conf, [NODE], strict)

    async def _create_node(self, client):
        """Create :data:`NODE`, transient (see the module docstring)."""
        form = client.plugin['xep_0004'].make_form('submit')
        form.add_field('FORM_TYPE', ftype='hidden',
                       value='http://jabber.org/protocol/pubsub#node_config')
        form.add_field('pubsub#persist_items', ftype='boolean', value=False)
        await client.plugin['xep_0060'].create_node(
            self.server.pubsub_service, NODE, config=form)

    async def _publish(self, client, text, timeout=30):
        """Publish one item (text ``None``: an empty one)."""
        entry = ET.Element(f'{{{PUBSUB_NS}}}entry')
        entry.text = text
        await client.plugin['xep_0060'].publish(
            self.server.pubsub_service, NODE, payload=entry,
            timeout=timeout)

    def send(self, batches):
        """Publish each batch's hostile items at once, then its valid one;
        return when the first went."""
        started = []

        async def publish(client):
            started.append(time.monotonic())
            for *bad, good in batches:
                await asyncio.gather(*(self._publish(client, text)
                                       for text in bad))
                await self._publish(client, good)

        self.server.run_client(publish, timeout=3 * PATIENCE)
        return started[0]

    def refuse(self, kind):
        """Send one message of `kind` as its code points in a session of
        its own; return whether prosody closed the stream (its log)."""
        def closed():
            with open(self.server.log_path, errors='replace') as log:
                return log.read().count('closed: not-well-formed')

        text, before = HOSTILE_JSON[kind].decode('latin-1'), closed()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            self.server.run_client(
                lambda client: self._publish(client, text, timeout=2), 4)
        return closed() > before

    def stop(self):
        try:
            super().stop()
        finally:
            self.server.stop()


class KafkaListener(Listener):
    """``listen(task, conf, *arguments)`` reading :attr:`topic` on the
    bench's Kafka broker."""

    def __init__(self, broker, **settings):
        self.broker, self.settings = broker, settings
        self.restarts = (f'{self.name}: reading',)

    def start(self):
        self.start_thread(self.listen, app.conf, *self.arguments)

    def send(self, batches):
        producer = Producer({'bootstrap.servers':
                             self.broker.bootstrap_servers})
        started = time.monotonic()
        for value in (value for batch in batches for value in batch):
            producer.produce(self.topic, value, partition=0)
            producer.poll(0)
        if producer.flush(PATIENCE):
            raise RuntimeError(f'{self.topic}: messages not delivered')
        return started


class KafkaAlerts(KafkaListener):
    scenario = 'hostile kafka igwn-alert'
    name = 'igwn-alert'
    topic = igwn_alert.topic_of('gracedb-bench', NODE)
    listen = staticmethod(igwn_alert.listen)
    arguments = ([NODE], strict)
    texts = 0

    def __init__(self, broker):
        super().__init__(broker, igwn_alert_url=broker.url,
                         igwn_alert_group='gracedb-bench',
                         igwn_alert_consumer_group='bench-igwn-alert',
                         kafka_hop_auth=False)

    def payload(self, value):
        """Every other text in hop's form (igwn-alert's), else raw."""
        if not isinstance(value, str):
            return value
        self.texts += 1
        return igwn_alert.encode(value) if self.texts % 2 else value.encode()

    def valid(self, number):
        return igwn_alert.encode(alert(number))


class KafkaNotices(KafkaListener):
    scenario = 'hostile kafka gcn'
    name = 'GCN Kafka'
    topic = gcn_notices.topic_of(NOTICE_TYPE)
    listen = staticmethod(gcn_notices.listen)
    arguments = ([NOTICE_TYPE], gcn_tasks.dispatch_voevent)
    hostile = HOSTILE_VOEVENT

    def __init__(self, broker):
        super().__init__(broker, gcn_kafka_url=broker.url,
                         gcn_kafka_client_id=None,
                         gcn_kafka_consumer_group='bench-gcn')

    def valid(self, number):
        return VOEVENT.replace(IVORN, b'ivo://bench#%d' % number)

    def handled(self):
        return [int(re.search(rb'ivo://bench#(\d+)', payload).group(1))
                for payload in list(RECEIVED)]


class Milestones(Listener):
    """A MilestoneReporter polled as ``gwcelery local`` polls it, reading
    the alert stream that the local GraceDB server appends to."""

    scenario = 'hostile milestones'
    failures = ('cannot read the alert stream',)
    #: Seconds between two polls (``gwcelery local``'s supervisor tick).
    tick = 0.5

    def __init__(self, redis_url):
        self.url, self.lines = redis_url, []

    def start(self):
        prefix = app.conf['lvalert_redis_channel_prefix']
        self.client = redis.Redis.from_url(self.url)
        self.stream = AlertStream(self.client, prefix)
        self.reporter = MilestoneReporter(self.url, prefix,
                                          self.lines.append)
        self.start_thread(self._loop)

    def ready(self, watch):
        return True  # it reads the stream from where it was at the start

    def _loop(self, task):
        """``gwcelery local``'s main loop as far as milestones go: an
        exception would stop it (and this thread)."""
        while not task.aborted.wait(self.tick):
            self.reporter.poll()

    def payload(self, value):
        return b'' if value is None else value

    def send(self, batches):
        started = time.monotonic()
        for batch in batches:
            self.stream.append_many((NODE, message) for message in batch)
        return started

    def handled(self):
        return [int(match.group(1)) for match in
                (re.match(r'event G(\d+) uploaded', line)
                 for line in list(self.lines)) if match]

    def stop(self):
        super().stop()
        if self.thread is not None:
            self.reporter.close()
            self.client.close()


def plan(listener, hostile, valid):
    """Batches of messages: before each valid one (numbered from 1) its
    share of the hostile ones, drawn in turn from the hostile set (less
    the kinds the transport refuses)."""
    kinds = [kind for kind in listener.hostile
             if kind not in listener.refused_kinds]
    batches, drawn = [], 0
    for number in range(1, valid + 1):
        share = hostile * number // valid - drawn
        batches.append([listener.payload(listener.hostile[
            kinds[(drawn + i) % len(kinds)]]) for i in range(share)])
        batches[-1].append(listener.valid(number))
        drawn += share
    return batches


def measure(listener, redis_url, args):
    """Start the listener, warm it up, send the plan; return the row."""
    key, watch = f'bench:dead-letters:{listener.scenario}', LogWatch()
    level = logging.root.level
    logging.root.addHandler(watch)
    logging.root.setLevel(logging.INFO)
    RECEIVED.clear()
    try:
        with patched(dead_letter_key=key, **listener.settings):
            listener.start()
            if not (poll_until(lambda: listener.ready(watch), PATIENCE)
                    and listener.send([[listener.valid(0)]])
                    and poll_until(lambda: 0 in listener.handled(),
                                   PATIENCE)):
                raise RuntimeError('the warm-up message was not handled')
            return count(listener, redis_url, key, args, watch)
    finally:
        listener.stop()
        logging.root.removeHandler(watch)
        logging.root.setLevel(level)


def count(listener, redis_url, key, args, watch):
    """Send the hostile and valid messages; count what came of them."""
    refused = [kind for kind in listener.refused_kinds
               if listener.refuse(kind)]
    hostile = args.hostile - len(refused)
    expected = set(range(1, args.valid + 1))
    started = listener.send(plan(listener, hostile, args.valid))
    sending = time.monotonic() - started
    done = poll_until(lambda: expected <= set(listener.handled()), PATIENCE)
    recovery = time.monotonic() - started if done else float('nan')
    poll_until(lambda: dead_letters.count(redis_url, key) >= hostile, 10)
    numbers = [n for n in listener.handled() if n in expected]
    note = [f'{args.hostile} hostile',
            f'{dead_letters.count(redis_url, key)} dead letters',
            f'all sent in {sending:.1f} s']
    if refused:
        note.append(f'{len(refused)} ({", ".join(refused)}) refused by '
                    'the transport')
    if watch.errors:
        note.append(f'{len(watch.errors)} errors logged, first: '
                    f'{watch.errors[0][:100]}')
    note.append(listener.verdict(watch))
    return (listener.scenario, 1, args.valid, len(set(numbers)),
            len(expected - set(numbers)), len(numbers) - len(set(numbers)),
            recovery, '; '.join(note))


def run_all(workdir, redis_url, args):
    """Measure each transport in turn; a failure fills its row only."""
    have_prosody = all(shutil.which(program) for program in
                       ('prosody', 'prosodyctl', 'openssl'))
    broker = KafkaBroker(data_dir=os.path.join(workdir, 'kafka')).start()
    rows = []
    try:
        for listener in (Xmpp(workdir) if have_prosody else None,
                         KafkaAlerts(broker), KafkaNotices(broker),
                         Milestones(redis_url)):
            if listener is None:
                rows.append((Xmpp.scenario, 0, 0, 0, 0, 0, float('nan'),
                             'not run: prosody not installed'))
                continue
            try:
                rows.append(measure(listener, redis_url, args))
            except Exception as error:
                rows.append((listener.scenario, 0, 0, 0, 0, 0, float('nan'),
                             f'FAILED: {type(error).__name__}: {error}'))
    finally:
        broker.stop()
    return rows


def add_arguments(parser):
    """The bench's options."""
    parser.add_argument('--valid', type=int, default=50)
    parser.add_argument('--hostile', type=int, default=1000)


def run(args):
    """Run the four transports; return the table's rows."""
    with tempfile.TemporaryDirectory(prefix='gwcelery-transports-') as tmp:
        server = RedisServer(data_dir=os.path.join(tmp, 'redis')).start()
        try:
            with patched(broker_url=server.url, result_backend=server.url,
                         task_always_eager=True, task_eager_propagates=True,
                         gracedb_url=GRACEDB,
                         dead_letter_max_length=args.hostile + 100,
                         kafka_consumer_session_timeout=(
                             SESSION_TIMEOUT_MS / 1000),
                         listener_reconnect_delay_min=0.1,
                         listener_reconnect_delay_max=0.5):
                return run_all(tmp, server.url, args)
        finally:
            server.stop()


def main():
    command_line(__doc__, add_arguments, run)


if __name__ == '__main__':
    main()
