"""What follows a RAVEN coincidence, without services: when the search
runs again, the combined sky map, public-alert eligibility and what the
alert says about the coincidence."""

import io

import healpy as hp
import lxml.etree
import numpy as np
import pytest
from astropy.table import Table
from ligo.skymap import moc
from ligo.skymap.io import fits

from gwcelery import app, voevent
from gwcelery.external import coincidence
from gwcelery.tasks import (
    alerts,
    combined_skymaps,
    external_skymaps,
    lifecycle_plan,
    raven_followup,
    raven_rules,
)

#: The order-4 pixel (nested) where :func:`gw_skymap` is concentrated.
HOT_PIXEL = 100


def gw_skymap(hot_pixel=HOT_PIXEL, distance=True):
    """A multi-order GW sky map (FITS bytes): order 4 everywhere but in
    `hot_pixel`, split into order-8 pixels holding 50 times the density."""
    coarse = np.delete(np.arange(12 * 4 ** 4), hot_pixel)
    fine = np.arange(hot_pixel * 4 ** 4, (hot_pixel + 1) * 4 ** 4)
    uniq = np.concatenate([moc.nest2uniq(np.int8(4), coarse),
                           moc.nest2uniq(np.int8(8), fine)])
    density = np.concatenate([np.ones(len(coarse)),
                              np.full(len(fine), 50.0)])
    density /= np.sum(density * moc.uniq2pixarea(uniq))
    columns = {'UNIQ': uniq, 'PROBDENSITY': density}
    if distance:
        columns.update(DISTMU=np.full(len(uniq), 100.0),
                       DISTSIGMA=np.full(len(uniq), 10.0),
                       DISTNORM=np.full(len(uniq), 1e-4))
    buffer = io.BytesIO()
    fits.write_sky_map(buffer, Table(columns), gps_time=1e9,
                       instruments={'H1', 'L1'})
    return buffer.getvalue()


def hot_position(hot_pixel=HOT_PIXEL):
    """RA, Dec (deg) of the centre of the hot pixel of :func:`gw_skymap`."""
    return hp.pix2ang(16, hot_pixel, nest=True, lonlat=True)


def prob_per_pixel(table):
    return table['PROBDENSITY'] * moc.uniq2pixarea(
        np.asarray(table['UNIQ']))


def test_combined_skymap_is_the_normalised_product():
    ra, dec = hot_position()
    ext = external_skymaps.create_disk_skymap(ra, dec, 3.0)
    table = combined_skymaps.combine(gw_skymap(), ext)
    prob = prob_per_pixel(table)
    assert np.sum(prob) == pytest.approx(1.0)
    # The UNIQ pixels tile the sky once: total area 4 pi.
    assert np.sum(moc.uniq2pixarea(np.asarray(table['UNIQ']))) == \
        pytest.approx(4 * np.pi)
    # Only the disk keeps probability, and inside it the GW map's shape.
    theta, phi = moc.uniq2ang(np.asarray(table['UNIQ']))
    centre = hp.ang2vec(ra, dec, lonlat=True)
    separation = np.rad2deg(np.arccos(np.clip(
        hp.ang2vec(theta, phi) @ centre, -1, 1)))
    assert np.all(separation[prob > 0] < 3.0 + 2.0)
    assert table.meta['distmean'] == pytest.approx(100, rel=0.05)
    assert {'DISTMU', 'DISTSIGMA', 'DISTNORM'} <= set(table.colnames)


def test_combined_skymap_splits_coarse_gw_pixels_at_the_disk_edge():
    # A disk far from the hot pixel lies over order-4 GW pixels (coarser
    # than the external map's order 6): where the disk does not cover a
    # whole GW pixel, it is split into order-6 pixels.
    ra, dec = hot_position(600)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(app.conf, 'external_skymap_nside', 64)
        ext = external_skymaps.create_disk_skymap(ra, dec, 8.0)
    table = combined_skymaps.combine(gw_skymap(), ext)
    orders = moc.uniq2order(np.asarray(table['UNIQ']))
    prob = prob_per_pixel(table)
    assert set(orders[prob > 0]) <= {4, 6}
    assert 6 in set(orders[prob > 0])
    assert np.sum(prob) == pytest.approx(1.0)


