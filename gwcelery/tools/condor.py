"""``gwcelery condor``: run a deployment as a set of HTCondor jobs.

The set is described by the submit file ``condor/gwcelery.sub`` (one job per
process). Every job carries the attribute ``GWCeleryDeployment`` with the
name of its set, so the commands here act on exactly the jobs of one set
that belong to the current user, through the HTCondor Python bindings
(``htcondor2``, from the ``htcondor`` package on PyPI).
"""

import contextlib
import functools
import os
import pwd
import shutil
import sys
import time
from datetime import datetime

import click

#: Submit file of a source checkout (``pip install -e``).
DEFAULT_SUBMIT_FILE = os.path.join(
    os.path.dirname(__file__), os.pardir, os.pardir, 'condor',
    'gwcelery.sub')

#: Job attribute naming the set a job belongs to (set by the submit file).
DEPLOYMENT_ATTRIBUTE = 'GWCeleryDeployment'

#: Job attribute naming the process a job runs (beat, flower, openmp, ...).
PROCESS_ATTRIBUTE = 'GWCeleryProcess'

#: Names of HTCondor's ``JobStatus`` codes.
JOB_STATUS = {1: 'idle', 2: 'running', 3: 'removing', 4: 'completed',
              5: 'held', 6: 'transferring', 7: 'suspended'}

#: Seconds between two looks at the queue while waiting for jobs to leave.
POLL_INTERVAL = 1.0


def connect():
    """Return the local HTCondor scheduler (``htcondor2.Schedd``).

    Raises :class:`click.ClickException` with what is missing when the
    bindings are not installed or no scheduler can be found.
    """
    # Importing the bindings sets CONDOR_CONFIG=/dev/null when they find no
    # HTCondor configuration: look before they do.
    config = os.environ.get('CONDOR_CONFIG')
    try:
        import htcondor2
    except ImportError as e:
        raise click.ClickException(
            f'the HTCondor Python bindings are not installed ({e}); '
            'install them with: pip install htcondor') from e
    try:
        return htcondor2.Schedd()
    except htcondor2.HTCondorException as e:
        if config is None and os.environ.get('CONDOR_CONFIG') == os.devnull:
            where = ('no HTCondor configuration on this machine '
                     '(CONDOR_CONFIG is unset and there is no '
                     '/etc/condor/condor_config): is HTCondor installed?')
        else:
            where = (f'is HTCondor running here? Its configuration is '
                     f'{config or "/etc/condor/condor_config"}')
        raise click.ClickException(
            f'cannot reach an HTCondor scheduler ({e}); {where}') from e


@contextlib.contextmanager
def scheduler_errors(doing):
    """Turn an error of the scheduler into a one-line message."""
    import htcondor2

    try:
        yield
    except htcondor2.HTCondorException as e:
        hint = ''
        if os.getuid() == 0:
            hint = (' (HTCondor queues no jobs of root: run this as the '
                    'account that runs the pipeline)')
        raise click.ClickException(
            f'HTCondor failed {doing}: {e}{hint}') from e


def current_user():
    """Name of the account the jobs belong to (HTCondor's ``Owner``)."""
    return pwd.getpwuid(os.getuid()).pw_name


def quote(value):
    """Quote a string for a ClassAd expression."""
    escaped = value.replace('\\', '\\\\').replace('"', '\\"')
    return f'"{escaped}"'


def constraint(deployment):
    """ClassAd constraint selecting the current user's jobs of the set."""
    return (f'{DEPLOYMENT_ATTRIBUTE} == {quote(deployment)} && '
            f'Owner == {quote(current_user())}')


def find_jobs(schedd, deployment):
    """Return the job ads of the set, ordered by job id."""
    with scheduler_errors('to list the jobs'):
        ads = schedd.query(
            constraint(deployment),
            projection=['ClusterId', 'ProcId', PROCESS_ATTRIBUTE,
                        'JobStatus', 'EnteredCurrentStatus', 'RemoteHost',
                        'JobRunCount', 'HoldReason'])
    return sorted(ads, key=lambda ad: (ad['ClusterId'], ad['ProcId']))


def act(schedd, action_name, deployment, reason):
    """Apply a job action (``Remove``, ``Hold``, ``Release``) to the set.

    Returns the number of jobs it changed.
    """
    import htcondor2

    # The bindings take the reason as a (text, code) pair; a bare string
    # would be dropped.
    with scheduler_errors(f'to {action_name.lower()} the jobs'):
        result = schedd.act(getattr(htcondor2.JobAction, action_name),
                            constraint(deployment), reason=(reason, 0))
    return int(result['TotalSuccess']) if result is not None else 0


