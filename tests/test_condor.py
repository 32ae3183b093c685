"""Tests of the HTCondor deployment: ``condor/gwcelery.sub`` and
``gwcelery condor``.

* The submit file is read with the HTCondor bindings' own parser
  (``htcondor2.Submit``) and every job's settings are expanded by it.
* The commands run against a stand-in scheduler injected where the bindings
  would connect (:func:`gwcelery.tools.condor.connect`); it selects jobs
  with the real ClassAd evaluator, so the constraints are checked too.
* An integration test runs the whole set in a real personal HTCondor pool
  (``.ci/htcondor-pool``, a Debian 13 tree entered with chroot).
"""

import fcntl
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import entry_points
from types import SimpleNamespace

import classad2
import htcondor2
import pytest
from celery.bin.beat import beat as beat_command
from celery.bin.worker import worker as worker_command
from click.testing import CliRunner

from gwcelery import app
from gwcelery.tools import condor as condor_tool

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
SUBMIT_FILE = os.path.join(REPO, 'condor', 'gwcelery.sub')
POOL_SCRIPT = os.path.join(REPO, '.ci', 'htcondor-pool')
PROCESSES = ['beat', 'flower', 'celery', 'openmp', 'superevent', 'exttrig']
#: What Celery's commands find in their click context.
CLI_OBJ = SimpleNamespace(app=app)
WORKER_QUEUES = {'celery': 'celery', 'openmp': 'openmp',
                 'superevent': 'superevent', 'exttrig': 'exttrig'}


def build(**overrides):
    options = dict(submit_file=SUBMIT_FILE, deployment='gwcelery',
                   log_dir='/srv/gwcelery/log',
                   config_module='gwcelery.conf.playground', openmp_cpus=3,
                   concurrency=8, flower_port=5555, stop_timeout=600,
                   accounting_group=None, machine=None)
    options.update(overrides)
    return condor_tool.build_submit(**options)


def expand_jobs(submit):
    """Expand the settings of each job the submit description queues,
    with the bindings' macro expansion: {process name: {key: value}}."""
    keys = ['universe', 'executable', 'arguments', 'getenv', 'environment',
            'output', 'error', 'log', 'request_cpus', 'request_memory',
            'on_exit_remove', 'on_exit_hold', 'kill_sig',
            'job_max_vacate_time', 'batch_name', 'My.GWCeleryDeployment',
            'My.GWCeleryProcess', 'should_transfer_files']
    jobs = {}
    for item in submit.itemdata():
        for key, value in item.items():
            submit[key] = value
        jobs[item['process_name']] = {key: submit.expand(key)
                                      for key in keys}
    return jobs


def celery_argv(job):
    """The ``gwcelery`` arguments of an expanded job."""
    arguments = job['arguments']
    assert arguments.startswith('"') and arguments.endswith('"')
    return arguments[1:-1].split()


# --- The submit file ------------------------------------------------------

def test_submit_file_queues_one_job_per_process():
    jobs = expand_jobs(build())
    assert list(jobs) == PROCESSES
    for name, job in jobs.items():
        assert job['executable'] == condor_tool.gwcelery_executable()
        assert job['My.GWCeleryDeployment'] == '"gwcelery"'
        assert job['My.GWCeleryProcess'] == f'"{name}"'
        assert job['batch_name'] == 'gwcelery'
        assert job['output'] == f'/srv/gwcelery/log/{name}.out'
        assert job['error'] == f'/srv/gwcelery/log/{name}.err'
        assert job['log'] == '/srv/gwcelery/log/condor.log'
        assert job['environment'] == (
            '"CELERY_CONFIG_MODULE=gwcelery.conf.playground"')
        assert job['getenv'].lower() == 'true'
        assert job['universe'] == 'vanilla'
        assert job['should_transfer_files'] == 'NO'


def test_submit_file_keeps_jobs_running_and_stops_them_gently():
    for job in expand_jobs(build(stop_timeout=120)).values():
        assert job['on_exit_remove'].lower() == 'false'
        assert job['on_exit_hold'].lower() == 'false'
        assert job['kill_sig'] == 'SIGTERM'
        assert job['job_max_vacate_time'] == '120'