def test_disjoint_sky_maps_cannot_be_combined():
    ext = np.zeros(hp.nside2npix(16))
    ext[0] = 1.0
    buffer = io.BytesIO()
    fits.write_sky_map(buffer, ext, nest=True)
    flat = np.zeros(hp.nside2npix(16))
    flat[HOT_PIXEL] = 1.0
    gw = io.BytesIO()
    fits.write_sky_map(gw, flat, nest=True)
    with pytest.raises(ValueError, match='do not overlap'):
        combined_skymaps.combine(gw.getvalue(), buffer.getvalue())


def test_combined_fits_reads_back_with_its_header():
    ra, dec = hot_position()
    ext = external_skymaps.create_disk_skymap(ra, dec, 3.0)
    data = combined_skymaps.combined_fits(gw_skymap(distance=False), ext,
                                          'S1')
    table = fits.read_sky_map(io.BytesIO(data), moc=True)
    assert table.meta['objid'] == 'S1'
    assert table.meta['instruments'] == {'H1', 'L1'}
    assert np.sum(prob_per_pixel(table)) == pytest.approx(1.0)


@pytest.mark.parametrize('changed,most_significant,space_far,wanted', [
    (True, True, 1e-10, True),
    (False, True, 1e-10, False),   # nothing new: no second map
    (True, False, 1e-10, False),   # a weaker coincidence
    (True, True, None, False),     # a sky map is missing
])
def test_wants_combined_skymap(changed, most_significant, space_far,
                               wanted):
    assert raven_rules.wants_combined_skymap(changed, most_significant,
                                             space_far) is wanted


def superevent(labels=(), far=1e-6, preferred='G1', em_type='E1'):
    return {'superevent_id': 'S1', 'labels': list(labels),
            'preferred_event': preferred, 't_0': 1e9 + 0.5,
            'em_type': em_type, 'time_coinc_far': 1e-11,
            'space_coinc_far': 2e-12,
            'preferred_event_data': {
                'graceid': preferred, 'group': 'CBC', 'pipeline': 'gstlal',
                'search': 'AllSky', 'far': far, 'labels': []}}


@pytest.mark.parametrize('labels,graceid,rerun', [
    (['EM_COINC'], 'G1', True),
    (['EM_COINC'], 'G2', False),   # not the preferred event
    ([], 'G1', False),             # no coincidence to update
])
def test_rerun_after_gw_skymap(labels, graceid, rerun):
    assert raven_followup.rerun_after_gw_skymap(
        graceid, superevent(labels)) is rerun


def test_no_rerun_for_an_event_in_no_superevent():
    assert not raven_followup.rerun_after_gw_skymap('G1', None)


@pytest.mark.parametrize('labels,filename,tags,rerun', [
    (['EM_COINC'], 'glg_healpix_all_bn.fits', ['sky_loc'], True),
    # The notice's own sky map is followed by the search already.
    (['EM_COINC'], 'fermi_skymap.fits.gz', ['sky_loc'], False),
    (['EM_COINC'], 'glg_healpix_all_bn.fits', [], False),
    (['EM_COINC'], 'lightcurve.png', ['sky_loc'], False),
    ([], 'glg_healpix_all_bn.fits', ['sky_loc'], False),
    (['EM_COINC', 'NOT_GRB'], 'glg_healpix_all_bn.fits', ['sky_loc'],
     False),
])
def test_rerun_after_external_log(labels, filename, tags, rerun):
    event = {'graceid': 'E1', 'pipeline': 'Fermi', 'labels': labels}
    entry = {'filename': filename, 'tag_names': tags}
    assert raven_followup.rerun_after_external_log(event, entry) is rerun


