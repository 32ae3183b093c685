"""A RAVEN coincidence whose GW sky map comes later, in the
single-process eager mode against the local GraceDB server (real HTTP) and
the real Redis queue of :func:`gwcelery.tasks.gcn.send`: the GRB notice
through :func:`gwcelery.tasks.external_triggers.handle`, the coincidence
found from the new superevent before its preferred event has a sky map,
the sky map arriving (SKYMAP_READY), the coincidence computed again with
the sky maps, the combined sky map with COMBINEDSKYMAP_READY, and a
sub-threshold superevent's public preliminary alert carrying the
coincidence. The label alerts that GraceDB sends are fed to the handlers
as a listener would."""

import io
import json

import lxml.etree
import numpy as np
import pytest
from astropy.time import Time
from ligo.skymap import moc
from ligo.skymap.io import fits

from gwcelery import app, voevent
from gwcelery.tasks import (
    external_skymaps,
    external_triggers,
    gracedb,
    orchestrator,
    raven,
    raven_followup,
)

from .superevent_uploads import coinc_xml
from .test_external_triggers import GRB_RATE, modified, read
from .test_orchestrator import alert, queued_voevents
from .test_raven_followup import gw_skymap, hot_position

pytestmark = pytest.mark.integration

#: Sub-threshold for a public alert (FAR x 5 trials > 1 / 60 days), but
#: with a GRB 2 s later the coincidence passes RAVEN's threshold.
GW_FAR = 1e-6


@pytest.fixture
def eager(monkeypatch, broker_app, gracedb):
    """Eager mode as on a worker; the broker (where gcn.send queues) is
    the test Redis; small plots and external sky maps."""
    for key, value in {'task_always_eager': True,
                       'task_eager_propagates': True,
                       'external_skymap_nside': 64,
                       'volume_plot_resolution': 16, 'volume_plot_dpi': 30,
                       'skymap_plot_dpi': 30}.items():
        monkeypatch.setitem(app.conf, key, value)


def label_added(obj, name):
    return alert('label_added', obj, {'name': name})


def labels(graceid):
    return set(gracedb.get_labels(graceid))


