"""GWCelery application configuration.

Every setting the pipeline reads lives in this module, each with a
docstring. The presets :mod:`gwcelery.conf.production`,
:mod:`~gwcelery.conf.playground`, :mod:`~gwcelery.conf.test`,
:mod:`~gwcelery.conf.development`, :mod:`~gwcelery.conf.local` and
:mod:`~gwcelery.conf.eager` start from these values and override what
differs. The environment variable ``CELERY_CONFIG_MODULE`` picks the preset
(a full module path, or just the preset name, e.g. ``playground``); when it
is unset, the settings of a running ``gwcelery local`` in this folder, else
the ``local`` preset, are used, so that a new user never talks to a
production service by accident (see :mod:`gwcelery.util.settings`).

The settings below are grouped by subsystem, in the order a candidate
meets them.

Celery's own settings are the lowercase names documented in the `Celery
configuration reference
<https://docs.celeryq.dev/en/stable/userguide/configuration.html>`_; the
pipeline's settings follow them.
"""

from kombu import Exchange, Queue

# --- Celery: broker, serialisation, queues --------------------------------

broker_url = 'redis://127.0.0.1:6379/0'
"""Message broker (Redis). ``CELERY_BROKER_URL`` in the environment
overrides it, as for any Celery application."""

result_backend = 'redis://127.0.0.1:6379/0'
"""Result backend (Redis). ``CELERY_RESULT_BACKEND`` in the environment
overrides it."""

accept_content = ['json']
"""Content types a worker accepts. JSON only: pickle is never accepted over
the broker."""

task_serializer = 'json'
"""Serializer for task messages."""

result_serializer = 'json'
"""Serializer for task results."""

event_serializer = 'json'
"""Serializer for worker and task events (read by Flower)."""

result_accept_content = ['json']
"""Content types accepted when reading results from the backend."""

task_queues = tuple(
    Queue(name, Exchange(name), routing_key=name)
    for name in ('celery', 'openmp', 'superevent', 'exttrig'))
"""The four queues. ``celery`` is the general-purpose queue; ``openmp``
takes the OpenMP-parallel work (BAYESTAR, volume plots); ``superevent`` and
``exttrig`` are each consumed by one worker with concurrency 1 so that
their tasks run serially. A task is routed by passing ``queue=...`` to the
``@app.task`` decorator."""

task_default_queue = 'celery'
"""Queue for tasks that do not name one."""

task_create_missing_queues = False
"""Refuse to route to a queue that is not in :obj:`task_queues`, so that a
misspelt queue name fails loudly instead of waiting forever."""

broker_connection_retry_on_startup = True
"""Keep retrying the broker when a worker starts before Redis is up."""

broker_transport_options = {
    'visibility_timeout': 20,
    'unacked_restore_interval': 2,
    'unacked_restore_throttle': 1,
    'unacked_mutex_expire': 10,
}
"""Redis transport options. A message that a worker holds (a running task
with ``acks_late``, a task waiting for its countdown) is leased: the
worker renews the lease every :obj:`broker_lease_renew_interval` seconds
(:mod:`gwcelery.util.broker_lease`), and a message whose lease is older
than ``visibility_timeout`` seconds goes back to its queue: its worker
died, froze or lost the network. Every consumer looks for such messages
every ``unacked_restore_interval`` seconds (``unacked_restore_throttle``
1: a real scan each time, one indexed Redis query); the scan's mutex
expires after ``unacked_mutex_expire`` seconds, so that a worker killed
during a scan does not stop the others' for kombu's default of five
minutes. A dead worker's messages are thus back within about 22 s."""

broker_lease_renew_interval = 4.0
"""Seconds between two renewals of the leases of the messages a worker
holds: five renewals per ``visibility_timeout``, so that a worker slowed
down by a loaded machine or a slow Redis keeps its messages."""

result_expires = 86400
"""Seconds to keep task results in Redis."""

# --- Celery: workers and task delivery ------------------------------------

worker_prefetch_multiplier = 1
"""Each worker process reserves one message at a time: a long BAYESTAR run
must not hold back the tasks queued behind it."""

worker_disable_prefetch = True
"""A worker takes a message from Redis only when one of its processes is
free (Celery's own option, Redis broker only). Without it, a worker
reserves the next message as soon as it starts a task, so the openmp
worker would choose its next localisation at the start of the current
one, 30 s too early for the message priorities to order it (see
:mod:`gwcelery.tasks.localization_order`). Taking a message when free
costs one Redis round trip (about a millisecond)."""

worker_send_task_events = True
"""Workers publish task events so that Flower can show them."""

task_send_sent_event = True
"""Publish an event when a task is sent (Flower shows queued tasks)."""

task_acks_late = False
"""Acknowledge a task's message when a worker starts the task (Celery's
default), not when it finishes. A task opts in with ``acks_late=True`` in
its decorator when running it twice is harmless (e.g. the superevent
handler): its message then stays with the broker until the task ends, so a
task cut short by the worker's death (a crash, a lost node, HTCondor's
SIGKILL when a job outlives its stop timeout) is delivered again, by Redis
after ``broker_transport_options['visibility_timeout']``. Not global: a
task with outside effects (sending a GCN notice) must not run twice, and
the eternal tasks are restarted by Beat, not redelivered. A job removed
or held gracefully never needs it: SIGTERM makes the worker finish its
running tasks and hand its reserved messages back. See
:doc:`htcondor`."""