@pytest.mark.parametrize('labels,far,sent,why_not', [
    (['RAVEN_ALERT', 'EM_READY'], 1e-6, [], None),
    (['EM_READY'], 1e-6, [], 'no significant external coincidence'),
    (['RAVEN_ALERT'], 1e-6, [], 'not complete yet'),
    (['RAVEN_ALERT', 'EM_READY'], 1e-10, [], 'passes the threshold'),
    (['RAVEN_ALERT', 'EM_READY'], 1e-6, ['Preliminary'],
     'already went out'),
])
def test_plan_raven_preliminary(labels, far, sent, why_not):
    result = lifecycle_plan.plan_raven_preliminary(superevent(labels, far),
                                                   sent)
    if why_not is None:
        assert result is None
    else:
        assert why_not in result


def fermi_event():
    return {'graceid': 'E1', 'pipeline': 'Fermi', 'search': 'GRB',
            'gpstime': 1e9 + 2.25,
            'extra_attributes': {'GRB': {
                'trigger_id': '548848711',
                'ivorn': 'ivo://nasa.gsfc.gcn/Fermi#GBM_Gnd_Pos_1'}}}


def test_alert_coincidence():
    info = coincidence.alert_coincidence(
        superevent(), fermi_event(), 'combined-ext.multiorder.fits,0')
    assert info == {
        'gcn_notice_id': '548848711',
        'ivorn': 'ivo://nasa.gsfc.gcn/Fermi#GBM_Gnd_Pos_1',
        'observatory': 'Fermi', 'search': 'GRB', 'time_difference': -1.75,
        'time_coincidence_far': 1e-11,
        'time_sky_position_coincidence_far': 2e-12,
        'combined_skymap_filename': 'combined-ext.multiorder.fits,0'}


def test_voevent_fields_and_notice_carry_the_coincidence():
    info = coincidence.alert_coincidence(superevent(), fermi_event(), None)
    fields = alerts.voevent_fields(superevent(), 'Preliminary',
                                   coincidence=info)
    assert fields['raven_coinc'] is True
    assert fields['ext_gcn'] == '548848711'
    assert fields['ext_pipeline'] == 'Fermi'
    assert fields['space_coinc_far'] == 2e-12
    assert 'combined_skymap_filename' not in fields
    assert 'raven_coinc' not in alerts.voevent_fields(
        superevent(), 'Retraction', coincidence=info)

    payload = voevent.build(
        ivorn='ivo://gwnet/LVC#S1-1-Preliminary', superevent_id='S1',
        alert_type='Preliminary', serial_number=1, gpstime=1e9, far=1e-6,
        instruments=['H1', 'L1'], group='CBC', pipeline='gstlal',
        search='AllSky', event_page='https://example.org/S1',
        coincidence=dict(info, combined_skymap_filename='c.fits,0'))
    voevent.validate(payload)
    root = lxml.etree.fromstring(payload)
    group, = root.iterfind(".//Group[@type='External Coincidence']")
    params = {p.get('name'): p.get('value') for p in group.iter('Param')}
    assert params == {
        'ExternalGCNNotice': '548848711', 'ExternalObservatory': 'Fermi',
        'ExternalSearch': 'GRB', 'Time_Difference': '-1.75',
        'Time_Coincidence_FAR': '1e-11',
        'Time_Sky_Position_Coincidence_FAR': '2e-12',
        'CombinedSkymapFilename': 'c.fits,0'}


@pytest.mark.parametrize('labels,alert_type,looked_up', [
    (['EM_COINC'], 'Preliminary', True),
    (['EM_COINC', 'RAVEN_ALERT'], 'Initial', True),
    ([], 'Preliminary', False),
    (['EM_COINC', 'RAVEN_ALERT'], 'Retraction', False),
])
def test_may_carry_coincidence(labels, alert_type, looked_up):
    assert alerts.may_carry_coincidence(superevent(labels),
                                        alert_type) is looked_up