def test_submit_file_worker_arguments():
    jobs = expand_jobs(build(openmp_cpus=6, concurrency=10))
    for name, queue in WORKER_QUEUES.items():
        argv = celery_argv(jobs[name])
        assert argv[0] == 'worker'
        # Parse them with Celery's own command line: every option exists.
        ctx = worker_command.make_context('worker', argv[1:], obj=CLI_OBJ)
        assert ctx.params['queues'] == [queue]
        assert ctx.params['hostname'] == f'{name}@{os.uname().nodename}'
        assert ctx.params['logfile'] == f'/srv/gwcelery/log/{name}.log'
        expected = {'celery': 10}.get(name, 1)
        assert ctx.params['concurrency'] == expected
        pool = ctx.params['pool'].__module__.rsplit('.', 1)[-1]
        assert pool == ('solo' if name in ('superevent', 'exttrig')
                        else 'prefork')
    assert jobs['openmp']['request_cpus'] == '6'
    assert jobs['celery']['request_cpus'] == '2'
    for name in ('beat', 'flower', 'superevent', 'exttrig'):
        assert jobs[name]['request_cpus'] == '1'


def test_submit_file_beat_and_flower_arguments():
    jobs = expand_jobs(build(flower_port=5601))
    argv = celery_argv(jobs['beat'])
    assert argv[0] == 'beat'
    ctx = beat_command.make_context('beat', argv[1:], obj=CLI_OBJ)
    assert ctx.params['logfile'] == '/srv/gwcelery/log/beat.log'
    assert celery_argv(jobs['flower']) == [
        'flower', '--address=127.0.0.1', '--port=5601',
        '--log_file_prefix=/srv/gwcelery/log/flower.log']


def test_submit_file_defaults_without_the_command():
    """Submitted by hand, only ``gwcelery`` and ``log_dir`` are needed."""
    with open(SUBMIT_FILE) as f:
        submit = htcondor2.Submit(f.read())
    submit['gwcelery'] = '/opt/gwcelery/bin/gwcelery'
    jobs = expand_jobs(submit)
    assert jobs['openmp']['request_cpus'] == '4'
    assert jobs['celery']['output'] == 'log/celery.out'
    assert '--concurrency 8' in jobs['celery']['arguments']
    assert '--port=5555' in jobs['flower']['arguments']
    assert jobs['beat']['job_max_vacate_time'] == '600'
    assert jobs['beat']['My.GWCeleryDeployment'] == '"gwcelery"'


def test_submit_options_machine_and_accounting_group():
    submit = build(machine='head.example.org',
                   accounting_group='ligo.dev.o4.cbc.pe.bayestar',
                   deployment='playground')
    assert submit['requirements'] == 'TARGET.Machine == "head.example.org"'
    assert submit['accounting_group'] == 'ligo.dev.o4.cbc.pe.bayestar'
    jobs = expand_jobs(submit)
    assert jobs['beat']['batch_name'] == 'playground'
    assert jobs['beat']['My.GWCeleryDeployment'] == '"playground"'


# --- The commands against a stand-in scheduler ----------------------------

class FakeSchedd:
    """Stand-in for ``htcondor2.Schedd`` keeping job ads in memory.

    ``submit`` turns each queued item into a job ad through the bindings'
    macro expansion, ``query``/``act`` select jobs with the ClassAd
    evaluator. Removed jobs leave the queue after ``linger`` more queries,
    as they do while their processes shut down.
    """

    def __init__(self, linger=2):
        self.jobs = []
        self.next_cluster = 1
        self.linger = linger
        self.actions = []

    def _select(self, constraint):
        expr = classad2.ExprTree(str(constraint))
        return [ad for ad in self.jobs if expr.eval(ad) is True]

    def query(self, constraint='true', projection=()):
        for ad in list(self.jobs):
            if ad['JobStatus'] == 3:
                ad['Linger'] -= 1
                if ad['Linger'] < 0:
                    self.jobs.remove(ad)
        return [classad2.ClassAd(dict(ad)) for ad in self._select(constraint)]

    def submit(self, description):
        cluster = self.next_cluster
        self.next_cluster += 1
        items = list(description.itemdata())
        for proc, item in enumerate(items):
            for key, value in item.items():
                description[key] = value
            self.jobs.append(classad2.ClassAd({
                'ClusterId': cluster, 'ProcId': proc, 'JobStatus': 2,
                'Owner': condor_tool.current_user(),
                'EnteredCurrentStatus': 1_700_000_000, 'JobRunCount': 1,
                'RemoteHost': f'slot1_{proc + 1}@head',
                'GWCeleryDeployment': classad2.ExprTree(
                    description.expand('My.GWCeleryDeployment')).eval(),
                'GWCeleryProcess': item['process_name'],
                'Arguments': description.expand('arguments'),
            }))
        return SimpleNamespace(cluster=lambda: cluster,
                               num_procs=lambda: len(items))

    def act(self, action, constraint, reason=None):
        self.actions.append((action, str(constraint), reason))
        selected = self._select(constraint)
        for ad in selected:
            if action == htcondor2.JobAction.Remove:
                ad['JobStatus'] = 3
                ad['Linger'] = self.linger
            elif action == htcondor2.JobAction.Hold:
                ad['JobStatus'] = 5
                ad['HoldReason'] = f'{reason[0]} (by user someone)'
            elif action == htcondor2.JobAction.Release:
                ad['JobStatus'] = 1
        return classad2.ClassAd({'TotalSuccess': len(selected)})

    def add_foreign_jobs(self):
        """Jobs the commands must leave alone: another user's set and
        another set of the same user."""
        for owner, deployment in (('someone-else', 'gwcelery'),
                                  (condor_tool.current_user(), 'other')):
            self.jobs.append(classad2.ClassAd({
                'ClusterId': 99, 'ProcId': len(self.jobs), 'JobStatus': 2,
                'Owner': owner, 'GWCeleryDeployment': deployment,
                'GWCeleryProcess': 'beat'}))


