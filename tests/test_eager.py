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


#: Configuration modules of the design documents' debug switch: Celery's
#: old names, over a preset or alone.
OLD_STYLE_MODULES = {
    'old_names_over_preset': (
        'from gwcelery.conf.local import *  # noqa\n'
        'CELERY_ALWAYS_EAGER = CELERY_EAGER_PROPAGATES_EXCEPTIONS = True\n'),
    'old_names_alone':
        'CELERY_ALWAYS_EAGER = CELERY_EAGER_PROPAGATES_EXCEPTIONS = True\n',
}


def run_with_config(env, tmp_path, module_text=None):
    """Run a canvas in a fresh process with `env` and, if given, a
    configuration module ``celeryconfig`` holding `module_text`."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ('CELERY_CONFIG_MODULE', 'GWCELERY_EAGER')}
    environ.update(env)
    if module_text is not None:
        (tmp_path / 'celeryconfig.py').write_text(module_text)
        environ['CELERY_CONFIG_MODULE'] = 'celeryconfig'
        environ['PYTHONPATH'] = os.pathsep.join(
            filter(None, [str(tmp_path), environ.get('PYTHONPATH')]))
    script = textwrap.dedent('''
        from celery import chain, group
        from gwcelery import app
        from gwcelery.tasks import core
        app.conf.broker_url = app.conf.result_backend = 'redis://127.0.0.1:1/0'
        print(app.conf.task_always_eager, app.conf.task_eager_propagates)
        result = chain(core.identity.s([1, 2]),
                       group(core.get_first.s(), core.get_last.s())).delay()
        print(result.get(timeout=5))
    ''')
    return subprocess.run([sys.executable, '-c', script], env=environ,
                          cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize('env', [
    {'CELERY_CONFIG_MODULE': 'gwcelery.conf.eager'},
    {'CELERY_CONFIG_MODULE': 'eager'},
    {'GWCELERY_EAGER': '1'}])
def test_eager_switches_in_a_fresh_process(env, tmp_path):
    """The preset and the env var each turn eager mode on, with no broker."""
    out = run_with_config(env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split('\n')[:2] == ['True True', '[1, 2]']


@pytest.mark.parametrize('name', sorted(OLD_STYLE_MODULES))
def test_old_style_debug_switch(name, tmp_path):
    """``CELERY_ALWAYS_EAGER = CELERY_EAGER_PROPAGATES_EXCEPTIONS = True``
    in a configuration module turns eager mode on, as the design documents
    say, with or without a preset imported before it."""
    out = run_with_config({}, tmp_path, OLD_STYLE_MODULES[name])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split('\n')[:2] == ['True True', '[1, 2]']


def test_old_style_name_overrides_the_preset(tmp_path):
    """An old name written after a preset's import wins over the preset's
    new-style value, here turning the eager preset off again: the task
    then needs the (absent) broker."""
    out = run_with_config({}, tmp_path,
                          'from gwcelery.conf.eager import *  # noqa\n'
                          'CELERY_ALWAYS_EAGER = False\n')
    assert out.stdout.startswith('False True\n')
    assert out.returncode != 0