worker_cancel_long_running_tasks_on_connection_loss = False
"""When a worker loses its broker connection, let its running tasks
finish: they acknowledge their messages through a new connection
(:mod:`gwcelery.util.broker_transport`), and the worker keeps their
leases (:mod:`gwcelery.util.broker_lease`), so that they are neither
lost nor run twice. Celery's cancellation instead needs the result
backend, that is Redis, to be up: with Redis down it terminated the task
but then acknowledged its message as revoked, and the work was lost."""

worker_hijack_root_logger = False
"""Leave the root logger alone so that the pipeline's own log lines (and
the local deployment's milestones) keep their handlers."""

# --- Celery: single-process (eager) mode ----------------------------------

task_always_eager = False
"""Run every task inline in the calling process, with no broker and no
worker: the single-process debug mode. Set it with the
:mod:`gwcelery.conf.eager` preset, or with the environment variable
``GWCELERY_EAGER=1`` on top of any preset."""

task_eager_propagates = False
"""In eager mode, raise a task's exception in the caller instead of
storing it in the result."""

# --- GraceDB client -------------------------------------------------------

gracedb_host = '127.0.0.1:8000'
"""Host (and port) of the GraceDB server."""

gracedb_url = 'http://127.0.0.1:8000/api/'
"""Root URL of the GraceDB REST API."""

gracedb_timeout = 60
"""Seconds that a GraceDB task waits for an answer before it counts the
request as failed (and retries it)."""

gracedb_max_retries = 10
"""How many times a GraceDB task (see
:func:`gwcelery.tasks.gracedb_client.task`) is retried when GraceDB
cannot be reached, times out or answers one of
:obj:`gracedb_retry_statuses`."""

gracedb_retry_statuses = [408, 429, 500, 502, 503, 504]
"""HTTP statuses after which a GraceDB task is retried (409 Conflict too,
for the tasks that are safe to repeat)."""

gracedb_retry_backoff = 1
"""Wait (s, a whole number) before the first retry of a GraceDB task; the
waits double from there, each one drawn at random below its bound (full
jitter) so that many tasks do not all come back at once."""

gracedb_retry_backoff_max = 600
"""Longest wait (s) between two tries of a GraceDB task."""

# --- Listeners (eternal tasks) --------------------------------------------

eternal_lock_ttl = 15.0
"""Lifetime (s) of the lease of a running eternal task (the listeners) and
of Beat's reservation for a queued copy. A copy takes the lease, with this
full lifetime, when it starts, not when Beat queues it: a message can wait
in the queue longer than this. The lease is renewed every third of it (5 s)
by a thread of the copy's process and by its worker's main process, and a
failed renewal is retried within a second. So it lapses only if both are
held up for 10 s, and even then the copy takes it back unless another copy
started. A copy that dies unseen (its whole worker SIGKILLed) is replaced
at most this long after its last renewal, plus a second and its wait in
the queue; one whose death the worker sees, within about a second plus
that wait."""

listener_reconnect_delay_min = 1.0
"""First delay (s) before a listener reconnects to its peer (GCN server,
XMPP server, Redis) after a failure; the delay doubles at each failure in
a row up to :obj:`listener_reconnect_delay_max`."""

listener_reconnect_delay_max = 60.0
"""Longest delay (s) between two reconnection attempts of a listener."""

dead_letter_key = 'gwcelery:dead-letters'
"""Redis list (in the broker's Redis) where the listeners keep, newest
first, each message that they could not decode or hand on because of the
message itself (a *dead letter*: not JSON, nested too deep, a Kafka
tombstone, a JSON list where an object is expected...), as a JSON record
with the time, transport, reason, position and (the first 64 kB of) the
message; see :mod:`gwcelery.util.dead_letters`. Deleting it (``redis-cli
DEL``) after inspection clears the warning of ``gwcelery nagios``."""

dead_letter_max_length = 1000
"""How many dead letters :obj:`dead_letter_key` keeps (the oldest are
dropped). Each keeps at most 64 kB of its message, so the list takes at
most about this many times 64 kB of Redis memory (64 MB)."""

dead_letter_warning_age = 86400.0
"""``gwcelery nagios`` reports WARNING while a dead letter kept in
:obj:`dead_letter_key` is younger than this (s)."""

# --- GCN: notices in, VOEvents out ----------------------------------------

gcn_remote_address = '127.0.0.1'
"""Address of the GCN VOEvent server that :func:`gwcelery.tasks.gcn.listen`
connects to."""

gcn_remote_port = 8099
"""Port of the GCN VOEvent server."""

gcn_listen_ivorn = 'ivo://gwcelery/listen'
"""IVORN by which :func:`gwcelery.tasks.gcn.listen` signs its ``ack`` and
``iamalive`` replies."""

