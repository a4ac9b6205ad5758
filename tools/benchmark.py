#!/usr/bin/env python3
#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""What inspection costs, side by side with what it is measured against.

Usage (after ``tools/setup-venv`` or one ``tools/run-glance``, which create
``.venv``)::

    .venv/bin/python tools/benchmark.py [--quick] [--only 1,2,3,4]
                                        [--runs N] [--workdir DIR]
                                        [--json FILE]

Four sections, each figure printed beside its anchor as a ratio, with the
issue's target and PASS/MISS (the script always exits 0: it measures, it
does not test):

1. Streaming overhead per chunk (64 KiB and 1 MiB chunks) over a 4 GiB
   in-memory stream per format: a bare ``read`` loop, the same loop through
   ``glance_vsize.InspectingReader`` (as the paste filter builds it) and
   through oslo.utils' ``InspectWrapper`` (as Glance builds it), and a
   sha512 pass.  The stream is the real bytes of a qemu-img image (xorriso
   for ISO) followed by one reused chunk-sized buffer, and the image's
   trailer where it has one: never 4 GiB in RAM.  Figures are the median
   per-chunk cost over batches of chunks after the header phase, minus the
   bare loop's.
2. Extra memory held (tracemalloc peak minus the bare loop's) streaming
   1 GiB and 3 TiB images: the real files of the sparse formats (read in
   fresh 1 MiB chunks, as a WSGI input does), a generator for raw-data
   formats, and the ova and compressed containers when ``InspectingReader``
   takes ``container_format``.
3. Seekable inspection (``glance_vsize.inspect_file``) against a
   ``qemu-img info --output=json`` subprocess on sparse images of 1 GiB,
   100 GiB and 3 TiB virtual size.
4. End to end against a real Glance (``tools/run-glance``, and
   ``tools/run-glance --no-vsize`` for the same Glance without
   glance_vsize): a 1 GiB qcow2 through create-image and through import,
   median of ``--runs``; and how many bytes of an unsafe 1 GiB upload reach
   the store before the refusal.

5. A 2 GiB qcow2 uploaded to the RBD store (``tools/run-glance --store
   rbd``) with and without glance_vsize, create-image and import, median
   of ``--runs`` (only with ``--only 5``: it starts two Ceph clusters).

``--quick`` shortens sections 1 and 2 (1 GiB streams, fewer sha512
batches, 4 MiB chunks for the 3 TiB generators) and runs section 4 three
times.  Section 4 needs a free minute and about 4 GiB in the work
directory (default: a temporary directory in /dev/shm when it has room, so
the figures measure CPU, not disk).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PY = os.path.join(REPO, '.venv', 'bin', 'python')
TOOLS = os.path.join(REPO, 'tools')

try:
    from oslo_utils.imageutils import format_inspector  # noqa: F401
except ImportError:
    if os.path.exists(VENV_PY) and \
            os.path.realpath(sys.executable) != os.path.realpath(VENV_PY):
        os.execv(VENV_PY, [VENV_PY] + sys.argv)
    sys.exit('benchmark: oslo.utils is not installed; run tools/setup-venv, '
             'then .venv/bin/python tools/benchmark.py')

for path in (REPO, TOOLS):      # glance_vsize and tests; the bench package
    if path not in sys.path:
        sys.path.insert(0, path)

from bench.glance import section_glance  # noqa: E402
from bench.memory import section_memory  # noqa: E402
from bench.rbd import section_rbd  # noqa: E402
from bench.report import GiB  # noqa: E402
from bench.report import load  # noqa: E402
from bench.report import machine  # noqa: E402
from bench.report import out  # noqa: E402
from bench.report import RESULTS  # noqa: E402
from bench.report import table  # noqa: E402
from bench.seekable import section_seekable  # noqa: E402
from bench.streaming import section_streaming  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='Sections: 1 streaming, 2 memory, 3 seekable, 4 Glance, '
               '5 RBD (not run by default).')
    parser.add_argument('--quick', action='store_true',
                        help='smaller streams, fewer runs (a few minutes)')
    parser.add_argument('--only', default='1,2,3,4',
                        help='comma-separated sections to run (5: a 2 GiB '
                             'upload to RBD, about 20 minutes)')
    parser.add_argument('--runs', type=int,
                        help='end-to-end runs per configuration (5; 3 with '
                             '--quick)')
    parser.add_argument('--workdir',
                        help='where images and Glance data go (default: a '
                             'temporary directory, removed at the end)')
    parser.add_argument('--json', help='also write the figures to FILE')
    args = parser.parse_args(argv)
    sections = {s.strip() for s in args.only.split(',') if s.strip()}
    if not shutil.which('qemu-img'):
        sys.exit('benchmark: qemu-img is needed (Debian: qemu-utils)')

    workdir = args.workdir
    cleanup = workdir is None
    if workdir is None:
        parent = None
        try:
            st = os.statvfs('/dev/shm')
            if st.f_bavail * st.f_frsize > 8 * GiB:
                parent = '/dev/shm'
        except OSError:
            pass
        workdir = tempfile.mkdtemp(prefix='glance-vsize-bench-', dir=parent)
    os.makedirs(workdir, exist_ok=True)
    started = time.time()
    out('glance_vsize benchmark (issue 5)%s, %s' % (
        ' --quick' if args.quick else '',
        time.strftime('%Y-%m-%d %H:%M:%S')))
    machine()
    try:
        if '1' in sections:
            section_streaming(args, workdir)
        if '2' in sections:
            section_memory(args, workdir)
        if '3' in sections:
            section_seekable(args, workdir)
        if '4' in sections:
            section_glance(args, workdir)
        if '5' in sections:
            section_rbd(args, workdir)
    finally:
        if cleanup:
            shutil.rmtree(workdir, ignore_errors=True)
    out()
    load()
    out('Targets (issue 5):')
    table(['target', 'measured', 'result'],
          [[t['target'], t['shown'], 'PASS' if t['pass'] else 'MISS']
           for t in RESULTS['targets']])
    out('Total time %.0f s' % (time.time() - started))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(RESULTS, f, indent=1, default=str)
    return 0


if __name__ == '__main__':
    sys.exit(main())
