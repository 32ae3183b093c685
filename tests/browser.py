"""Headless Chromium for tests that look at pages as a person would.

Chromium is Debian's ``chromium`` package, installed by
``.ci/install-system-deps``. Screenshots go to ``artifacts/screenshots/``
at the top of the repository (kept by CI).
"""

import os
import shutil
import struct
import subprocess
import tempfile

import pytest

SCREENSHOTS = os.path.join(os.path.dirname(__file__), os.pardir, 'artifacts',
                           'screenshots')

CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu',
                  '--disable-quic', '--no-first-run',
                  '--disable-background-networking',
                  '--disable-component-update', '--disable-sync')


def chromium(*args):
    """Run headless Chromium with a throw-away profile; return stdout."""
    executable = shutil.which('chromium')
    if executable is None:
        pytest.fail('chromium is not installed; run .ci/install-system-deps')
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [executable, *CHROMIUM_FLAGS, f'--user-data-dir={profile}',
             *args], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    return result.stdout.decode()


def dump_dom(url):
    """The page's DOM after its scripts ran and its images loaded."""
    return chromium('--dump-dom', '--virtual-time-budget=10000', url)


def screenshot(url, name):
    """Save a 1280x800 screenshot of `url` as `name` in
    :data:`SCREENSHOTS`; return the PNG bytes."""
    os.makedirs(SCREENSHOTS, exist_ok=True)
    path = os.path.abspath(os.path.join(SCREENSHOTS, name))
    if os.path.exists(path):
        os.remove(path)
    chromium(f'--screenshot={path}', '--window-size=1280,800', url)
    with open(path, 'rb') as f:
        data = f.read()
    assert png_size(data) == (1280, 800)
    return data


def png_size(data):
    """Width and height of a PNG image."""
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    return struct.unpack('>II', data[16:24])