gcn_listen_timeout = 150.0
"""Seconds without any packet from the GCN server (which sends
``iamalive`` every minute) after which :func:`gwcelery.tasks.gcn.listen`
takes the connection for dead and reconnects."""

gcn_max_packet_size = 16 * 2**20
"""Largest VOEvent Transport packet (bytes) that either end accepts; a
larger length prefix means a corrupt stream, and the connection is
dropped."""

gcn_bind_address = '127.0.0.1'
"""Address on which :func:`gwcelery.tasks.gcn.broker` listens for GCN's
receiver."""

gcn_bind_port = 5341
"""Port on which :func:`gwcelery.tasks.gcn.broker` listens."""

gcn_broker_accept_addresses = ['127.0.0.1']
"""Client addresses allowed to connect to the VOEvent broker (host-based
authorisation)."""

gcn_broker_queue_key = 'gcn:broker:voevents'
"""Redis key (in the broker's Redis) of the stream of VOEvents queued by
:func:`gwcelery.tasks.gcn.send`; the clients' cursors are in the hash
``<key>:cursors``."""

gcn_broker_queue_max_length = 10000
"""About how many VOEvents the queue keeps (the oldest are trimmed)."""

gcn_broker_queue_max_age = 86400.0
"""Seconds after which a queued VOEvent is no longer sent to a client
that connects (or reconnects) late: GCN wants fresh notices."""

gcn_broker_ivorn = 'ivo://gwcelery/broker'
"""IVORN by which :func:`gwcelery.tasks.gcn.broker` signs its
``iamalive`` messages."""

gcn_broker_iamalive_interval = 60.0
"""Seconds without traffic after which the broker sends a client an
``iamalive`` (GCN's own servers use 60 s)."""

gcn_broker_reply_timeout = 60.0
"""Seconds that the broker waits for a client's ``ack`` of a VOEvent or
reply to an ``iamalive``; a client that does not answer in time is
disconnected (an unacknowledged VOEvent is sent again when it
reconnects)."""

# --- LVAlert: GraceDB alerts in -------------------------------------------

lvalert_transport = 'redis'
"""How alerts from GraceDB reach the pipeline: ``'xmpp'`` (LVAlert over
XMPP pubsub with sleek-lvalert, the production protocol), ``'redis'``
(a Redis stream with a cursor, the one-machine default) or ``'kafka'``
(igwn-alert, see
:obj:`igwn_alert_url`)."""

lvalert_host = 'localhost'
"""XMPP server of the LVAlert service."""

lvalert_port = None
"""Port of the XMPP server; ``None`` means the standard way (DNS SRV
records of :obj:`lvalert_host`, else port 5222)."""

lvalert_netrc = None
"""netrc file with the listener's XMPP account (``machine <lvalert_host>
login USER password PW``); ``None`` means ``$NETRC`` or ``~/.netrc``."""

lvalert_ca_certs = None
"""CA bundle that verifies the XMPP server's certificate (e.g. a local
prosody's self-signed one); ``None`` means sleek-lvalert's own bundle."""

lvalert_keepalive_interval = 60.0
"""Seconds between XMPP pings (XEP-0199) by the listener; a ping without
answer within as long makes it reconnect."""

lvalert_resubscribe_interval = 10.0
"""Seconds between the XMPP listener's attempts to subscribe to nodes that
do not exist yet (or refused the subscription)."""

lvalert_redis_url = None
"""Redis server for the ``'redis'`` alert transport; ``None`` means the
broker's."""

lvalert_redis_channel_prefix = 'lvalert:'
"""Prefix of the Redis names of the ``'redis'`` alert transport: the
stream ``lvalert:stream`` and its cursor ``lvalert:stream:cursor``, and
the pub/sub channel of each node (``lvalert:cbc_gstlal``)."""

lvalert_redis_stream_max_age = 3600.0
"""Seconds: a listener of the ``'redis'`` alert transport that has no
cursor yet (its first start) begins with the alerts this young."""

# --- Superevents ----------------------------------------------------------

superevent_d_t_start = {'gstlal': 1.0, 'pycbc': 1.0, 'mbta': 1.0,
                        'mbtaonline': 1.0, 'spiir': 1.0}
"""Seconds before a CBC event's ``gpstime`` at which its superevent window
starts, by pipeline (lowercase name). Pipelines not listed use the event's
own duration (cWB, oLIB) or :obj:`superevent_default_d_t_start`."""

superevent_d_t_end = {'gstlal': 1.0, 'pycbc': 1.0, 'mbta': 1.0,
                      'mbtaonline': 1.0, 'spiir': 1.0}
"""Seconds after a CBC event's ``gpstime`` at which its superevent window
ends, by pipeline (lowercase name)."""

superevent_default_d_t_start = 1.0
"""Seconds before ``gpstime`` at which the window starts for an event whose
pipeline has no entry in :obj:`superevent_d_t_start` and no duration of its
own."""

superevent_default_d_t_end = 1.0
"""Seconds after ``gpstime`` at which the window ends for an event whose
pipeline has no entry in :obj:`superevent_d_t_end` and no duration of its
own."""

