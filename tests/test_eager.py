"""The single-process debug mode: tasks run inline with no broker."""

import os
import subprocess
import sys
import textwrap

import pytest
from celery import chain, group

from gwcelery import app
from gwcelery.tasks import core


@app.task(shared=False)
def add(x, y):
    return x + y


@app.task(shared=False)
def fail(arg):
    raise ValueError(f'failed on {arg!r}')


@pytest.fixture
def eager(monkeypatch):
    """Eager mode with the broker pointed at a port where nothing listens."""
    monkeypatch.setitem(app.conf, 'task_always_eager', True)
    monkeypatch.setitem(app.conf, 'task_eager_propagates', True)
    monkeypatch.setitem(app.conf, 'broker_url', 'redis://127.0.0.1:1/0')
    monkeypatch.setitem(app.conf, 'result_backend', 'redis://127.0.0.1:1/0')


def test_canvas_runs_inline(eager):
    canvas = chain(add.s(1, 2), group(add.s(10), add.s(20)), core.get_last.s())
    result = canvas.delay()
    assert result.get() == 23


def test_exceptions_propagate(eager):
    canvas = chain(add.s(1, 2), fail.s(), add.s(5))
    with pytest.raises(ValueError, match='failed on 3'):
        canvas.delay()


@pytest.mark.parametrize('env', [
    {'CELERY_CONFIG_MODULE': 'gwcelery.conf.eager'},
    {'CELERY_CONFIG_MODULE': 'eager'},
    {'GWCELERY_EAGER': '1'}])
def test_eager_switches_in_a_fresh_process(env):
    """The preset and the env var each turn eager mode on, with no broker."""
    script = textwrap.dedent('''
        from celery import chain, group
        from gwcelery import app
        from gwcelery.tasks import core
        app.conf.broker_url = app.conf.result_backend = 'redis://127.0.0.1:1/0'
        assert app.conf.task_always_eager and app.conf.task_eager_propagates
        result = chain(core.identity.s([1, 2]),
                       group(core.get_first.s(), core.get_last.s())).delay()
        print(result.get())
    ''')
    environ = {k: v for k, v in os.environ.items()
               if k not in ('CELERY_CONFIG_MODULE', 'GWCELERY_EAGER')}
    out = subprocess.run([sys.executable, '-c', script],
                         env={**environ, **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[1, 2]'