@pytest.fixture
def schedd(monkeypatch):
    fake = FakeSchedd()
    monkeypatch.setattr(condor_tool, 'connect', lambda: fake)
    monkeypatch.setattr(condor_tool, 'POLL_INTERVAL', 0.01)
    return fake


def run(*args):
    result = CliRunner().invoke(condor_tool.condor, list(args))
    return result


def own_jobs(schedd, deployment='gwcelery'):
    return [ad for ad in schedd.jobs
            if ad['Owner'] == condor_tool.current_user()
            and ad['GWCeleryDeployment'] == deployment]


def test_submit_creates_log_dir_and_queues_the_set(schedd, tmp_path):
    log_dir = tmp_path / 'logs'
    result = run('submit', '--log-dir', str(log_dir),
                 '--config-module', 'playground')
    assert result.exit_code == 0, result.output
    assert log_dir.is_dir()
    assert 'Submitted 6 jobs' in result.output
    assert [ad['GWCeleryProcess'] for ad in schedd.jobs] == PROCESSES
    assert all(f'{log_dir}/' in ad['Arguments'] for ad in schedd.jobs)


def test_submit_config_module_defaults_to_this_shell(schedd, tmp_path,
                                                     monkeypatch):
    monkeypatch.setenv('CELERY_CONFIG_MODULE', 'playground')
    seen = {}
    original = condor_tool.build_submit

    def spy(*args, **kwargs):
        submit = original(*args, **kwargs)
        seen['environment'] = submit.expand('environment')
        return submit

    monkeypatch.setattr(condor_tool, 'build_submit', spy)
    result = run('submit', '--log-dir', str(tmp_path))
    assert result.exit_code == 0, result.output
    assert seen['environment'] == (
        '"CELERY_CONFIG_MODULE=gwcelery.conf.playground"')


def test_submit_refuses_a_second_set(schedd, tmp_path):
    assert run('submit', '--log-dir', str(tmp_path)).exit_code == 0
    result = run('submit', '--log-dir', str(tmp_path))
    assert result.exit_code == 1
    assert 'already in the queue' in result.output
    assert 'resubmit' in result.output
    assert len(schedd.jobs) == 6


def test_submit_with_missing_submit_file(schedd, tmp_path):
    result = run('submit', '--log-dir', str(tmp_path),
                 '--submit-file', str(tmp_path / 'nope.sub'))
    assert result.exit_code == 1
    assert 'cannot read the submit file' in result.output
    assert schedd.jobs == []


def test_q_lists_the_set_only(schedd, tmp_path):
    schedd.add_foreign_jobs()
    result = run('q')
    assert result.exit_code == 0
    assert "No jobs of 'gwcelery'" in result.output
    run('submit', '--log-dir', str(tmp_path))
    lines = run('q').output.splitlines()
    assert lines[0].split() == ['JOB', 'PROCESS', 'STATUS', 'SINCE', 'RUNS',
                                'HOST']
    rows = [line.split() for line in lines[1:]]
    assert [row[1] for row in rows] == PROCESSES
    assert all(row[2] == 'running' for row in rows)
    assert rows[0][0] == '1.0' and rows[-1][0] == '1.5'