superevent_query_d_t_start = 100.0
"""Seconds before an event's ``gpstime`` to look for the ``t_0`` of
candidate superevents: an event can only join a superevent of its category
whose ``t_0`` lies between ``gpstime - superevent_query_d_t_start`` and
``gpstime + superevent_query_d_t_end``."""

superevent_query_d_t_end = 100.0
"""Seconds after an event's ``gpstime`` to look for the ``t_0`` of candidate
superevents (see :obj:`superevent_query_d_t_start`)."""

superevent_far_threshold = 1 / 3600
"""Events with a FAR above this (Hz), or with no FAR, are left out of
superevents altogether."""

superevent_required_labels = {
    'CBC': ['SKYMAP_READY', 'EMBRIGHT_READY', 'PASTRO_READY'],
    'Burst': ['SKYMAP_READY'],
}
"""Labels that make an event *complete* (all of its data products exist),
by analysis group (``CBC``, ``Burst``) or by pipeline (lowercase name; a
pipeline entry takes precedence over its group's). A complete event ranks
above any incomplete one when choosing the preferred event, and a
superevent whose preferred event is complete is labelled
:obj:`superevent_em_ready_label`."""

superevent_em_ready_label = 'EM_READY'
"""Label applied to a superevent once its preferred event is complete."""

superevent_frozen_label = 'GCN_PRELIM_SENT'
"""Label that freezes a superevent's preferred event: it is applied once the
alert went out, and from then on new or completed events still join the
superevent (and widen its window) but never replace its preferred event."""

preferred_event_far_threshold = {'CBC': 1 / (60 * 86400),
                                 'Burst': 1 / (60 * 86400)}
"""FAR threshold (Hz) for a public alert by analysis group (``CBC``,
``Burst``): once per two months. An event whose FAR times the group's
trials factor is at most this passes the public-alert threshold, which
counts when choosing the preferred event."""

preferred_event_trials_factor = {'CBC': 5, 'Burst': 4}
"""Trials factor by analysis group: the number of searches of the group
whose events compete for the same alert."""

# --- Detector characterisation --------------------------------------------

llhoft_glob = '/dev/shm/kafka/{detector}/*.gwf'
"""Glob pattern of the low-latency h(t) frames, with ``{detector}`` for
``H1``, ``L1`` or ``V1``. ``gwcelery local`` points it at
``DATA_DIR/llhoft/{detector}/*.gwf``, where its mock frame writer puts
them."""

llhoft_channels = {
    'H1:DMT-DQ_VECTOR': 'dmt_dq_vector_bits',
    'L1:DMT-DQ_VECTOR': 'dmt_dq_vector_bits',
    'H1:GDS-CALIB_STATE_VECTOR': 'ligo_state_vector_bits',
    'L1:GDS-CALIB_STATE_VECTOR': 'ligo_state_vector_bits',
    'V1:DQ_ANALYSIS_STATE_VECTOR': 'virgo_state_vector_bits',
}
"""State and data-quality vector channels of the low-latency frames, each
with the name of its bit set in :obj:`detchar_bit_definitions`."""

detchar_bit_definitions = {
    'dmt_dq_vector_bits': {
        1: 'NO_OMC_DCPD_ADC_OVERFLOW',
        2: 'NO_DMT-ETMY_ESD_DAC_OVERFLOW',
    },
    'ligo_state_vector_bits': {
        0: 'HOFT_OK',
        1: 'OBSERVATION_INTENT',
        5: 'NO_STOCH_HW_INJ',
        6: 'NO_CBC_HW_INJ',
        7: 'NO_BURST_HW_INJ',
        8: 'NO_DETCHAR_HW_INJ',
    },
    'virgo_state_vector_bits': {
        0: 'HOFT_OK',
        1: 'OBSERVATION_INTENT',
        5: 'NO_STOCH_HW_INJ',
        6: 'NO_CBC_HW_INJ',
        7: 'NO_BURST_HW_INJ',
        8: 'NO_DETCHAR_HW_INJ',
        10: 'GOOD_DATA_QUALITY_CAT1',
    },
}
"""Checked bits of each bit set: bit number to name. Every bit means good
when set (1); names ending in ``_INJ`` are injection bits (0: a hardware
injection of that kind is on), the others data-quality bits."""

idq_channels = ['H1:IDQ-PGLITCH_OVL_16_4096', 'L1:IDQ-PGLITCH_OVL_16_4096']
"""iDQ glitch-probability channels; the check takes each one's maximum
over the window."""

idq_pglitch_thresh = 0.95
"""A glitch probability at or above this is high."""

idq_veto = False
"""Whether a high iDQ glitch probability vetoes the candidate (``DQV``) or
is only logged."""

uses_gatedhoft = {
    'gstlal': True, 'spiir': True, 'pycbc': True, 'mbta': True,
    'mbtaonline': True, 'cwb': True, 'olib': False, 'lib': False,
    'hardwareinjection': False, 'swift': False, 'fermi': False,
    'integral': False, 'agile': False, 'snews': False,
}
"""Whether each pipeline (lowercase name) analyses gated h(t); for those
the LIGO ``DMT-DQ_VECTOR`` is not checked (the gating already removes what
it flags)."""

