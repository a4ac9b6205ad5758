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

"""Backfill rate (issue 14): ``glance-vsize backfill`` on a catalogue of
N images (default 200) that a Glance without glance_vsize filled.

Usage::

    .venv/bin/python -m tools.bench.backfill [--images N]
        [--concurrency N] [--workdir DIR]

The images are qemu-img's (qcow2, vmdk, vhd, vhdx, vdi, ploop, raw) of
1 GiB to 900 GiB virtual size, uploaded through the API of a
``tools/run-glance --no-vsize`` on a free port.  Printed: the command's
wall-clock time with and without its start-up (a run that selects no
image), images per second, and bytes read per image (mean, largest, per
format) against the image's own size (what a streaming read costs).  It
measures, it does not test: exit status 0.
"""

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from . import REPO

GiB = 1 << 30
MiB = 1 << 20
VENV_BIN = os.path.join(REPO, '.venv', 'bin')
SIZES = (GiB, 10 * GiB + 512 * 12345, 100 * GiB, 900 * GiB)
FORMATS = (('qcow2', 'qcow2', ''), ('vmdk', 'vmdk',
                                    'subformat=streamOptimized'),
           ('vhd', 'vpc', ''), ('vhdx', 'vhdx', ''), ('vdi', 'vdi', ''),
           ('ploop', 'parallels', ''))


def make_images(workdir):
    """(path, disk_format): sparse images of every format and size, and
    a raw disk.
    """
    made = []
    for fmt, qemu, opts in FORMATS:
        for size in SIZES:
            path = os.path.join(workdir, '%s-%d.%s' % (fmt, size, fmt))
            cmd = ['qemu-img', 'create', '-q', '-f', qemu]
            if opts:
                cmd += ['-o', opts]
            subprocess.run(cmd + [path, str(size)], check=True)
            made.append((path, fmt))
    raw = os.path.join(workdir, 'disk.raw')
    with open(raw, 'wb') as f:
        f.truncate(8 * MiB)
    made.append((raw, 'raw'))
    return made


def start_glance(workdir):
    sys.path.insert(0, REPO)
    from tests.functional import glance as glance_mod
    return glance_mod.Glance(os.path.join(workdir, 'glance'),
                             extra_args=['--no-vsize'])


def run_backfill(glance, *args):
    started = time.monotonic()
    proc = subprocess.run(
        [os.path.join(VENV_BIN, 'glance-vsize'), 'backfill', '--config-dir',
         os.path.join(glance.data_dir, 'etc'), '--json'] + list(args),
        capture_output=True, text=True)
    elapsed = time.monotonic() - started
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    return elapsed, rows, proc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=200)
    parser.add_argument('--concurrency', type=int, default=4)
    parser.add_argument('--workdir')
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix='bench-backfill-')
    os.makedirs(workdir, exist_ok=True)
    images = make_images(workdir)
    glance = start_glance(workdir)
    try:
        sizes = {}
        t0 = time.monotonic()
        for i in range(args.images):
            path, fmt = images[i % len(images)]
            image_id = glance.create(fmt, name=os.path.basename(path))
            glance.upload(image_id, path)
            sizes[image_id] = (fmt, os.path.getsize(path))
        print('catalogue: %d images uploaded in %.1f s (Glance without '
              'glance_vsize)' % (args.images, time.monotonic() - t0))
        idle, _rows, _proc = run_backfill(glance, '--image', 'none')
        elapsed, rows, proc = run_backfill(
            glance, '--all', '--concurrency', str(args.concurrency))
    finally:
        glance.stop()
    done = [r for r in rows if r['action'] in ('set', 'unchanged')]
    work = max(elapsed - idle, 1e-6)
    print('backfill --all --concurrency %d: %d images in %.2f s (start-up '
          '%.2f s): %.1f images/s without start-up, %.1f with'
          % (args.concurrency, len(rows), elapsed, idle, len(rows) / work,
             len(rows) / elapsed))
    print('actions: %s; exit status %d' % (dict(collections.Counter(
        r['action'] for r in rows)), proc.returncode))
    read = [r['bytes_read'] for r in rows]
    print('bytes read per image: mean %.1f KiB, median %.1f KiB, largest '
          '%.1f KiB; the images themselves: mean %.1f KiB'
          % (statistics.mean(read) / 1024, statistics.median(read) / 1024,
             max(read) / 1024, statistics.mean(
                 s for _f, s in sizes.values()) / 1024))
    by_format = collections.defaultdict(list)
    for r in rows:
        by_format[r['disk_format']].append(r['bytes_read'])
    for fmt, values in sorted(by_format.items()):
        print('  %-6s %3d images, %8.1f KiB read at most (target 2048 KiB)'
              % (fmt, len(values), max(values) / 1024))
    print('sized (set or unchanged): %d of %d' % (len(done), len(rows)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
