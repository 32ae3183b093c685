"""End to end: ``gwcelery local`` writes mock frames and its mock events
get ``DQOK``, ``DQV`` and ``INJ`` within ten events (one every 10 s here,
every third with bad data: a bad state and an injection in turn); the
vetoed and injected candidates get no preliminary notice."""

import json
import time
import urllib.request

import pytest

from gwcelery.conf import local as local_conf

from .test_local import LocalDeployment, wait_for

pytestmark = pytest.mark.integration

PRELIMINARY_SENT = 'GCN_PRELIM_SENT'


def get(deployment, path):
    url = deployment.gracedb_url + path
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def superevent_labels(deployment):
    """Labels of the first MDC superevents (one page of the search)."""
    return {superevent['superevent_id']: superevent['labels']
            for superevent in get(deployment, 'superevents/?query=category:'
                                  'MDC')['superevents']}


def test_mock_events_show_dqok_dqv_and_inj(tmp_path):
    deployment = LocalDeployment(tmp_path / 'gwcelery-local',
                                 '--mock-interval', '10')
    try:
        deployment.wait_for_line(r'gwcelery local is up', timeout=180)

        def all_three():
            labels = superevent_labels(deployment)
            seen = {label for names in labels.values() for label in names}
            return {'DQOK', 'DQV', 'INJ'} <= seen and labels

        labels = wait_for(all_three, timeout=300)
        assert labels, superevent_labels(deployment)
        assert len(labels) <= 10
        assert (tmp_path / 'gwcelery-local' / 'llhoft' / 'V1').is_dir()
        blocked = [sid for sid, names in labels.items()
                   if {'DQV', 'INJ'} & set(names)]
        # Past the time by which each would have had its preliminary
        # notice (at the latest preliminary_alert_timeout after creation).
        time.sleep(local_conf.preliminary_alert_timeout + 20)
        labels = {sid: get(deployment, f'superevents/{sid}/')['labels']
                  for sid in labels}
        for sid in blocked:
            assert PRELIMINARY_SENT not in labels[sid], (sid, labels[sid])
        assert any(PRELIMINARY_SENT in names for names in labels.values()
                   if 'DQOK' in names and 'INJ' not in names), labels
        assert deployment.stop() < 60
    finally:
        if deployment.process.poll() is None:
            deployment.process.kill()
            deployment.process.wait()