check_vector_prepost = {
    'gstlal': [2, 2], 'spiir': [2, 2], 'pycbc': [2, 2], 'mbta': [2, 2],
    'mbtaonline': [2, 2], 'hardwareinjection': [2, 2], 'swift': [2, 2],
    'fermi': [2, 2], 'integral': [2, 2], 'agile': [2, 2],
    'olib': [1.5, 1.5], 'lib': [1.5, 1.5], 'cwb': [1.5, 1.5],
    'snews': [10, 10],
}
"""Seconds ``[pre, post]`` checked before a superevent's ``t_start`` and
after its ``t_end`` (an external trigger's own span), by the pipeline
(lowercase name) of the preferred or external event."""

check_vector_default_prepost = [2, 2]
"""``[pre, post]`` for a pipeline missing from
:obj:`check_vector_prepost`."""

detchar_frame_latency = 8.0
"""Seconds after the end of the checked window at which the check reads
the frames: the low-latency frames reach the disk a few seconds late. A
window whose frames are still missing then is reported unknown."""

detchar_ok_label = 'DQOK'
"""Label applied when the active detectors' data quality is good. Bad data
get :obj:`data_quality_veto_label`, a hardware injection
:obj:`injection_label`."""

strain_channel_names = {'H1': 'H1:GDS-CALIB_STRAIN_CLEAN',
                        'L1': 'L1:GDS-CALIB_STRAIN_CLEAN',
                        'V1': 'V1:Hrec_hoft_16384Hz'}
"""Strain channel of each detector in the low-latency frames, for the
omega scans (the mock frames carry them too)."""

omegascan_durations = [0.5, 2.0, 10.0]
"""Half-widths (s) of the panels of an omega scan, each centred on the
superevent's ``t_0``."""

omegascan_dpi = 100
"""Resolution of the omega-scan PNGs (a panel is 10 x 5 inches)."""

mock_frames_interval = None
"""Seconds between two runs of the mock frame writer
(:func:`gwcelery.tasks.detchar.write_mock_frames`, Beat); ``None``: no mock
frames. ``gwcelery local`` sets it when it makes mock events."""

mock_frames_duration = 4
"""Seconds of data in each mock frame (an integer)."""

mock_frames_history = 300
"""Seconds of mock frames kept on disk; older ones are deleted, as in the
real low-latency store."""

mock_frames_segments_key = 'detchar:mock:bad_segments'
"""Redis list (on the broker) of the bad-state and injection segments that
mock events ask the mock frame writer for."""

mock_events_bad_data_fraction = 0.0
"""Fraction of the mock events that coincide with a bad-state (``DQV``) or,
as often, an injection (``INJ``) segment of the mock frames."""

# --- Orchestrator: alerts -------------------------------------------------

preliminary_alert_timeout = 120.0
"""Seconds after a superevent appears by which its preliminary alert goes
out even if no EM_READY label came (e.g. because the localisation of the
preferred event failed): the alert then carries the products that exist,
without a sky map if need be. It must exceed the usual BAYESTAR time."""

superevent_clean_up_timeout = 270.0
"""Seconds after the preliminary alert during which the orchestrator
watches the superevent: if its preferred event changed in that time, a
second preliminary notice with the new event's products follows at the
end of it."""

voevent_ivorn_prefix = 'ivo://gwnet/LVC#'
"""IVORN of the VOEvents we author, up to the ``#`` before
``{superevent_id}-{N}-{AlertType}``."""

advocate_request_label = 'ADVREQ'
"""Label that asks the rapid-response team to sign off a superevent (an
``ADV`` signoff); applied once its preliminary notice went out."""

advocate_ok_label = 'ADVOK'
"""Label that GraceDB applies for an ``ADV`` signoff with status OK: the
Initial notice follows."""

advocate_no_label = 'ADVNO'
"""Label that GraceDB applies for an ``ADV`` signoff with status NO: the
Retraction notice follows (if a public notice went out), and nothing
automatic after it."""

data_quality_veto_label = 'DQV'
"""Label of a superevent whose data quality vetoes it (applied by the
detector-characterisation checks): no preliminary notice and no
:obj:`advocate_request_label`; applied after the preliminary notice, it
is written to the superevent's log for the rapid-response team."""

injection_label = 'INJ'
"""Label of a superevent that is a hardware injection: it is never
alerted publicly (no notice except a Retraction of one already sent)."""

early_warning_alert_far_threshold = 1 / 86400
"""FAR threshold (Hz) of an EarlyWarning notice for an event of an
early-warning search (``search: EarlyWarning``): its FAR times
:obj:`early_warning_alert_trials_factor` must be at most this."""

early_warning_alert_trials_factor = 2.0
"""Trials factor of the early-warning searches."""

alert_once_expiry = 30 * 86400
"""Seconds for which the broker's Redis remembers that a superevent's
Initial or Retraction notice was claimed, so that a repeated or
redelivered task never sends a second one."""

