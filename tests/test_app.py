"""The Celery app, its configuration presets and the command line."""

import importlib
import os
import subprocess
import sys
import time

import pytest

import gwcelery
from gwcelery import app
from gwcelery.util.redis_server import free_port

PRESETS = ('production', 'playground', 'test', 'development', 'local',
           'eager')


def run_python(code, **env):
    environ = {k: v for k, v in os.environ.items()
               if k not in ('CELERY_CONFIG_MODULE', 'GWCELERY_EAGER')}
    environ.update(env)
    return subprocess.run([sys.executable, '-c', code], env=environ,
                          capture_output=True, text=True, timeout=120)


def test_four_queues():
    assert [queue.name for queue in app.conf.task_queues] == [
        'celery', 'openmp', 'superevent', 'exttrig']
    assert app.conf.task_default_queue == 'celery'


def test_json_only():
    assert app.conf.accept_content == ['json']
    assert app.conf.result_accept_content == ['json']
    assert app.conf.task_serializer == 'json'
    assert app.conf.result_serializer == 'json'


def test_default_preset_is_local():
    out = run_python('from gwcelery import app; print(app.conf.gracedb_url)')
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'http://127.0.0.1:8000/api/'


@pytest.mark.parametrize('preset', PRESETS)
def test_presets_load(preset):
    out = run_python('from gwcelery import app; '
                     'print(app.conf.gracedb_host, app.conf.accept_content)',
                     CELERY_CONFIG_MODULE=f'gwcelery.conf.{preset}')
    assert out.returncode == 0, out.stderr
    host = importlib.import_module(f'gwcelery.conf.{preset}').gracedb_host
    assert out.stdout.split()[0] == host
    assert "['json']" in out.stdout


def test_production_presets_do_not_point_at_this_machine():
    for preset in ('production', 'playground', 'test'):
        conf = importlib.import_module(f'gwcelery.conf.{preset}')
        assert conf.gracedb_url.startswith('https://')
        assert '127.0.0.1' not in conf.gracedb_url
        assert conf.lvalert_transport == 'xmpp'


def test_every_setting_has_a_docstring():
    """Each public setting in gwcelery.conf is documented (autodoc reads
    these for the configuration reference)."""
    import ast
    import inspect

    from gwcelery import conf
    tree = ast.parse(inspect.getsource(conf))
    body = tree.body
    undocumented = []
    for node, following in zip(body, body[1:] + [None], strict=True):
        if isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            documented = (isinstance(following, ast.Expr) and
                          isinstance(following.value, ast.Constant) and
                          isinstance(following.value.value, str))
            if not documented:
                undocumented.extend(names)
    assert undocumented == []


def test_config_module_name(monkeypatch):
    monkeypatch.delenv('CELERY_CONFIG_MODULE', raising=False)
    assert gwcelery.config_module_name() == 'gwcelery.conf.local'
    monkeypatch.setenv('CELERY_CONFIG_MODULE', 'playground')
    assert gwcelery.config_module_name() == 'gwcelery.conf.playground'
    monkeypatch.setenv('CELERY_CONFIG_MODULE', 'mysite.config')
    assert gwcelery.config_module_name() == 'mysite.config'


def test_cli_lists_celery_and_project_commands():
    out = subprocess.run(['gwcelery', '--help'], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    commands = out.stdout.split('Commands:')[1]
    for command in ('worker', 'beat', 'flower', 'inspect', 'local'):
        assert f'  {command} ' in commands
    assert 'could not load plugin' not in out.stdout


def test_cli_presets_the_app():
    out = subprocess.run(['gwcelery', 'report'], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # Celery's report prints the loaded app's settings: ours, not defaults.
    assert "gracedb_url: 'http://127.0.0.1:8000/api/'" in out.stdout
    assert "accept_content: ['json']" in out.stdout


@pytest.mark.parametrize('command', [
    ['inspect', 'ping'], ['status'], ['purge', '-f'], ['events', '--dump'],
    ['call', 'gwcelery.tasks.gcn.send', '--args', '["<VOEvent/>"]']])
def test_client_command_without_broker_says_so_in_one_line(command,
                                                           tmp_path):
    """A command that needs the broker, with none at the configured URL,
    exits non-zero within seconds with one line naming the URL and how to
    reach a deployment, not a traceback or a hang."""
    url = f'redis://127.0.0.1:{free_port()}/0'
    env = {k: v for k, v in os.environ.items()
           if k not in ('CELERY_CONFIG_MODULE', 'GWCELERY_LOCAL_DIR')}
    started = time.monotonic()
    out = subprocess.run(['gwcelery', '--broker', url, *command], env=env,
                         cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1
    assert time.monotonic() - started < 30
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert url in lines[0]
    assert 'gwcelery local' in lines[0]
    assert 'Traceback' not in out.stdout + out.stderr