def test_hold_and_release_act_on_the_set_only(schedd, tmp_path):
    run('submit', '--log-dir', str(tmp_path))
    schedd.add_foreign_jobs()
    result = run('hold')
    assert result.exit_code == 0
    assert 'Held 6 job(s)' in result.output
    assert all(ad['JobStatus'] == 5 for ad in own_jobs(schedd))
    assert all(ad['JobStatus'] == 2 for ad in schedd.jobs
               if ad['ClusterId'] == 99)
    output = run('q').output
    assert output.count('held by gwcelery condor hold') == 6
    result = run('release')
    assert 'Released 6 job(s)' in result.output
    assert all(ad['JobStatus'] == 1 for ad in own_jobs(schedd))


def test_rm_wait(schedd, tmp_path):
    run('submit', '--log-dir', str(tmp_path))
    schedd.add_foreign_jobs()
    result = run('rm', '--wait')
    assert result.exit_code == 0, result.output
    assert 'Removing 6 job(s)' in result.output
    assert 'All jobs have left the queue' in result.output
    assert own_jobs(schedd) == []
    assert len(schedd.jobs) == 2


def test_resubmit_waits_until_the_old_set_is_gone(schedd, tmp_path):
    run('submit', '--log-dir', str(tmp_path))
    schedd.linger = 5
    result = run('resubmit', '--log-dir', str(tmp_path))
    assert result.exit_code == 0, result.output
    assert 'Removing 6 job(s)' in result.output
    assert 'as cluster 2' in result.output
    assert {ad['ClusterId'] for ad in schedd.jobs} == {2}
    assert len(schedd.jobs) == 6


def test_resubmit_gives_up_when_jobs_do_not_leave(schedd, tmp_path):
    run('submit', '--log-dir', str(tmp_path))
    schedd.linger = 10**9
    result = run('resubmit', '--log-dir', str(tmp_path), '--timeout', '0.2')
    assert result.exit_code == 1
    assert 'still in the queue' in result.output
    assert {ad['ClusterId'] for ad in schedd.jobs} == {1}


def test_resubmit_without_a_running_set_just_submits(schedd, tmp_path):
    result = run('resubmit', '--log-dir', str(tmp_path))
    assert result.exit_code == 0, result.output
    assert 'Removing 0 job(s)' in result.output
    assert len(schedd.jobs) == 6


def test_scheduler_refusal_is_one_clear_line(schedd, tmp_path, monkeypatch):
    def refuse(description):
        raise htcondor2.HTCondorException(
            'Failed to create new cluster.SCHEDD:13:Cannot allocate a '
            'cluster id')

    monkeypatch.setattr(schedd, 'submit', refuse)
    result = run('submit', '--log-dir', str(tmp_path))
    assert result.exit_code == 1
    assert result.output.startswith(
        'Error: HTCondor failed to submit the jobs: Failed to create new '
        'cluster')
    assert ('queues no jobs of root' in result.output) == (os.getuid() == 0)


def test_constraint_quotes_names():
    expr = condor_tool.constraint('a"b')
    ad = classad2.ClassAd({'GWCeleryDeployment': 'a"b',
                           'Owner': condor_tool.current_user()})
    assert classad2.ExprTree(expr).eval(ad) is True


# --- Without HTCondor -----------------------------------------------------

def test_clear_error_without_the_bindings(monkeypatch):
    monkeypatch.setitem(sys.modules, 'htcondor2', None)
    result = run('q')
    assert result.exit_code == 1
    assert 'HTCondor Python bindings are not installed' in result.output
    assert 'pip install htcondor' in result.output


def test_clear_error_without_htcondor(tmp_path):
    """The real command, on a machine without an HTCondor installation."""
    if any(os.path.exists(path) for path in (
            '/etc/condor/condor_config', '/usr/local/etc/condor_config',
            os.path.expanduser('~condor/condor_config'))):
        pytest.skip('HTCondor is configured on this machine')
    env = {key: value for key, value in os.environ.items()
           if key != 'CONDOR_CONFIG'}
    env['HOME'] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, '-m', 'gwcelery', 'condor', 'submit', '--log-dir',
         str(tmp_path / 'log')], env=env, capture_output=True, text=True,
        timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith('Error: cannot reach an HTCondor scheduler')
    assert 'is HTCondor installed?' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_commands_are_registered():
    """``gwcelery condor`` is a plugin of the ``gwcelery`` command."""
    (entry_point,) = [
        entry_point for entry_point in entry_points(group='celery.commands')
        if entry_point.name == 'condor']
    group = entry_point.load()
    assert group is condor_tool.condor
    assert set(group.commands) == {'submit', 'rm', 'q', 'hold', 'release',
                                   'resubmit'}


