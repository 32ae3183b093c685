"""The decisions of a superevent's public alerts after its preliminary
notice, without tasks or I/O: pure functions of the superevent's labels,
the notices sent (:func:`gwcelery.tasks.lifecycle.notices_sent`) and its
log. Whether an automatic notice may go out
(:func:`automatic_alert_blocked`) and whether a RAVEN coincidence brings
a sub-threshold superevent its preliminary alert
(:func:`plan_raven_preliminary`), what a sign-off calls for
(:func:`plan_signoff`), whether an Update may go out (:func:`plan_update`)
and with which products (:func:`latest_products`,
:func:`resolve_filename`). :mod:`gwcelery.tasks.lifecycle` reads GraceDB,
decides with them, and starts the writes.
"""

from .. import app
from .raven_rules import RAVEN_ALERT
from .superevent_rules import passes_public_threshold

#: Alert types that tell the public about a candidate.
PUBLIC_NOTICES = ('EarlyWarning', 'Preliminary', 'Initial', 'Update')

#: Name endings of sky map files.
FITS_SUFFIXES = ('.fits', '.fits.gz')


def automatic_alert_blocked(labels, sent):
    """Why an automatic notice (EarlyWarning, Preliminary) may not go out
    for a superevent with these labels and notices sent, or ``None``."""
    conf = app.conf
    decided = {conf.advocate_ok_label, conf.advocate_no_label} & set(labels)
    if 'Retraction' in sent:
        return 'the superevent was retracted'
    if decided:
        return f'an operator decided ({", ".join(sorted(decided))})'
    if conf.injection_label in labels:
        return f'it is an injection ({conf.injection_label})'
    if conf.data_quality_veto_label in labels:
        return f'its data quality vetoes it ({conf.data_quality_veto_label})'
    return None


def plan_raven_preliminary(superevent, sent):
    """Why a superevent with the notices ``sent`` gets no preliminary
    alert for its RAVEN coincidence, or ``None``.

    The orchestrator sends the preliminary alert of a superevent whose
    preferred event passes the threshold when it is labelled
    ``EM_READY``; a sub-threshold one gets it here once it has both
    ``EM_READY`` (its preferred event has its products) and
    ``RAVEN_ALERT``, whichever comes last."""
    labels = superevent['labels']
    if RAVEN_ALERT not in labels:
        return 'it has no significant external coincidence'
    if app.conf.superevent_em_ready_label not in labels:
        return 'its preferred event is not complete yet'
    if passes_public_threshold(superevent['preferred_event_data']):
        return 'its preferred event passes the threshold by itself'
    if any(alert_type in PUBLIC_NOTICES for alert_type in sent):
        return 'a public notice already went out'
    return None


def plan_signoff(label, labels, sent):
    """What a sign-off result ``label`` (ADVOK or ADVNO) calls for:
    ``('Initial' or 'Retraction', None)``, or ``(None, why not)``."""
    conf = app.conf
    if 'Retraction' in sent:
        return None, 'its Retraction notice was already sent'
    public = [alert_type for alert_type in sent
              if alert_type in PUBLIC_NOTICES]
    if label == conf.advocate_no_label:
        if not public:
            return None, 'no public notice went out: nothing to retract'
        return 'Retraction', None
    if 'Initial' in sent:
        return None, 'its Initial notice was already sent'
    if conf.injection_label in labels:
        return None, 'it is an injection: never alerted publicly'
    if not public:
        return None, 'no notice went out for it: no Initial notice'
    return 'Initial', None


def plan_update(labels, sent):
    """Why an Update may not go out for a superevent, or ``None``."""
    conf = app.conf
    if 'Retraction' in sent or conf.advocate_no_label in labels:
        return 'it was retracted'
    if conf.injection_label in labels:
        return 'it is an injection'
    if not any(alert_type in PUBLIC_NOTICES for alert_type in sent):
        return 'no public notice went out for it'
    return None


def file_versions(log_entries):
    """Each file of a log, in order of its latest upload:
    ``{name: 'name,version'}``."""
    files = {}
    for entry in log_entries:
        if entry.get('filename'):
            files.pop(entry['filename'], None)
            files[entry['filename']] = (f"{entry['filename']},"
                                        f"{entry['file_version']}")
    return files


def resolve_filename(name, log_entries):
    """The versioned name (``name,N``) of a file of the log: the latest
    version if ``name`` gives none; ``None`` if there is no such file."""
    files = file_versions(log_entries)
    if ',' in name:
        base, _, version = name.rpartition(',')
        exists = any(entry.get('filename') == base
                     and str(entry.get('file_version')) == version
                     for entry in log_entries)
        return name if exists else None
    return files.get(name)


def latest_products(log_entries):
    """Versioned names (or ``None``) of the latest sky map (a FITS file
    tagged ``sky_loc``), source properties and classification of a
    superevent's log."""
    skymap = em_bright = p_astro = None
    for entry in log_entries:
        name = entry.get('filename') or ''
        versioned = f'{name},{entry.get("file_version")}'
        if name.endswith(FITS_SUFFIXES) and 'sky_loc' in (
                entry.get('tag_names') or ()):
            skymap = versioned
        elif name == 'em_bright.json':
            em_bright = versioned
        elif name.endswith('.p_astro.json'):
            p_astro = versioned
    return skymap, em_bright, p_astro


def log_numbers(log_entries, versioned_names):
    """The log entry numbers that uploaded these versioned files."""
    wanted = set(versioned_names) - {None}
    return [entry['N'] for entry in log_entries
            if f'{entry.get("filename")},{entry.get("file_version")}'
            in wanted]