# --- Orchestrator: localisation and sky maps ------------------------------

bayestar_f_low = 30.0
"""Low-frequency cutoff (Hz) of the BAYESTAR likelihood."""

bayestar_waveform = 'IMRPhenomD'
"""Waveform approximant of the BAYESTAR templates. IMRPhenomD (aligned
spins, inspiral-merger-ringdown, closed form) suits BNS to BBH.
ligo.skymap's default, ``'o2-uberbank'``, picks SEOBNRv4_ROM above 4 solar
masses, whose data file the PyPI lalsuite does not ship: BAYESTAR then
fails for every NSBH and BBH."""

bayestar_enable_snr_series = True
"""Use the SNR time series that pipelines upload in ``coinc.xml`` (when
present) rather than the template autocorrelation."""

bayestar_omp_threads = None
"""OpenMP threads for BAYESTAR; ``None`` means every core the openmp
worker may use."""

skymap_plot_dpi = 100
"""Resolution (dots per inch) of the all-sky PNG."""

volume_plot_resolution = 64
"""Pixels along each side of the three projections of the volume plot.
The cost grows with its square: ligo.skymap's default (525 at 300 dpi)
took ten minutes on two cores."""

volume_plot_dpi = 100
"""Resolution (dots per inch) of the volume PNG."""

# --- Orchestrator: classification -----------------------------------------

pipeline_products_wait = 5.0
"""Seconds after a CBC event's creation before its source classification
(``{pipeline}.p_astro.json``) and properties (``em_bright.json``) are
computed, if its search has not uploaded its own by then: O4 searches
upload theirs within a second or two of the candidate. The sky map takes
longer, so this wait does not delay the alert."""

em_bright_ns_max_mass = 3.0
"""Heaviest neutron star (solar masses): a lighter component counts as a
neutron star for HasNS."""

em_bright_mass_gap_max = 5.0
"""Upper edge (solar masses) of the mass gap between neutron stars and
black holes (HasMassGap)."""

em_bright_ns_radius = 12.0
"""Neutron-star radius (km) assumed in the remnant-mass fit (HasRemnant)."""

em_bright_mchirp_fractional_error = 0.01
"""Fractional standard deviation of the chirp mass about the template's,
in the HasNS/HasRemnant sampling."""

em_bright_eta_error = 0.02
"""Standard deviation of the symmetric mass ratio about the template's,
in the HasNS/HasRemnant sampling."""

em_bright_samples = 10000
"""Number of mass samples drawn for HasNS/HasRemnant."""

p_astro_far_threshold = 1 / (30 * 86400)
"""FAR (Hz) at the threshold of the searches, FAR* in the p_astro model:
the background density of a candidate is its FAR over this."""

p_astro_snr_threshold = 8.5
"""Network SNR at the threshold of the searches, rho* in the p_astro
model's uniform-in-volume foreground density."""

# --- External triggers and RAVEN ------------------------------------------

raven_coincidence_window_grb_cbc = (-5.0, 1.0)
"""Coincidence window (s) of a GRB with a CBC superevent: they coincide
when the superevent's ``t_0`` minus the GRB time lies in ``[start, end]``,
that is when the GRB comes from 1 s before to 5 s after the merger (a
compact binary's jet is launched after the merger: GRB 170817A came 1.7 s
after GW170817)."""

raven_coincidence_window_grb_burst = (-600.0, 60.0)
"""Coincidence window (s) of a GRB with an unmodelled-burst superevent,
as ``t_0`` minus the GRB time: the gravitational-wave burst from up to 600 s
before to 60 s after the GRB (long GRBs from collapsing stars)."""

raven_coincidence_window_snews = (-10.0, 10.0)
"""Coincidence window (s) of a SNEWS supernova neutrino alert with any
superevent, as ``t_0`` minus the neutrino time."""

raven_grb_rates = {
    'Fermi': 236 / (365 * 86400),
    'Swift': 65 / (365 * 86400),
    'INTEGRAL': 5 / (365 * 86400),
    'AGILE': 5 / (365 * 86400),
}
"""Rates (Hz) of GRBs discovered independently by each instrument: Fermi
GBM about 236 per year, Swift BAT 65, INTEGRAL SPI-ACS 5, AGILE MCAL 5. The
temporal coincidence FAR of a GRB uses their sum, the rate of independent
GRB discoveries (311 per year; ligo-raven uses the rounded 310)."""

raven_subgrb_rate = 65 / (365 * 86400)
"""Rate (Hz) of sub-threshold GRB candidates (Fermi GBM sub-threshold
notices) added to :obj:`raven_grb_rates` for a sub-threshold (``SubGRB``)
external event, as in ligo-raven."""

raven_snews_rate = 1 / (100 * 365 * 86400)
"""Rate (Hz) of SNEWS alerts used for the temporal coincidence FAR of a
supernova neutrino alert: SNEWS is designed for fewer than one false alert
per century (Antonioli et al. 2004, New J. Phys. 6, 114), far above the rate
of Galactic core-collapse supernovae, so the false-alert rate bounds it."""