def wait_until_gone(schedd, deployment, timeout):
    """Wait until no job of the set is left in the queue."""
    deadline = time.monotonic() + timeout
    while find_jobs(schedd, deployment):
        if time.monotonic() > deadline:
            raise click.ClickException(
                f'jobs of {deployment!r} are still in the queue after '
                f'{timeout:g} s; not submitting a second set (see '
                '`gwcelery condor q`)')
        time.sleep(POLL_INTERVAL)


def gwcelery_executable():
    """Absolute path of the ``gwcelery`` command of this installation."""
    path = shutil.which(
        'gwcelery', path=os.pathsep.join(
            [os.path.dirname(sys.executable), os.environ.get('PATH', '')]))
    if path is None:
        raise click.ClickException(
            'cannot find the `gwcelery` command next to '
            f'{sys.executable} or on PATH')
    return os.path.abspath(path)


def build_submit(submit_file, deployment, log_dir, config_module,
                 openmp_cpus, concurrency, flower_port, stop_timeout,
                 accounting_group, machine):
    """Read the submit file and fill in its variables.

    Returns an ``htcondor2.Submit`` that queues one job per process.
    """
    import htcondor2

    try:
        with open(submit_file) as f:
            text = f.read()
    except OSError as e:
        raise click.ClickException(
            f'cannot read the submit file {submit_file} ({e.strerror}); '
            'pass one with --submit-file') from e
    submit = htcondor2.Submit(text)
    variables = {
        'gwcelery': gwcelery_executable(),
        'log_dir': log_dir,
        'config_module': config_module,
        'deployment': deployment,
        'openmp_cpus': openmp_cpus,
        'celery_concurrency': concurrency,
        'flower_port': flower_port,
        'stop_timeout': stop_timeout,
    }
    for key, value in variables.items():
        submit[key] = str(value)
    if accounting_group:
        submit['accounting_group'] = accounting_group
    if machine:
        submit['requirements'] = f'TARGET.Machine == {quote(machine)}'
    return submit


def submit_set(schedd, options):
    """Submit the set described by the ``submit`` command's options."""
    deployment = options['deployment']
    existing = find_jobs(schedd, deployment)
    if existing:
        raise click.ClickException(
            f'{len(existing)} job(s) of {deployment!r} are already in the '
            'queue; use `gwcelery condor resubmit` to replace them')
    log_dir = os.path.abspath(options['log_dir'])
    os.makedirs(log_dir, exist_ok=True)
    submit = build_submit(
        options['submit_file'], deployment, log_dir,
        options['config_module'], options['openmp_cpus'],
        options['concurrency'], options['flower_port'],
        options['stop_timeout'], options['accounting_group'],
        options['machine'])
    with scheduler_errors('to submit the jobs'):
        result = schedd.submit(submit)
    processes = [item['process_name'] for item in submit.itemdata()]
    click.echo(f'Submitted {result.num_procs()} jobs of {deployment!r} as '
               f'cluster {result.cluster()}: {", ".join(processes)}')
    click.echo(f'Configuration: {options["config_module"]}')
    click.echo(f'Logs: {log_dir}/')


def deployment_option(func):
    """The ``--name`` option shared by every subcommand."""
    return click.option(
        '--name', 'deployment', default='gwcelery', show_default=True,
        help='Name of the set of jobs (its HTCondor batch name).')(func)