# --- A real personal HTCondor pool ----------------------------------------

POOL_ROOT = os.environ.get('HTCONDOR_POOL_ROOT',
                           '/var/cache/gwcelery/htcondor-trixie')
POOL_USER_UID = 4242
POOL_HOME = '/home/gwcelery-condor'


class Pool:
    """The personal pool of ``.ci/htcondor-pool``: commands run in its tree
    as its user; :meth:`host_path` maps a path of the tree to the host."""

    def run(self, *argv, cwd=POOL_HOME, env=(), check=True, timeout=120):
        proc = subprocess.run(
            [POOL_SCRIPT, 'run', 'env', f'--chdir={cwd}', *env, *argv],
            capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(f'{argv} failed:\n{proc.stdout}\n{proc.stderr}')
        return proc

    @staticmethod
    def host_path(path):
        return POOL_ROOT + path


@pytest.fixture(scope='module')
def htcondor_pool():
    """A running personal pool; the Python installation and this source
    tree are bind-mounted into it at their own paths."""
    if os.geteuid() != 0:
        pytest.skip('the HTCondor pool needs root (chroot, mount)')
    if subprocess.run([POOL_SCRIPT, 'status']).returncode != 0:
        message = (f'no HTCondor pool tree at {POOL_ROOT}: '
                   '.ci/install-system-deps builds it (.ci/htcondor-pool '
                   'install)')
        if os.environ.get('CI'):
            pytest.fail(message)
        pytest.skip(message)
    binds = sorted({sys.base_prefix, sys.prefix, REPO})
    if any(path in ('/', '/usr') for path in binds):
        pytest.skip(f'cannot bind-mount the Python installation {binds} '
                    'into the pool tree')
    # One pool at a time: test runs of other checkouts on this machine
    # would share the tree and its mounts.
    lock = open(POOL_ROOT + '.lock', 'w')
    deadline = time.monotonic() + 600
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                pytest.fail('another test run kept the HTCondor pool busy '
                            'for 600 s')
            time.sleep(1)
    started = subprocess.run([POOL_SCRIPT, 'start', *binds],
                             capture_output=True, text=True, timeout=120)
    try:
        if started.returncode != 0:
            pytest.fail(f'the HTCondor pool did not start:\n'
                        f'{started.stdout}\n{started.stderr}')
        yield Pool()
    finally:
        subprocess.run([POOL_SCRIPT, 'stop'], timeout=120)
        lock.close()


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f'timed out after {timeout} s waiting for {what}')