raven_alert_far_threshold = {
    'CBC': 1 / (60 * 86400),
    'Burst': 1 / (365 * 86400),
}
"""Joint FAR threshold (Hz) per GW group: a coincidence whose combined FAR
(the space-time FAR when both sky maps exist, else the temporal FAR) times
:obj:`raven_trials_factor` is at most this value gets the ``RAVEN_ALERT``
label. One per two months for CBC, one per year for bursts, as for the
public alerts of the GW candidates alone."""

raven_trials_factor = {'CBC': 6, 'Burst': 5}
"""Trials factor per GW group applied before comparing a combined FAR with
:obj:`raven_alert_far_threshold`: the number of searches that could have
produced the GW candidate (5 CBC, 4 burst) plus one for the coincidence
search itself."""

external_skymap_nside = 128
"""HEALPix resolution (``NSIDE``, nested ordering) of the sky maps made from
the position and error radius of a GCN notice. 128 gives pixels of about
0.46 degrees: a disk smaller than a pixel (Swift BAT) keeps the pixels it
touches."""

external_skymap_max_error_radius = 180.0
"""Largest error radius (degrees) that still counts as a position: notices
with a radius of 0 (no position yet, e.g. the first Fermi GBM alert) or of
this value or more (SNEWS sends 360, meaning none) get no sky map."""

# --- Mock events ----------------------------------------------------------

mock_events_interval = None
"""Seconds between simulated CBC candidates uploaded by
:func:`gwcelery.tasks.first2years.upload_event`; ``None`` uploads none.
The ``local`` preset sets it; production presets never do."""

mock_grb_interval = None
"""Seconds between simulated GRB notices that
:func:`gwcelery.tasks.first2years.inject_grb` sends through the mock GCN
server; ``None`` sends none."""

mock_grb_coincidence_probability = 0.0
"""Probability that a mock event comes with a GRB notice 0.5 to 2 s after
it (inside the GRB-CBC coincidence window)."""

mock_signoff_delay = 60.0
"""Seconds after an MDC superevent's sign-off request (ADVREQ) at which a
simulated rapid-response decision (an ``ADV`` signoff through the GraceDB
API) follows, where mock events are uploaded
(:obj:`mock_events_interval` set); ``None`` simulates none."""

mock_signoff_no_fraction = 0.2
"""Fraction of the simulated decisions that are NO (a Retraction follows);
the others are OK (an Initial notice follows)."""

mock_gcn_queue_key = 'gcn:mock:notices'
"""Redis key of the notices queued for the mock GCN server (``gwcelery
mock-gcn-server``), which the local deployment's GCN listener connects to
instead of NASA's."""

# --- Local GraceDB server (gwcelery gracedb-server) -----------------------

gracedb_server_host = '127.0.0.1'
"""Address on which ``gwcelery gracedb-server`` listens."""

gracedb_server_port = 8000
"""Port on which ``gwcelery gracedb-server`` listens."""

gracedb_server_data_dir = 'gracedb-data'
"""Directory of the local GraceDB server's database and uploaded files
(relative paths are relative to the working directory)."""

gracedb_server_public_url = None
"""API root that the local GraceDB server writes in object links and
alerts; ``None`` means ``http://HOST:PORT/api/`` (with 127.0.0.1 for a
server listening on all addresses)."""

gracedb_server_alert_transports = ['redis']
"""How the local GraceDB server publishes its LVAlert messages: any of
``'redis'`` (a Redis stream, and pub/sub on channels
``lvalert_redis_channel_prefix`` + node), ``'xmpp'`` (XMPP pubsub on
``pubsub.`` + the XMPP host, the
production LVAlert protocol) and ``'kafka'`` (igwn-alert topics
:obj:`igwn_alert_group` + ``.`` + node at :obj:`igwn_alert_url`)."""

gracedb_server_redis_url = None
"""Redis server of the ``'redis'`` alert transport; ``None`` means
:obj:`lvalert_redis_url`, or the broker if that is ``None`` too."""

gracedb_server_xmpp_host = None
"""XMPP server of the ``'xmpp'`` alert transport; ``None`` means
:obj:`lvalert_host`."""

gracedb_server_xmpp_port = None
"""Port of the XMPP server of the ``'xmpp'`` alert transport; ``None``
means ``lvalert_port`` if that is set, else the standard one (5222)."""

gracedb_server_xmpp_netrc = None
"""netrc file with the XMPP account (``machine HOST login USER password
PW``) that publishes alerts; it must be allowed to create pubsub nodes.
``None`` means ``$NETRC`` or ``~/.netrc``."""

gracedb_server_xmpp_ca_certs = None
"""CA bundle that verifies the XMPP server's TLS certificate (e.g. a
local prosody's self-signed one); ``None`` means sleek-lvalert's bundle."""

gracedb_server_write_users = None
"""If not ``None``, the list of user names that may change anything on the
local GraceDB server (reads stay open to all). Combine it with
:obj:`gracedb_server_passwords_file` so that the names are verified."""

