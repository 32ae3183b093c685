"""The private Kafka broker: produce, consume, restart; its storage."""

import os
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from xml.etree import ElementTree

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from gwcelery.util.file_s3 import FileS3Server, FileStore, S3Error, etag_of
from gwcelery.util.kafka_broker import KafkaBroker, listening
from gwcelery.util.supervisor import Supervisor

from .kafka_support import (  # noqa: F401
    SESSION_TIMEOUT_MS,
    kafka_broker,
    read_messages,
)
from .listener_support import wait_for


def produce(broker, topic, values):
    producer = Producer({'bootstrap.servers': broker.bootstrap_servers})
    for value in values:
        producer.produce(topic, value)
    assert producer.flush(20) == 0


def test_produce_consume(kafka_broker):  # noqa: F811
    topic = f't{uuid.uuid4().hex}'
    produce(kafka_broker, topic, [b'one', b'two'])
    values = sorted(m.value() for m in read_messages(
        kafka_broker.bootstrap_servers, [topic], 2))
    assert values == [b'one', b'two']


@pytest.mark.integration
def test_durable_restart_keeps_messages(tmp_path):
    with KafkaBroker(data_dir=str(tmp_path), durable=True) as broker:
        produce(broker, 'kept', [b'before'])
        port = broker.port
        broker.restart()
        assert broker.port == port
        produce(broker, 'kept', [b'after'])
        values = sorted(m.value() for m in read_messages(
            broker.bootstrap_servers, ['kept'], 2))
        assert values == [b'after', b'before']
        processes = (broker.process, broker.s3_process)
    assert all(process.poll() is not None for process in processes)



@pytest.fixture
def supervised_broker(tmp_path):
    """A durable broker whose two processes a supervisor restarts; both
    are stopped however the test ends."""
    broker = KafkaBroker(data_dir=str(tmp_path / 'kafka'), durable=True)
    reports = []
    supervisor = Supervisor(report=reports.append, restart_delay=0.1)
    try:
        for child in broker.children():
            supervisor.add(child, timeout=30)
        yield broker, supervisor, reports
    finally:
        supervisor.stop(timeout=5)
        broker.stop()


def create_topic(broker, topic):
    """Create `topic` with one partition: its messages keep their order."""
    admin = AdminClient({'bootstrap.servers': broker.bootstrap_servers})
    admin.create_topics([NewTopic(topic, 1)])[topic].result(20)


def group_consumer(broker, group):
    return Consumer({
        'bootstrap.servers': broker.bootstrap_servers, 'group.id': group,
        'auto.offset.reset': 'earliest', 'enable.auto.commit': False,
        'session.timeout.ms': SESSION_TIMEOUT_MS,
        'heartbeat.interval.ms': 500})


def consume_and_commit(broker, topic, group, count):
    """Read `count` messages of `topic` in `group`, commit, leave."""
    consumer = group_consumer(broker, group)
    values = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                values.append(message.value())
                last = message
        consumer.commit(message=last, asynchronous=False)
    finally:
        consumer.close()
    return values


def committed_offset(broker, topic, group):
    consumer = group_consumer(broker, group)
    try:
        [partition] = consumer.committed([TopicPartition(topic, 0)],
                                         timeout=20)
    finally:
        consumer.close()
    return partition.offset


@pytest.mark.integration
def test_supervised_broker_killed_keeps_messages_and_offsets(
        supervised_broker):
    """kill -9 of the broker: the supervisor restarts it on the same port,
    and its topic, messages and committed offset are all there."""
    broker, supervisor, reports = supervised_broker
    topic, group, count = 'kept', 'kept-group', 20
    values = [f'm{i:02d}'.encode() for i in range(count)]
    create_topic(broker, topic)
    produce(broker, topic, values)
    assert consume_and_commit(broker, topic, group, 5) == values[:5]
    assert committed_offset(broker, topic, group) == 5

    killed = broker.process.pid
    os.kill(killed, signal.SIGKILL)
    assert wait_for(lambda: supervisor.check() and False or (
        broker.broker.restarts == 1 and
        listening(broker.host, broker.port)), timeout=30), reports
    assert broker.process.pid != killed
    assert reports[0].startswith(f'kafka (pid {killed}) was killed by '
                                 'SIGKILL')

    assert sorted(m.value() for m in read_messages(
        broker.bootstrap_servers, [topic], count)) == values
    assert committed_offset(broker, topic, group) == 5
    assert consume_and_commit(broker, topic, group, count - 5) == \
        values[5:]