@pytest.mark.usefixtures('eager')
def test_late_gw_skymap_combined_map_and_raven_alert():
    # A Fermi GBM notice at the GW candidate's position, recorded first:
    # its own search finds no superevent yet.
    t_gw = 1300000000.0
    ra, dec = hot_position()
    notice = modified(read('fermi_grb_gcn.xml'), ra=ra, dec=dec, radius=4.0,
                      isotime=Time(t_gw + 2, format='gps').utc.isot + 'Z')
    external_triggers.handle(notice)
    ext_event, = gracedb.get_events('group: External')
    ext_id = ext_event['graceid']
    assert 'fermi_skymap.fits.gz' in {
        entry['filename'] for entry in gracedb.get_log(ext_id)}

    # The sub-threshold GW candidate, complete but for its sky map.
    event = gracedb.create_event(coinc_xml(t_gw, GW_FAR, 12.0), 'AllSky',
                                 'gstlal', 'CBC', filename='coinc.xml')
    graceid = event['graceid']
    gracedb.upload(json.dumps({'HasNS': 1.0, 'HasRemnant': 1.0}),
                   'em_bright.json', graceid, 'em_bright', ['em_bright'])
    gracedb.upload(json.dumps({'BNS': 0.9, 'NSBH': 0.0, 'BBH': 0.0,
                               'Terrestrial': 0.1}),
                   'gstlal.p_astro.json', graceid, 'p_astro', ['p_astro'])
    superevent = gracedb.create_superevent(graceid, t_gw, t_gw - 1,
                                           t_gw + 1)
    superevent_id = superevent['superevent_id']

    # The search from the new superevent: a temporal coincidence only.
    raven.handle_superevent(alert('new', superevent))
    superevent = gracedb.get_superevent(superevent_id)
    assert superevent['em_type'] == ext_id
    assert superevent['time_coinc_far'] == pytest.approx(
        6 * GRB_RATE * GW_FAR)
    assert superevent['space_coinc_far'] is None
    assert {'EM_COINC', 'RAVEN_ALERT'} <= labels(superevent_id)
    assert 'RAVEN_ALERT' in labels(graceid)
    assert 'COMBINEDSKYMAP_READY' not in labels(superevent_id)
    # RAVEN_ALERT before the event is complete: no alert yet.
    raven_followup.handle_raven_alert(label_added(superevent, 'RAVEN_ALERT'))
    assert gracedb.get_voevents(superevent_id) == []

    # The sky map arrives: the coincidence is computed again with it.
    gracedb.upload(gw_skymap(), 'bayestar.multiorder.fits', graceid,
                   'Sky localization complete', ['sky_loc'])
    gracedb.create_label('SKYMAP_READY', graceid)
    raven_followup.handle_gw_skymap(
        label_added(gracedb.get_event(graceid), 'SKYMAP_READY'))
    superevent = gracedb.get_superevent(superevent_id)
    space_far = superevent['space_coinc_far']
    assert space_far is not None
    assert space_far < superevent['time_coinc_far']  # the maps agree
    assert 'COMBINEDSKYMAP_READY' in labels(superevent_id)
    combined = fits.read_sky_map(io.BytesIO(gracedb.download(
        'combined-ext.multiorder.fits', superevent_id)), moc=True)
    assert combined.meta['objid'] == superevent_id
    assert np.sum(combined['PROBDENSITY'] * moc.uniq2pixarea(
        np.asarray(combined['UNIQ']))) == pytest.approx(1.0)

    # EM_READY: the orchestrator alone would not alert (sub-threshold);
    # RAVEN_ALERT makes it eligible.
    gracedb.create_label('EM_READY', superevent_id)
    superevent = gracedb.get_superevent(superevent_id)
    orchestrator.handle_superevent(label_added(superevent, 'EM_READY'))
    assert gracedb.get_voevents(superevent_id) == []
    raven_followup.handle_raven_alert(label_added(superevent, 'EM_READY'))
    # The RAVEN_ALERT label's own alert, late, sends nothing more.
    raven_followup.handle_raven_alert(label_added(superevent, 'RAVEN_ALERT'))

    record, = gracedb.get_voevents(superevent_id)
    assert record['voevent_type'] == 'PR'
    assert record['raven_coinc'] is True
    assert record['ext_gcn'] == '548848711'
    assert record['combined_skymap_filename'] == \
        'combined-ext.multiorder.fits,0'
    payload, = queued_voevents()
    assert gracedb.download(record['filename'], superevent_id) == payload
    voevent.validate(payload)
    root = lxml.etree.fromstring(payload)
    group, = root.iterfind(".//Group[@type='External Coincidence']")
    params = {p.get('name'): p.get('value') for p in group.iter('Param')}
    assert params['ExternalGCNNotice'] == '548848711'
    assert params['ExternalObservatory'] == 'Fermi'
    assert params['ExternalSearch'] == 'GRB'
    assert float(params['Time_Difference']) == pytest.approx(-2.0)
    assert float(params['Time_Sky_Position_Coincidence_FAR']) == \
        pytest.approx(space_far, rel=1e-6)
    assert params['CombinedSkymapFilename'] == \
        'combined-ext.multiorder.fits,0'
    assert 'GCN_PRELIM_SENT' in labels(superevent_id)

    # A new preferred event, still below the threshold: the coincidence
    # still holds, so the second preliminary alert goes out too.
    second = gracedb.create_event(coinc_xml(t_gw, GW_FAR, 14.0), 'AllSky',
                                  'pycbc', 'CBC', filename='coinc.xml')
    gracedb.upload(gw_skymap(), 'bayestar.multiorder.fits',
                   second['graceid'], 'Sky localization complete',
                   ['sky_loc'])
    gracedb.add_event_to_superevent(superevent_id, second['graceid'])
    gracedb.update_superevent(superevent_id,
                              preferred_event=second['graceid'])
    orchestrator.repeat_if_changed(gracedb.get_superevent(superevent_id),
                                   graceid)
    first, again = gracedb.get_voevents(superevent_id)
    assert again['voevent_type'] == 'PR' and again['N'] == 2
    assert again['raven_coinc'] is True
    assert len(queued_voevents()) == 2


@pytest.mark.usefixtures('eager')
def test_late_external_skymap_reruns_the_coincidence():
    # A GW candidate with its sky map, then a GBM trigger recorded
    # without a sky map (as GraceDB takes it; its search runs): a temporal
    # coincidence only.
    t_gw = 1300000000.0
    event = gracedb.create_event(coinc_xml(t_gw, GW_FAR, 12.0), 'AllSky',
                                 'gstlal', 'CBC', filename='coinc.xml')
    graceid = event['graceid']
    gracedb.upload(gw_skymap(), 'bayestar.multiorder.fits', graceid,
                   'Sky localization complete', ['sky_loc'])
    superevent = gracedb.create_superevent(graceid, t_gw, t_gw - 1,
                                           t_gw + 1)
    superevent_id = superevent['superevent_id']
    ext_id = gracedb.create_event(
        modified(read('fermi_grb_gcn.xml'),
                 isotime=Time(t_gw + 1, format='gps').utc.isot + 'Z'),
        'GRB', 'Fermi', 'External')['graceid']
    raven.coincidence_search(ext_id)
    superevent = gracedb.get_superevent(superevent_id)
    assert superevent['em_type'] == ext_id
    assert superevent['space_coinc_far'] is None

    # Fermi's own sky map is uploaded to the external event later.
    ra, dec = hot_position()
    entry = gracedb.upload(
        external_skymaps.create_disk_skymap(ra, dec, 4.0),
        'glg_healpix_all_bn.fits', ext_id, 'GBM sky map', ['sky_loc'])
    raven_followup.handle_external_skymap(
        alert('log', gracedb.get_event(ext_id), entry))
    superevent = gracedb.get_superevent(superevent_id)
    assert superevent['space_coinc_far'] is not None
    assert 'COMBINEDSKYMAP_READY' in labels(superevent_id)
