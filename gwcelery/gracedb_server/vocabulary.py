"""Names the server accepts and advertises in its API root document.

The clients check group, pipeline, search and label names against these
lists before they send a request (ligo-gracedb) and the server rejects the
others with a 400, as GraceDB does.
"""

#: The GraceDB version the server answers as (``server-version``).
SERVER_VERSION = '2.31.0+gwcelery.local'

GROUPS = ('CBC', 'Burst', 'External', 'Test', 'Detchar')

PIPELINES = (
    # CBC searches
    'gstlal', 'pycbc', 'MBTA', 'MBTAOnline', 'spiir', 'aframe', 'GstLAL',
    # burst searches
    'CWB', 'CWB2G', 'oLIB', 'MLy', 'GWAK', 'LIB', 'Omega',
    # external triggers
    'Fermi', 'Swift', 'INTEGRAL', 'AGILE', 'SNEWS', 'CHIME', 'IceCube',
    'SVOM', 'EinsteinProbe',
    # others
    'HardwareInjection', 'X')

SEARCHES = (
    'AllSky', 'AllSkyLong', 'BBH', 'IMBH', 'EarlyWarning', 'LowMass',
    'HighMass', 'SSM', 'MDC', 'LongDuration', 'Supernova', 'GRB', 'SubGRB',
    'SubGRBTargeted', 'FRB', 'HEN', 'O2VirgoTest')

LABELS = (
    'ADVNO', 'ADVOK', 'ADVREQ', 'COMBINEDSKYMAP_READY', 'DQOK', 'DQR_REQUEST',
    'DQV', 'EARLY_WARNING', 'EMBRIGHT_READY', 'EM_COINC', 'EM_READY',
    'EM_SENT', 'EM_Selected', 'EM_SelectedConfident', 'EM_Superseded',
    'EM_Throttled', 'EXT_SKYMAP_READY', 'GCN_PRELIM_SENT', 'GRB_OFFLINE',
    'H1NO', 'H1OK', 'H1OPS', 'HIGH_PROFILE', 'INJ', 'K1NO', 'K1OK', 'K1OPS',
    'L1NO', 'L1OK', 'L1OPS', 'LOW_SIGNIF_LOCKED', 'LOW_SIGNIF_PRELIM_SENT',
    'NOT_GRB', 'PASTRO_READY', 'PE_READY', 'RAVEN_ALERT', 'SIGNIF_LOCKED',
    'SKYMAP_READY', 'SNEWS', 'SOG_READY', 'SPI_ALERT', 'SWIFT_GO',
    'SWIFT_NO', 'V1NO', 'V1OK', 'V1OPS', 'cWB_r', 'cWB_s')

#: Pipelines whose event files are LIGO-LW coinc tables.
CBC_PIPELINES = ('gstlal', 'GstLAL', 'pycbc', 'MBTA', 'MBTAOnline', 'spiir',
                 'aframe')

#: Pipelines whose event files are GCN VOEvents, whatever the group (a test
#: notice of an instrument is an event of the group Test).
EXTERNAL_PIPELINES = ('Fermi', 'Swift', 'INTEGRAL', 'AGILE', 'SNEWS')

VOEVENT_TYPES = {'PR': 'preliminary', 'IN': 'initial', 'UP': 'update',
                 'RE': 'retraction', 'EW': 'earlywarning'}

#: Type names used in VOEvent file names and IVORNs.
VOEVENT_FILE_TYPES = {'PR': 'Preliminary', 'IN': 'Initial', 'UP': 'Update',
                      'RE': 'Retraction', 'EW': 'EarlyWarning'}

SIGNOFF_TYPES = {'OP': 'operator', 'ADV': 'advocate'}

SIGNOFF_STATUSES = {'OK': 'OKAY', 'NO': 'NOT OKAY'}

INSTRUMENTS = {'H1': 'LHO', 'L1': 'LLO', 'V1': 'Virgo'}

EM_GROUPS = ('CRTS', 'DES', 'Fermi GBM', 'Fermi LAT', 'GOTO', 'GRANDMA',
             'Pan-STARRS', 'Swift', 'ZTF', 'Test')

#: Permissions that "expose" grants on a superevent.
EXPOSED_PERMISSIONS = (('lvem_observers', 'view_superevent'),
                       ('lvem_observers', 'annotate_superevent'),
                       ('public_users', 'view_superevent'))
