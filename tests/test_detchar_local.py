"""End to end: ``gwcelery local`` writes mock frames and its mock events
get ``DQOK``, ``DQV`` and ``INJ`` within ten events (one every 10 s here,
every third with bad data: a bad state and an injection in turn)."""

import json
import urllib.request

import pytest

from .test_local import LocalDeployment, wait_for

pytestmark = pytest.mark.integration


def superevent_labels(deployment):
    url = deployment.gracedb_url + 'superevents/?query=category:MDC'
    with urllib.request.urlopen(url, timeout=10) as response:
        return {superevent['superevent_id']: superevent['labels']
                for superevent in json.load(response)['superevents']}


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
        assert deployment.stop() < 60
    finally:
        if deployment.process.poll() is None:
            deployment.process.kill()
            deployment.process.wait()
