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

"""Accept only what qemu can use: glance_vsize and oslo.utils vs qemu-img.

Usage::

    .venv/bin/python tools/qemu_agreement.py [--count N] [--seed S]
        [--images DIR] [--head-bytes K] [--tail-bytes K] [--verbose]

Builds the project's generated corpus (``tests/imagegen.py``; or uses
``--images DIR`` with a ``manifest.json`` in the same format), keeps its
images of the formats both engines inspect (qcow2, vmdk, vhd, vhdx, vdi;
ploop too, which oslo.utils does not inspect), and makes ``--count``
variants, round robin over the images: each has 1 to K random bytes
(``--head-bytes``, default 4) of its first 4 KiB and 1 to K
(``--tail-bytes``, default 2) of its last 512 bytes replaced by random
values.  For each variant, with the image's disk_format D:

* qemu-img: ``qemu-img info -f D`` opens it (or not), and its size;
* glance_vsize: ``inspect_file(path, disk_format=D)``, default policy;
* oslo.utils (``format_inspector``, as Glance 33 uses it):
  ``detect_file_format()`` finds D, and ``safety_check()`` passes; the
  size is the inspector's ``virtual_size``.

A *disagreement* is a variant an engine accepts while qemu-img refuses to
open it, or accepts with a size qemu-img does not report.  Prints the
figures per format and in total; exits 1 when glance_vsize disagrees with
qemu-img on any variant.  Runtime is about 25 ms per variant (one
qemu-img run each).
"""

import argparse
import collections
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..'))

import glance_vsize  # noqa: E402

#: Formats of the comparison; oslo.utils has no ploop inspector.
FORMATS = ('qcow2', 'vmdk', 'vhd', 'vhdx', 'vdi', 'ploop')
OSLO_FORMATS = ('qcow2', 'vmdk', 'vhd', 'vhdx', 'vdi')
QEMU_NAME = {'vhd': 'vpc', 'ploop': 'parallels'}
HEAD, TAIL = 4096, 512


def qemu_size(path, fmt):
    proc = subprocess.run(
        ['qemu-img', 'info', '--output=json', '-f', QEMU_NAME.get(fmt, fmt),
         path], capture_output=True, text=True, timeout=60)
    if proc.returncode:
        return None
    return json.loads(proc.stdout)['virtual-size']


def ours(path, fmt):
    """(accepted, size or None, why)"""
    result = glance_vsize.inspect_file(path, fmt)
    return result.safe, result.virtual_size, result.describe()


def oslo(path, fmt):
    """(accepted, size or None, why), as Glance uses oslo.utils."""
    from oslo_utils.imageutils import format_inspector
    try:
        inspector = format_inspector.detect_file_format(path)
        if str(inspector) != fmt:
            return False, None, 'detected as %s' % inspector
        inspector.safety_check()
        return True, inspector.virtual_size, 'accepted'
    except (format_inspector.ImageFormatError,
            format_inspector.SafetyCheckFailed) as exc:
        return False, None, '%s: %s' % (type(exc).__name__, exc)
    except Exception as exc:    # an oslo.utils crash refuses the image too
        return False, None, 'crash %r' % exc


def disagreement(verdict, qemu):
    accepted, size, _why = verdict
    if not accepted:
        return None
    if qemu is None:
        return 'refused by qemu'
    if size != qemu:
        return 'size %s, qemu says %s' % (size, qemu)
    return None


def mutate(fd, size, rnd, head_bytes, tail_bytes):
    """Replace random bytes; returns the original bytes to restore."""
    spots = set()
    for _ in range(rnd.randint(1, head_bytes)):
        spots.add(rnd.randrange(min(HEAD, size)))
    for _ in range(rnd.randint(1, tail_bytes)):
        spots.add(rnd.randrange(max(0, size - TAIL), size))
    saved = []
    for at in sorted(spots):
        old = os.pread(fd, 1, at)
        new = bytes([(old[0] + rnd.randrange(1, 256)) % 256])
        os.pwrite(fd, new, at)
        saved.append((at, old))
    return saved