def submit_options(func):
    """Options of ``submit`` and ``resubmit``."""
    options = [
        click.option('--log-dir', default='log', show_default=True,
                     type=click.Path(file_okay=False),
                     help='Directory for the jobs\' log, output and error '
                          'files (created if missing).'),
        click.option('--config-module', default=None,
                     help='CELERY_CONFIG_MODULE of the jobs (a preset such '
                          'as production or playground, or a module path). '
                          'Default: the one this shell uses.'),
        click.option('--openmp-cpus', default=4, show_default=True,
                     type=click.IntRange(1),
                     help='Cores of the OpenMP worker.'),
        click.option('--concurrency', default=8, show_default=True,
                     type=click.IntRange(4),
                     help='Processes of the general worker (three are '
                          'taken by the eternal listeners).'),
        click.option('--flower-port', default=5555, show_default=True,
                     help='Port of Flower on 127.0.0.1.'),
        click.option('--stop-timeout', default=600, show_default=True,
                     type=click.IntRange(1),
                     help='Seconds a removed job gets to finish its running '
                          'tasks before SIGKILL.'),
        click.option('--accounting-group', default=None,
                     help='HTCondor accounting group of the jobs.'),
        click.option('--machine', default=None,
                     help='Run every job on this machine (HTCondor Machine '
                          'name), e.g. the head node that GCN connects to.'),
        click.option('--submit-file', default=DEFAULT_SUBMIT_FILE,
                     type=click.Path(dir_okay=False),
                     help='Submit description [default: condor/gwcelery.sub '
                          'of the source tree].'),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def with_config_default(func):
    """Fill in ``--config-module`` with the module this shell's
    ``gwcelery`` uses when it is not given."""
    @functools.wraps(func)
    def wrapper(**options):
        if not options['config_module']:
            from .. import config_module_name
            options['config_module'] = config_module_name()
        return func(**options)
    return wrapper


@click.group(name='condor')
def condor():
    """Run the pipeline as HTCondor jobs: one job per process.

    The jobs (Celery Beat, Flower, and the celery, openmp, superevent and
    exttrig workers) are described by condor/gwcelery.sub; HTCondor
    restarts any that exits. The subcommands act on the whole set at once.
    """


@condor.command()
@deployment_option
@submit_options
@with_config_default
def submit(**options):
    """Submit the set of jobs."""
    submit_set(connect(), options)


@condor.command()
@deployment_option
@click.option('--wait/--no-wait', default=False, show_default=True,
              help='Wait until the jobs have left the queue.')
@click.option('--timeout', default=660.0, show_default=True,
              help='Seconds to wait with --wait.')
def rm(deployment, wait, timeout):
    """Remove the jobs (SIGTERM: warm shutdown of the workers)."""
    schedd = connect()
    count = act(schedd, 'Remove', deployment, 'removed by gwcelery condor rm')
    click.echo(f'Removing {count} job(s) of {deployment!r}')
    if wait:
        wait_until_gone(schedd, deployment, timeout)
        click.echo('All jobs have left the queue')


@condor.command()
@deployment_option
def q(deployment):
    """Show the jobs of the set and their state."""
    jobs = find_jobs(connect(), deployment)
    if not jobs:
        click.echo(f'No jobs of {deployment!r} in the queue')
        return
    click.echo(f'{"JOB":<10} {"PROCESS":<11} {"STATUS":<10} '
               f'{"SINCE":<19} {"RUNS":>4}  HOST')
    for ad in jobs:
        job_id = f'{ad["ClusterId"]}.{ad["ProcId"]}'
        status = JOB_STATUS.get(ad.get('JobStatus'), '?')
        since = datetime.fromtimestamp(
            ad.get('EnteredCurrentStatus', 0)).strftime('%Y-%m-%d %H:%M:%S')
        click.echo(f'{job_id:<10} {ad.get(PROCESS_ATTRIBUTE, "?"):<11} '
                   f'{status:<10} {since:<19} '
                   f'{ad.get("JobRunCount", 0):>4}  '
                   f'{ad.get("RemoteHost", "")}')
        if status == 'held':
            click.echo(f'{"":<10} hold reason: {ad.get("HoldReason", "")}')


@condor.command()
@deployment_option
def hold(deployment):
    """Put the jobs on hold (they stop, and stay queued)."""
    count = act(connect(), 'Hold', deployment, 'held by gwcelery condor hold')
    click.echo(f'Held {count} job(s) of {deployment!r}')


@condor.command()
@deployment_option
def release(deployment):
    """Release held jobs (they start again)."""
    count = act(connect(), 'Release', deployment,
                'released by gwcelery condor release')
    click.echo(f'Released {count} job(s) of {deployment!r}')


@condor.command()
@deployment_option
@submit_options
@click.option('--timeout', default=660.0, show_default=True,
              help='Seconds to wait for the old jobs to leave the queue.')
@with_config_default
def resubmit(timeout, **options):
    """Remove the jobs, wait until they are gone, submit them again."""
    deployment = options['deployment']
    schedd = connect()
    count = act(schedd, 'Remove', deployment,
                'removed by gwcelery condor resubmit')
    click.echo(f'Removing {count} job(s) of {deployment!r}')
    wait_until_gone(schedd, deployment, timeout)
    submit_set(schedd, options)
