#!/usr/bin/env python
"""Make the simulated CBC candidates that ``gwcelery.tasks.first2years``
uploads.

The signals are simulated with ligo.skymap, then each is split into one
``coinc.xml`` per pipeline, as the online searches upload them::

    export OMP_NUM_THREADS=2
    bayestar-sample-model-psd -o psd.xml --H1=aLIGO175MpcT1800545 \\
        --L1=aLIGO175MpcT1800545 --V1=AdVO4T1800545
    # samples.ecsv: mass1 mass2 spin1z spin2z of BNS, NSBH and BBH systems
    bayestar-inject --seed 1234 --distribution-samples samples.ecsv \\
        --waveform TaylorF2threePointFivePN --reference-psd psd.xml \\
        --max-distance 150 --nsamples 12 -j 2 -o inj.xml
    for seed in 1 2 3; do   # one noise realisation per pipeline
        bayestar-realize-coincs --seed $seed -j 2 --detector H1 L1 V1 \\
            --measurement-error gaussian-noise --net-snr-threshold 12 \\
            --snr-threshold 4 --reference-psd psd.xml \\
            -o coinc$seed.xml inj.xml
    done
    python tools/make_mock_events.py --psd psd.xml \\
        --coincs coinc1.xml coinc2.xml coinc3.xml --select 0 5 1 2 3 7 \\
        -o gwcelery/data/first2years

The output directory gets ``psd.xml.gz`` and, for signal ``N`` and
pipeline ``P``, ``N-P.xml.gz``: a single-candidate LIGO-LW document with
its ``combined_far`` set from the network SNR (the realisations carry
none). The mock searches put the PSDs into some of them when they upload
them (``gwcelery.tasks.first2years.UPLOAD_STYLES``).

``--embed-psds COINC PSD -o OUT`` instead writes ``COINC`` with the PSDs
of ``PSD`` inside, O4 style (``gwcelery.tasks.first2years.embed_psds``),
naming ``OUT`` as its ``--reference-psd`` so that
``bayestar-localize-coincs OUT`` reads them; this made
``tests/data/gracedb/coinc_psds.xml.gz``::

    python tools/make_mock_events.py --embed-psds \\
        tests/data/gracedb/coinc.xml tests/data/gracedb/psd.xml.gz \\
        -o tests/data/gracedb/coinc_psds.xml.gz
"""

import argparse
import gzip
import math
import os
import shutil

from igwn_ligolw import ligolw, lsctables, utils

PIPELINES = ('gstlal', 'pycbc', 'MBTA')

#: Tables copied whole into each single-candidate document.
SHARED_TABLES = (lsctables.ProcessTable, lsctables.ProcessParamsTable,
                 lsctables.SearchSummaryTable, lsctables.TimeSlideTable,
                 lsctables.CoincDefTable)

#: Tables whose rows are filtered down to one coincidence.
PER_COINC_TABLES = (lsctables.CoincTable, lsctables.CoincInspiralTable,
                    lsctables.CoincMapTable)


def far_from_snr(snr):
    """A plausible FAR (Hz) falling steeply with network SNR."""
    return max(1e-14, 10 ** (-4 - 0.5 * (snr - 8)))


def split(doc, coinc_id):
    """Return a new document holding only coincidence `coinc_id`."""
    out = ligolw.Document()
    out.appendChild(ligolw.LIGO_LW())
    for cls in SHARED_TABLES:
        table = cls.get_table(doc)
        copy = table.copy()
        copy.extend(table)
        out.childNodes[0].appendChild(copy)
    coinc_map = lsctables.CoincMapTable.get_table(doc)
    sngl_ids = {row.event_id for row in coinc_map
                if row.coinc_event_id == coinc_id}
    for cls in PER_COINC_TABLES:
        table = cls.get_table(doc)
        copy = table.copy()
        copy.extend(row for row in table if row.coinc_event_id == coinc_id)
        out.childNodes[0].appendChild(copy)
    sngl = lsctables.SnglInspiralTable.get_table(doc)
    copy = sngl.copy()
    copy.extend(row for row in sngl if row.event_id in sngl_ids)
    out.childNodes[0].appendChild(copy)
    for row in lsctables.CoincInspiralTable.get_table(out):
        row.combined_far = row.false_alarm_rate = far_from_snr(row.snr)
    return out


def write_with_psds(coinc_path, psd_path, output):
    """Write the ``coinc.xml`` at ``coinc_path`` with the PSDs of
    ``psd_path`` inside to ``output`` (gzip-compressed if it ends in
    ``.gz``), naming itself as its ``--reference-psd``."""
    from gwcelery.tasks.first2years import embed_psds

    with open(coinc_path, 'rb') as f:
        coinc = f.read()
    with open(psd_path, 'rb') as f:
        psd = f.read()
    contents = embed_psds(coinc, psd, reference_psd=os.path.basename(output))
    if output.endswith('.gz'):
        contents = gzip.compress(contents, mtime=0)
    with open(output, 'wb') as f:
        f.write(contents)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--psd')
    parser.add_argument('--coincs', nargs=len(PIPELINES),
                        help='one bayestar-realize-coincs output per '
                             'pipeline: ' + ', '.join(PIPELINES))
    parser.add_argument('--select', nargs='+', type=int,
                        help='coinc_event_ids of the signals to keep')
    parser.add_argument('--embed-psds', nargs=2, metavar=('COINC', 'PSD'),
                        help='write COINC with the PSDs of PSD inside')
    parser.add_argument('-o', '--output', required=True)
    args = parser.parse_args()
    if args.embed_psds:
        write_with_psds(*args.embed_psds, args.output)
        return
    if not (args.psd and args.coincs and args.select):
        parser.error('--psd, --coincs and --select are required')
    os.makedirs(args.output, exist_ok=True)
    with open(args.psd, 'rb') as src, \
            gzip.open(os.path.join(args.output, 'psd.xml.gz'), 'wb') as dst:
        shutil.copyfileobj(src, dst)
    for pipeline, filename in zip(PIPELINES, args.coincs, strict=True):
        doc = utils.load_filename(filename)
        for number, coinc_id in enumerate(args.select):
            path = os.path.join(args.output, f'{number}-{pipeline}.xml.gz')
            utils.write_filename(split(doc, coinc_id), path)
            print(path, math.floor(os.path.getsize(path) / 1024), 'KiB')


if __name__ == '__main__':
    main()