@pytest.mark.integration
def test_deployment_in_a_real_pool(htcondor_pool, broker_app, tmp_path):
    pool = htcondor_pool
    work = f'{POOL_HOME}/deployment-{os.getpid()}'
    config_dir = f'{work}/config'
    log_dir = f'{work}/log'
    os.makedirs(pool.host_path(config_dir))
    with open(pool.host_path(f'{config_dir}/gwcelery_condor_test.py'),
              'w') as f:
        f.write('from gwcelery.conf.local import *  # noqa: F403\n'
                f'broker_url = {broker_app.conf.broker_url!r}\n'
                f'result_backend = {broker_app.conf.result_backend!r}\n')
    for path in (work, config_dir):
        os.chown(pool.host_path(path), POOL_USER_UID, POOL_USER_UID)
    # The jobs import this source tree, wherever pip installed gwcelery.
    env = [f'PYTHONPATH={config_dir}{os.pathsep}{REPO}']
    flower_port = free_port()
    gwcelery = [sys.executable, '-m', 'gwcelery']
    options = ['--config-module', 'gwcelery_condor_test', '--log-dir',
               log_dir, '--openmp-cpus', '2', '--concurrency', '4',
               '--flower-port', str(flower_port), '--stop-timeout', '60']

    def q():
        """Rows of ``gwcelery condor q``: job, process, status, since (two
        words), runs, host."""
        rows = pool.run(*gwcelery, 'condor', 'q', env=env).stdout
        return [line.split() for line in rows.splitlines()[1:]
                if not line.startswith(' ')]

    def statuses():
        """JobStatus of each job in the queue, by the quick condor_q."""
        return pool.run('condor_q', '-af', 'JobStatus').stdout.split()

    def all_running():
        return statuses() == ['2'] * 6

    phase_start = time.monotonic()

    def phase(name):
        nonlocal phase_start
        now = time.monotonic()
        print(f'{name}: {now - phase_start:.1f} s')
        phase_start = now

    def workers_answer():
        replies = broker_app.control.ping(timeout=1.0) or []
        names = {name.split('@')[0] for reply in replies for name in reply}
        return names >= set(WORKER_QUEUES)

    # The real condor_submit accepts the file and queues the six jobs.
    dry_run = pool.run(
        'condor_submit', '-dry-run', '-', f'gwcelery={gwcelery[0]}',
        f'log_dir={log_dir}', SUBMIT_FILE, cwd=work).stdout
    assert dry_run.count('ProcId=') == 6, dry_run
    assert 'OnExitRemove=false' in dry_run

    # submit: every job runs, and the processes are really up.
    start = time.monotonic()
    pool.run(*gwcelery, 'condor', 'submit', *options, cwd=work, env=env)
    wait_for(all_running, 90, 'all six jobs to run')
    rows = q()
    assert [row[1] for row in rows] == PROCESSES
    assert [row[2] for row in rows] == ['running'] * 6
    cluster = rows[0][0].split('.')[0]
    phase('submit to all jobs running')
    wait_for(workers_answer, 90, 'the four workers to answer a ping')
    phase('jobs running to all workers answering')
    health = wait_for(lambda: flower_health(flower_port), 60, 'Flower')
    assert health == 'OK'
    beat_log = pool.host_path(f'{log_dir}/beat.log')
    wait_for(lambda: os.path.exists(beat_log)
             and 'beat: Starting' in open(beat_log).read(), 30, 'Beat')

    # A process that exits is started again by HTCondor.
    hostname = os.uname().nodename
    broker_app.control.shutdown(destination=[f'superevent@{hostname}'])
    wait_for(lambda: pool.run('condor_q', '-af', 'JobRunCount').stdout
             .split() == ['1', '1', '1', '1', '2', '1'] and all_running(),
             90, 'the superevent job to run again')
    wait_for(workers_answer, 90, 'the superevent worker to be back')
    phase('restart of an exited worker')

    # hold: the jobs stop with a warm shutdown and stay queued.
    pool.run(*gwcelery, 'condor', 'hold', env=env)
    wait_for(lambda: statuses() == ['5'] * 6, 60, 'the jobs to be held')
    held = pool.run(*gwcelery, 'condor', 'q', env=env).stdout
    assert held.count('hold reason: held by gwcelery condor hold') == 6
    worker_out = pool.host_path(f'{log_dir}/openmp.out')
    wait_for(lambda: 'Warm shutdown' in open(worker_out).read(), 60,
             'the warm shutdown of the openmp worker')
    phase('hold')

    # release: they run again.
    pool.run(*gwcelery, 'condor', 'release', env=env)
    wait_for(all_running, 90, 'the released jobs to run')
    phase('release')

    # resubmit: the old set leaves the queue, a new one runs.
    pool.run(*gwcelery, 'condor', 'resubmit', *options, cwd=work, env=env,
             timeout=180)
    wait_for(all_running, 90, 'the resubmitted jobs to run')
    rows = q()
    assert [row[2] for row in rows] == ['running'] * 6
    assert {row[0].split('.')[0] for row in rows} != {cluster}
    phase('resubmit')

    # rm --wait: the queue is empty afterwards.
    out = pool.run(*gwcelery, 'condor', 'rm', '--wait', env=env).stdout
    assert 'Removing 6 job(s)' in out
    assert q() == []
    phase('rm')
    # Logs are kept only when the test fails.
    shutil.rmtree(pool.host_path(work))
    print(f'whole cycle: {time.monotonic() - start:.1f} s')


def flower_health(port):
    try:
        with urllib.request.urlopen(
                f'http://127.0.0.1:{port}/healthcheck', timeout=2) as reply:
            return reply.read().decode()
    except OSError:
        return None