def images(args, tmp):
    if args.images:
        outdir = args.images
        with open(os.path.join(outdir, 'manifest.json')) as f:
            entries = json.load(f)
    else:
        from tests import imagegen
        outdir = os.path.join(tmp, 'corpus')
        entries = imagegen.build(outdir)
    chosen = [e for e in entries if e['disk_format'] in FORMATS and e['safe']]
    for entry in chosen:
        entry['path'] = os.path.join(outdir, entry['file'])
    return chosen


def run(args):
    rnd = random.Random(args.seed)
    counts = collections.defaultdict(collections.Counter)
    examples = []
    with tempfile.TemporaryDirectory() as tmp:
        entries = images(args, tmp)
        work = {}
        for n in range(args.count):
            entry = entries[n % len(entries)]
            fmt = entry['disk_format']
            path = work.get(entry['file'])
            if path is None:
                path = os.path.join(tmp, 'work-' + entry['file'])
                subprocess.run(['cp', '--sparse=always', entry['path'],
                                path], check=True)
                work[entry['file']] = path
            fd = os.open(path, os.O_RDWR)
            try:
                saved = mutate(fd, os.fstat(fd).st_size, rnd,
                               args.head_bytes, args.tail_bytes)
                qemu = qemu_size(path, fmt)
                verdicts = {'glance_vsize': ours(path, fmt)}
                if fmt in OSLO_FORMATS:
                    verdicts['oslo.utils'] = oslo(path, fmt)
                for at, old in saved:
                    os.pwrite(fd, old, at)
            finally:
                os.close(fd)
            for total in (counts[fmt], counts['all']):
                total['variants'] += 1
                total['qemu opens'] += qemu is not None
            for engine, verdict in verdicts.items():
                for total in (counts[fmt], counts['all']):
                    total[engine + ' variants'] += 1
                    total[engine + ' accepts'] += verdict[0]
                why = disagreement(verdict, qemu)
                if why:
                    for total in (counts[fmt], counts['all']):
                        total[engine + ' disagrees'] += 1
                        total[engine + ' disagrees: ' + why.split(',')[0]] \
                            += 1
                    examples.append('%s: %s variant %d of %s (%s)' % (
                        engine, fmt, n, entry['file'], why))
    return counts, examples


def report(counts, examples, verbose):
    def pct(part, whole):
        return '%.1f%%' % (100.0 * part / whole) if whole else '-'

    for fmt in FORMATS + ('all',):
        total = counts.get(fmt)
        if not total:
            continue
        print('%-6s %5d variants, qemu-img opens %5d (%s)' % (
            fmt, total['variants'], total['qemu opens'],
            pct(total['qemu opens'], total['variants'])))
        for engine in ('glance_vsize', 'oslo.utils'):
            seen = total[engine + ' variants']
            if not seen:
                print('       %-12s does not inspect %s' % (engine, fmt))
                continue
            print('       %-12s accepts %5d, disagrees with qemu-img on '
                  '%4d (%s of the variants it sees)' % (
                      engine, total[engine + ' accepts'],
                      total[engine + ' disagrees'],
                      pct(total[engine + ' disagrees'], seen)))
            for key in sorted(total):
                if key.startswith(engine + ' disagrees: '):
                    print('           %5d %s' % (
                        total[key], key[len(engine + ' disagrees: '):]))
    if verbose:
        for line in examples:
            print(line)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--count', type=int, default=1000,
                        help='variants to make (default 1000)')
    parser.add_argument('--seed', default='qemu-agreement')
    parser.add_argument('--images', help='a corpus directory with a '
                        'manifest.json (default: build tests/imagegen.py)')
    parser.add_argument('--head-bytes', type=int, default=4)
    parser.add_argument('--tail-bytes', type=int, default=2)
    parser.add_argument('--verbose', action='store_true',
                        help='list every disagreement')
    args = parser.parse_args(argv)
    if shutil.which('qemu-img') is None:
        parser.error('qemu-img (Debian qemu-utils) is needed')
    logging.disable(logging.CRITICAL)   # oslo.utils warns on every refusal
    counts, examples = run(args)
    report(counts, examples, args.verbose)
    return 1 if counts['all']['glance_vsize disagrees'] else 0


if __name__ == '__main__':
    sys.exit(main())
