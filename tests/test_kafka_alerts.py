"""Public alerts over Kafka: records in the IGWN alert schema sent through
a real broker, read back by a separate consumer and validated."""

import io
import json

import fastavro
import jsonschema
import pytest
from astropy.io import fits

from gwcelery import app
from gwcelery.kafka import alerts as kafka_alerts
from gwcelery.tasks import gracedb, kafka

from .kafka_support import kafka_broker, read_messages  # noqa: F401

PREFERRED = {'graceid': 'G1', 'gpstime': 1400000000.123, 'far': 1e-12,
             'instruments': 'L1,H1', 'group': 'CBC', 'pipeline': 'gstlal',
             'search': 'AllSky'}
COINCIDENCE = {'gcn_notice_id': 123456, 'ivorn': 'ivo://nasa.gsfc.gcn/X',
               'observatory': 'Fermi', 'search': 'GRB',
               'time_difference': -1.5, 'time_coincidence_far': 1e-9,
               'time_sky_position_coincidence_far': None,
               'combined_skymap_filename': None}


def superevent(**event):
    return {'superevent_id': 'S240101a',
            'preferred_event_data': dict(PREFERRED, **event)}


def test_record_fields_and_retraction_nulls():
    record = kafka_alerts.build(
        superevent(), 'Initial', '2024-01-01T00:00:00Z',
        {'gracedb': 'https://x/view/'}, True, b'FITS',
        json.dumps({'HasNS': 0.5, 'HasRemnant': 0.1}),
        json.dumps({'BNS': 0.9, 'Terrestrial': 0.1}), COINCIDENCE)
    kafka_alerts.validate(record)
    assert record['alert_type'] == 'INITIAL'
    assert record['event']['time'] == '2024-05-17T16:53:02.123Z'
    assert record['event']['instruments'] == ['H1', 'L1']
    assert record['event']['classification']['BNS'] == 0.9
    assert record['external_coinc']['observatory'] == 'Fermi'
    assert kafka_alerts.json_record(record)['event']['skymap'] == 'RklUUw=='
    retraction = kafka_alerts.build(superevent(), 'Retraction',
                                    '2024-01-01T00:00:00Z', {}, True,
                                    b'FITS')
    kafka_alerts.validate(retraction)
    assert retraction['event'] is None
    assert retraction['external_coinc'] is None


def test_invalid_record_fails_loudly():
    record = kafka_alerts.build(superevent(far='tiny'), 'Preliminary',
                                '2024-01-01T00:00:00Z', {}, False)
    with pytest.raises(kafka_alerts.InvalidAlert):
        kafka_alerts.validate(record)


def test_significance_uses_trials_factor():
    thresholds = {'CBC': 1e-7}
    assert kafka_alerts.is_significant({'group': 'CBC', 'far': 1e-8},
                                       thresholds, {'CBC': 5})
    assert not kafka_alerts.is_significant({'group': 'CBC', 'far': 1e-8},
                                           thresholds, {'CBC': 50})


@pytest.fixture
def eager(monkeypatch, broker_app, gracedb):  # noqa: F811
    monkeypatch.setitem(app.conf, 'task_always_eager', True)
    monkeypatch.setitem(app.conf, 'task_eager_propagates', True)
    return gracedb


def fits_bytes():
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU()]).writeto(buffer)
    return buffer.getvalue()


def create_superevent():
    document = dict(PREFERRED)
    event = gracedb.create_event(json.dumps(document).encode(), 'AllSky',
                                 'gstlal', 'CBC', filename='event.json')
    created = gracedb.create_superevent(event['graceid'], 1400000000.123,
                                        1400000000.0, 1400000001.0)
    return gracedb.get_superevent(created['superevent_id'])


@pytest.mark.integration  # a broker, Redis and GraceDB
def test_alerts_round_trip_through_broker(eager, kafka_broker,  # noqa: F811
                                          monkeypatch):
    monkeypatch.setitem(app.conf, 'kafka_hop_auth', False)
    monkeypatch.setitem(app.conf, 'kafka_alert_config', {
        'scimma': {'url': f'{kafka_broker.url}/igwn.gwalert-avro',
                   'format': 'avro'},
        'gcn': {'url': f'{kafka_broker.url}/igwn.gwalert', 'format': 'json'}})
    sev = create_superevent()
    sid = sev['superevent_id']
    skymap = fits_bytes()
    gracedb.upload(skymap, 'bayestar.multiorder.fits', sid, 'sky map',
                   ['sky_loc'])
    alert_types = ('Preliminary', 'Initial', 'Update', 'Retraction')
    for alert_type in alert_types:
        kafka.send_alert(sev, alert_type, 'bayestar.multiorder.fits',
                         json.dumps({'HasNS': 0.0, 'HasRemnant': 0.0}),
                         json.dumps({'BBH': 0.99, 'Terrestrial': 0.01}))

    gcn = read_messages(kafka_broker.bootstrap_servers, ['igwn.gwalert'], 4)
    schema = kafka_alerts.json_schema()
    records = [json.loads(message.value()) for message in gcn]
    for record in records:
        jsonschema.validate(record, schema)
    assert [r['alert_type'] for r in records] == [
        'PRELIMINARY', 'INITIAL', 'UPDATE', 'RETRACTION']
    assert records[0]['superevent_id'] == sid
    assert records[1]['event']['skymap'] == kafka_alerts.json_record(
        {'event': {'skymap': skymap}, 'external_coinc': None}
    )['event']['skymap']
    assert records[3]['event'] is None
    assert dict(gcn[0].headers())['_format'] == b'json'

    scimma = read_messages(kafka_broker.bootstrap_servers,
                           ['igwn.gwalert-avro'], 4)
    avro_schema = kafka_alerts.avro_schema()
    avro_records = []
    for message in scimma:
        [record] = list(fastavro.reader(io.BytesIO(message.value())))
        fastavro.validation.validate(record, avro_schema,
                                     raise_errors=True)
        avro_records.append(record)
    assert avro_records[0]['event']['skymap'] == skymap
    assert avro_records[3]['external_coinc'] is None

    names = {entry['filename'] for entry in gracedb.get_log(sid)}
    for alert_type in alert_types:
        for fmt in ('avro', 'json'):
            assert f'{sid}-{alert_type.lower()}.{fmt}' in names


def test_write_fails_when_no_broker_takes_the_message(monkeypatch):
    from gwcelery.util.redis_server import free_port
    monkeypatch.setitem(app.conf, 'kafka_hop_auth', False)
    monkeypatch.setitem(app.conf, 'kafka_produce_timeout', 1.0)
    with pytest.raises(kafka.send_message.autoretry_for):
        kafka.write(f'kafka://127.0.0.1:{free_port()}/igwn.gwalert', b'{}',
                    'json', 'S1')
