"""The table that every fault bench prints."""

import argparse
import math
import os

#: Columns of a row: the scenario, how many trials, the alerts (or tasks,
#: or notices) sent, handled, lost and duplicated, the longest time to
#: recover in seconds (NaN: not measured), and a note.
HEADER = ('scenario', 'trials', 'sent', 'handled', 'lost', 'dup',
          'recovery s', 'note')


def format_cell(cell):
    """A cell as printed: a recovery time to a tenth of a second."""
    if isinstance(cell, float):
        return '-' if math.isnan(cell) else f'{cell:.1f}'
    return str(cell)


def print_table(rows):
    """Print `rows` under :data:`HEADER`, then the load average."""
    print(' | '.join(HEADER))
    for row in rows:
        print(' | '.join(format_cell(cell) for cell in row))
    load = ', '.join(f'{value:.2f}' for value in os.getloadavg())
    print(f'load average: {load}')


def command_line(doc, add_arguments, run):
    """A fault bench's command: its options (``add_arguments``) parsed
    from the command line, then ``run``, then its table; `doc` is the
    bench's docstring, whose first line describes the command."""
    parser = argparse.ArgumentParser(description=doc.split('\n')[0])
    add_arguments(parser)
    print_table(run(parser.parse_args()))