gracedb_server_passwords_file = None
"""If not ``None``, a file of ``USER PASSWORD`` lines: Basic credentials
must match a line and a Bearer token must equal one of the passwords
(requests with no credentials stay anonymous)."""

# --- Health check (gwcelery nagios) ---------------------------------------

nagios_timeout = 2.0
"""Seconds that each network step of ``gwcelery nagios`` (a connection, a
request, the workers' replies) may take; a check still running after
twice that plus a second counts as UNKNOWN."""

nagios_queue_length_warning = 50
"""``gwcelery nagios`` reports WARNING when a queue holds more than this
many waiting messages (``--queue-warning`` overrides it)."""

nagios_queue_length_critical = 500
"""``gwcelery nagios`` reports CRITICAL when a queue holds more than this
many waiting messages (``--queue-critical`` overrides it)."""

nagios_heartbeat_warning_age = 15.0
"""``gwcelery nagios`` reports WARNING when an eternal listener's last
heartbeat is older than this many seconds (its loop beats every 5 s), or
when no copy holds its lock (e.g. while its worker restarts)
(``--heartbeat-warning`` overrides it)."""

nagios_heartbeat_critical_age = 60.0
"""``gwcelery nagios`` reports CRITICAL when an eternal listener's last
heartbeat is older than this many seconds, or missing
(``--heartbeat-critical`` overrides it)."""

# --- Operator console (gwcelery console) ----------------------------------

console_host = '127.0.0.1'
"""Address the operator console binds to (``gwcelery console --host``).
On any other address it asks for users (:obj:`console_users_file`) or a
front-end proxy's ``REMOTE_USER``."""

console_port = 5000
"""Port of the operator console (``gwcelery console --port``)."""

console_users_file = None
"""If not ``None``, a netrc file whose ``login``/``password`` entries are
the console's users (HTTP Basic authentication, even on 127.0.0.1)."""

console_action_timeout = 60.0
"""Seconds that the console waits for an action's outcome (the task's
result and the line it writes in the superevent's GraceDB log) before
saying it is still running."""

console_superevent_count = 25
"""Number of superevents (the latest) that the console's front page
lists."""

console_action_key_expiry = 86400
"""Seconds that the operator console remembers a form's action key (and
the outcome of the action it started): a repeat of the form within this
time (a double click, a reload, a retry) starts nothing and shows that
outcome."""

# --- Kafka: igwn-alert in, public alerts out, GCN notices in --------------

kafka_alert_config = {}
"""Kafka destinations of the public alerts, besides GCN's VOEvent:
``{name: {'url': 'kafka://HOST[:PORT]/TOPIC', 'format': 'avro' or
'json'}}``, e.g. ``{'scimma': {'url':
'kafka://kafka.scimma.org/igwn.gwalert', 'format': 'avro'}, 'gcn':
{'url': 'kafka://kafka.gcn.nasa.gov/igwn.gwalert', 'format': 'json'}}``;
empty means none."""

kafka_hop_auth = True
"""Credentials of hop-client for the Kafka producers and the igwn-alert
consumer: ``True`` reads hop's configuration (``hop auth add``),
``False`` connects without (a private broker)."""

kafka_produce_timeout = 30.0
"""Seconds within which the Kafka broker must take a public alert message;
after that the send fails and is retried (with backoff, five times)."""

kafka_significant_far_threshold = {'CBC': 1 / (30 * 86400),
                                   'Burst': 1 / (365 * 86400)}
"""FAR (Hz) below which, times the group's
:obj:`preferred_event_trials_factor`, a public Kafka alert says
``significant``: once a month for CBC, once a year for Burst."""

kafka_consumer_session_timeout = 45.0
"""Session timeout (s) of the Kafka consumers (librdkafka's default). A
small broker such as Tansu answers the first JoinGroup after half of it,
so ``gwcelery local`` and the tests set a few seconds."""

igwn_alert_url = 'kafka://kafka.scimma.org/'
"""Kafka broker of igwn-alert (``lvalert_transport = 'kafka'``); the
topics are :obj:`igwn_alert_group` + ``.`` + node."""

igwn_alert_group = 'gracedb-playground'
"""igwn-alert group: the GraceDB server whose alerts are read
(``gracedb``, ``gracedb-playground``, ``gracedb-test``)."""

igwn_alert_consumer_group = 'gwcelery'
"""Kafka consumer group of the igwn-alert listener: its committed offsets
are where a restarted listener goes on."""

gcn_kafka_url = None
"""Kafka broker of the incoming GCN notices: ``None`` (off),
``'kafka://kafka.gcn.nasa.gov'`` (GCN Kafka with
:obj:`gcn_kafka_client_id` and :obj:`gcn_kafka_client_secret`), or a
broker without authentication (``kafka://127.0.0.1:9092``)."""

gcn_kafka_client_id = None
"""GCN Kafka client ID (``None`` for a broker without authentication)."""

gcn_kafka_client_secret = None
"""GCN Kafka client secret."""

gcn_kafka_consumer_group = 'gwcelery'
"""Kafka consumer group of the GCN notice listener."""