@pytest.mark.integration
def test_killed_storage_server_is_restarted_with_its_data(
        supervised_broker):
    broker, supervisor, reports = supervised_broker
    produce(broker, 'kept', [b'before'])
    killed = broker.s3_process.pid
    os.kill(killed, signal.SIGKILL)
    assert wait_for(lambda: supervisor.check() and False or (
        broker.storage.restarts == 1 and
        listening(broker.host, broker.s3_port)), timeout=30), reports
    produce(broker, 'kept', [b'after'])
    assert sorted(m.value() for m in read_messages(
        broker.bootstrap_servers, ['kept'], 2)) == [b'after', b'before']
    assert reports[0].startswith(f'kafka-storage (pid {killed}) was '
                                 'killed by SIGKILL')


def test_file_store_keeps_objects_and_lists_them(tmp_path):
    root = str(tmp_path / 'objects')
    store = FileStore(root)
    store.create_bucket('b')
    for key in ('a', 'a/b', 'a/c/d', 'x y/50%.json'):
        store.write('b', key, key.encode())
    store.delete('b', 'never-written')

    again = FileStore(root)  # as after a restart
    assert again.read('b', 'x y/50%.json')[0] == b'x y/50%.json'
    assert again.list('b') == (['a', 'a/b', 'a/c/d', 'x y/50%.json'], [])
    assert again.list('b', '', '/') == (['a'], ['a/', 'x y/'])
    assert again.list('b', 'a/', '/') == (['a/b'], ['a/c/'])
    assert again.list('b', 'a/c') == (['a/c/d'], [])
    assert again.list('b', 'nothing/here/') == ([], [])

    again.delete('b', 'a/c/d')
    assert not os.path.exists(os.path.join(root, 'b', 'a@', 'c@'))
    with pytest.raises(S3Error) as error:
        again.read('b', 'a/c/d')
    assert error.value.status == 404


def test_file_store_conditional_writes(tmp_path):
    store = FileStore(str(tmp_path))
    store.create_bucket('b')
    etag = store.write('b', 'k', b'one', if_none_match='*')
    assert etag == etag_of(b'one')
    for conditions in ({'if_none_match': '*'}, {'if_match': '"stale"'}):
        with pytest.raises(S3Error) as error:
            store.write('b', 'k', b'two', **conditions)
        assert error.value.status == 412
    store.write('b', 'k', b'two', if_match=etag)
    assert store.read('b', 'k')[0] == b'two'
    with pytest.raises(S3Error) as error:
        store.write('b', 'missing', b'x', if_match=etag)
    assert error.value.status == 404


@pytest.fixture
def s3_server(tmp_path):
    """The storage server in a thread of this process, for one test."""
    store = FileStore(str(tmp_path))
    store.create_bucket('b')
    server = FileS3Server(('127.0.0.1', 0), store)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                              daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_address[1]}/b'
    server.shutdown()
    server.server_close()
    thread.join(5)


def http(method, url, body=None, **headers):
    """(status, headers, body) of one request."""
    request = urllib.request.Request(url, data=body, method=method,
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def test_file_s3_server_speaks_enough_s3(s3_server):
    status, headers, _ = http('PUT', f'{s3_server}/t/0.batch', b'0123456789',
                              **{'If-None-Match': '*'})
    assert status == 200
    etag = headers['ETag']
    assert http('PUT', f'{s3_server}/t/0.batch', b'x',
                **{'If-None-Match': '*'})[0] == 412
    assert http('PUT', f'{s3_server}/t/0.batch', b'x',
                **{'If-Match': '"other"'})[0] == 412

    status, headers, body = http('GET', f'{s3_server}/t/0.batch')
    assert (status, body, headers['ETag']) == (200, b'0123456789', etag)
    assert headers['Last-Modified'].endswith(' GMT')
    status, headers, body = http('HEAD', f'{s3_server}/t/0.batch')
    assert (status, body, headers['Content-Length']) == (200, b'', '10')
    assert http('GET', f'{s3_server}/t/0.batch',
                **{'If-None-Match': etag})[0] == 304
    assert http('GET', f'{s3_server}/t/none')[0] == 404

    status, _, body = http('GET', f'{s3_server}?list-type=2&prefix=t/')
    ns = '{http://s3.amazonaws.com/doc/2006-03-01/}'
    listing = ElementTree.fromstring(body)
    assert [key.text for key in listing.iter(f'{ns}Key')] == ['t/0.batch']
    assert listing.find(f'{ns}Contents/{ns}Size').text == '10'

    status, _, body = http(
        'POST', f'{s3_server}?delete',
        b'<Delete><Object><Key>t/0.batch</Key></Object></Delete>')
    assert status == 200 and b'<Key>t/0.batch</Key>' in body
    assert http('GET', f'{s3_server}/t/0.batch')[0] == 404
