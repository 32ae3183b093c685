"""The local GraceDB server's pages, rendered by headless Chromium.

Screenshots go to ``artifacts/screenshots/`` at the top of the repository
(kept by CI). Chromium is Debian's ``chromium`` package, installed by
``.ci/install-system-deps``.
"""

import os
import re
import struct
import zlib

import pytest
from gracedb_sdk import Client

from .browser import dump_dom, screenshot
from .conftest import DATA_DIR

pytestmark = pytest.mark.integration

def make_png(width, height, rgb=(200, 30, 30)):
    """A real PNG image of one colour."""
    rows = b''.join(b'\x00' + bytes(rgb) * width for _ in range(height))

    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data)))

    return (b'\x89PNG\r\n\x1a\n'
            + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0,
                                         0, 0))
            + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))


def table_rows(dom, table_id):
    """The data rows (not the header) of the table with this id."""
    match = re.search(rf'<table id="{table_id}">(.*?)</table>', dom, re.S)
    assert match, f'no table {table_id}'
    return [row for row in re.findall(r'<tr>(.*?)</tr>', match.group(1),
                                      re.S) if '<td' in row]


@pytest.fixture
def populated(gracedb_server):
    """A superevent of two events, a label and an uploaded PNG sky map."""
    client = Client(gracedb_server.url, force_noauth=True)
    with open(os.path.join(DATA_DIR, 'gracedb', 'coinc.xml'), 'rb') as f:
        coinc = f.read()
    events = [client.events.create(
        filename='coinc.xml', filecontents=coinc, group='CBC',
        pipeline=pipeline, search='AllSky') for pipeline in ('gstlal',
                                                              'pycbc')]
    t_0 = events[0]['gpstime']
    superevent = client.superevents.create(
        t_start=t_0 - 1, t_0=t_0, t_end=t_0 + 1,
        preferred_event=events[0]['graceid'])
    sid = superevent['superevent_id']
    client.superevents[sid].add(events[1]['graceid'])
    client.superevents[sid].labels.create('SKYMAP_READY')
    client.superevents[sid].logs.create(
        comment='Sky localization', filename='bayestar.png',
        filecontents=make_png(320, 160), tags=['sky_loc'])
    base = gracedb_server.url.replace('/api/', '/')
    return base, sid, events


def test_superevent_page(populated):
    base, sid, events = populated
    url = f'{base}superevents/{sid}/view/'
    dom = dump_dom(url)
    images = re.findall(r'<img [^>]*>', dom)
    assert len(images) == 1
    assert 'bayestar.png' in images[0]
    width = re.search(r'data-natural-width="(\d+)"', images[0])
    assert width and int(width.group(1)) == 320, images[0]
    assert 'broken' not in images[0]
    rows = table_rows(dom, 'events')
    assert len(rows) == 2
    assert events[0]['graceid'] in dom and '(preferred)' in dom
    assert 'SKYMAP_READY' in dom
    assert len(table_rows(dom, 'log')) >= 2
    assert any('bayestar.png' in row for row in table_rows(dom, 'files'))
    screenshot(url, 'gracedb-superevent.png')


def test_broken_image_is_flagged(gracedb_server, populated):
    """The check above can fail: a PNG that does not decode is flagged."""
    base, sid, _ = populated
    client = Client(gracedb_server.url, force_noauth=True)
    client.superevents[sid].logs.create(
        comment='corrupt', filename='corrupt.png', filecontents=b'not a png')
    dom = dump_dom(f'{base}superevents/{sid}/view/')
    corrupt, = [image for image in re.findall(r'<img [^>]*>', dom)
                if 'corrupt.png' in image]
    assert 'data-natural-width="0"' in corrupt
    assert 'broken' in corrupt


def test_superevent_list_and_event_page(populated):
    base, sid, events = populated
    dom = dump_dom(f'{base}superevents/')
    rows = table_rows(dom, 'superevents')
    assert len(rows) == 1
    assert sid in rows[0] and events[0]['graceid'] in rows[0]
    assert 'SKYMAP_READY' in rows[0]
    screenshot(f'{base}superevents/', 'gracedb-superevents.png')

    url = f"{base}events/{events[1]['graceid']}/view/"
    dom = dump_dom(url)
    assert f'/superevents/{sid}/view/' in dom
    assert 'CoincInspiral' in dom and 'SingleInspiral' in dom
    assert len(table_rows(dom, 'files')) == 2  # coinc.xml and coinc.xml,0
    screenshot(url, 'gracedb-event.png')
