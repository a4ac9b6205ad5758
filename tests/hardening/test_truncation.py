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

"""Every generated image cut at every 512-byte boundary of its first
4 MiB, and at a seeded sample of points after.

The oracle is qemu-img on the *truncated* bytes: they are what Glance
stores and what a compute node's ``qemu-img info`` reads.  (The original
image's size would be wrong for raw disks and for a fixed VHD that lost
its footer, which both become raw disks of the cut's length; and a cut
that qemu refuses must not be called safe even with the original size.)
So a verdict of safe must give the size ``qemu-img info -f FORMAT``
reports for the cut; any other verdict must name its checks; no verdict
may come from an exception.

qemu-img is not run on all ~430,000 cuts.  The engine's verdict on every
cut is one of:

* safe, with the original format and size (most cuts of a container
  whose header survived): qemu-img checks the smallest such cut of each
  image (the most truncated one accepted) and a seeded sample;
* safe as raw (or ISO), with the cut's length rounded up to 512 bytes:
  qemu's raw rule, checked by qemu-img on the smallest, the largest and a
  sampled cut of each image;
* safe with any other size or format: qemu-img checks every one;
* refused: the refusal names its checks.

The verdict on every cut comes from :class:`support.CutInspector` (the
engine's probes and ``decide``, answered as ``inspect_fd`` answers);
``inspect_fd`` itself and the streaming driver (two chunk sizes) run on
the cuts where the verdict changes and on a seeded sample, and must agree
with it.  ``HYPOTHESIS_PROFILE=long`` (``tools/fuzz --long``) widens every
sample.
"""

import collections
import functools
import multiprocessing
import os
import random

import pytest

from glance_vsize.formats import base
from glance_vsize.formats import crc32c
from glance_vsize import seekable as seekable_mod
from tests.hardening import support

HEAD = 4 << 20
CHUNKS = (4096 + 7, 65536)
RAW_LIKE = ('raw', 'iso')

LONG = support.long_run()
#: Cuts sampled after the first 4 MiB, per image.
SAMPLED_AFTER = 256 if LONG else 16
#: Cuts per image checked with qemu-img besides the smallest ones.
QEMU_SAMPLE = 64 if LONG else 2
#: Cuts per image run through the real drivers besides the transitions.
DRIVER_SAMPLE = 512 if LONG else 4
MAX_TRANSITIONS = 10 ** 6 if LONG else 12

WORKERS = max(1, min(2, os.cpu_count() or 1))

FORMAT_GROUPS = {
    'qcow2': ('qcow2',), 'vmdk': ('vmdk',), 'vhd': ('vhd',),
    'vhdx': ('vhdx',), 'vdi': ('vdi',), 'ploop': ('ploop',),
    'other': ('qed', 'luks', 'raw', 'iso'),
}


def cuts_of(entry, rnd):
    size = entry['size']
    cuts = list(range(0, min(size, HEAD), base.SECTOR))
    if size > HEAD:
        cuts += sorted({rnd.randrange(HEAD, size)
                        for _ in range(SAMPLED_AFTER)})
    return cuts


def classify(entry, cut, result):
    """'kept', 'raw', 'other' for a safe verdict, else None."""
    if not result.safe:
        return None
    if (result.format, result.virtual_size) == (entry['disk_format'],
                                                entry['virtual_size']):
        return 'kept'
    if result.format in RAW_LIKE and \
            result.virtual_size == base.round_up(cut):
        return 'raw'
    return 'other'


def check_image(entry, rnd):
    """Returns a list of problems (strings) for one image."""
    problems = []
    fmt = entry['disk_format']
    fd = os.open(entry['path'], os.O_RDONLY)
    try:
        cutter = support.CutInspector(fd, policy=support.ALL_FORMATS)
        verdicts = {}
        for cut in cuts_of(entry, rnd):
            probes = cutter.probes(cut)
            for declared in (None, fmt):
                try:
                    result = cutter.verdict(cut, declared, probes)
                except Exception as exc:    # the engine's bug, reported
                    problems.append('%s cut %d declared %s: %r'
                                    % (entry['file'], cut, declared, exc))
                    continue
                why = support.verdict_problem(result)
                if why:
                    problems.append('%s cut %d declared %s: %s'
                                    % (entry['file'], cut, declared, why))
                verdicts[cut, declared] = result
            plain, declared = verdicts.get((cut, None)), verdicts.get(
                (cut, fmt))
            if plain and declared and declared.safe and (
                    not plain.safe or plain.virtual_size !=
                    declared.virtual_size):
                problems.append('%s cut %d: safe as %s (%s) but %s without '
                                'a declared format' % (
                                    entry['file'], cut, fmt,
                                    declared.describe(), plain.describe()))
    finally:
        os.close(fd)
    cuts = sorted({cut for cut, _ in verdicts})
    plain = {cut: verdicts[cut, None] for cut in cuts
             if (cut, None) in verdicts}
    problems += _check_qemu(entry, plain, rnd)
    problems += _check_drivers(entry, plain, rnd)
    return problems


def _qemu_cuts(entry, plain, rnd):
    groups = collections.defaultdict(list)
    for cut, result in plain.items():
        kind = classify(entry, cut, result)
        if kind:
            groups[kind].append(cut)
    chosen = set(groups['other'])
    for kind in ('kept', 'raw'):
        found = groups[kind]
        if found:
            chosen.update((found[0], found[-1]))
            chosen.update(rnd.sample(found, min(QEMU_SAMPLE, len(found))))
    return sorted(chosen, reverse=True)


def _check_qemu(entry, plain, rnd):
    problems = []
    with support.truncated_copy(entry['path']) as copy:
        for cut in _qemu_cuts(entry, plain, rnd):
            result = plain[cut]
            os.truncate(copy, cut)
            size = support.qemu_size(copy, result.format)
            if size != result.virtual_size:
                problems.append(
                    '%s cut %d: %s, but qemu-img -f %s says %s' % (
                        entry['file'], cut, result.describe(),
                        result.format, 'it cannot open it' if size is None
                        else size))
    return problems


def _driver_cuts(plain, rnd):
    cuts = sorted(plain)
    changes = [cut for prev, cut in zip(cuts, cuts[1:])
               if not support.same_verdict(plain[prev], plain[cut])]
    changes = changes[:MAX_TRANSITIONS]
    index = {cut: i for i, cut in enumerate(cuts)}
    chosen = set(changes)
    chosen.update(cuts[index[cut] - 1] for cut in changes)
    chosen.update(rnd.sample(cuts, min(DRIVER_SAMPLE, len(cuts))))
    return sorted(chosen, reverse=True)


def _check_drivers(entry, plain, rnd):
    problems = []
    with support.truncated_copy(entry['path']) as copy:
        for cut in _driver_cuts(plain, rnd):
            expected = plain[cut]
            os.truncate(copy, cut)
            fd = os.open(copy, os.O_RDONLY)
            try:
                real = seekable_mod.inspect_fd(fd, None, support.ALL_FORMATS)
            finally:
                os.close(fd)
            if not support.same_verdict(real, expected):
                problems.append('%s cut %d: inspect_fd says %s, the cut '
                                'driver %s' % (entry['file'], cut,
                                               real.describe(),
                                               expected.describe()))
            for chunk in CHUNKS:
                streamed = support.stream_file(copy, cut, chunk, None,
                                               support.ALL_FORMATS)
                why = support.verdict_problem(streamed)
                if why:
                    problems.append('%s cut %d stream/%d: %s' % (
                        entry['file'], cut, chunk, why))
                elif streamed.safe and (
                        not real.safe or
                        (streamed.format, streamed.virtual_size) !=
                        (real.format, real.virtual_size)):
                    problems.append(
                        '%s cut %d stream/%d: %s, but seekable: %s' % (
                            entry['file'], cut, chunk, streamed.describe(),
                            real.describe()))
    return problems


def _memoize_crc():
    # VHDX probes re-run on every cut (they ask for the image's length):
    # their CRC-32C of the same 64 KiB region table is remembered.
    crc32c.crc32c = functools.lru_cache(maxsize=16)(crc32c.crc32c)


def _check_entry(args):
    entry, seed = args
    return check_image(entry, random.Random(seed))


@pytest.mark.parametrize('group', sorted(FORMAT_GROUPS))
def test_every_cut_is_sized_like_qemu_or_refused(corpus, group):
    _outdir, entries = corpus
    chosen = [e for e in entries if e['disk_format'] in FORMAT_GROUPS[group]]
    assert chosen
    jobs = [(entry, '%s/%d' % (entry['file'], number))
            for number, entry in enumerate(chosen)]
    # Images are independent: two worker processes share them.
    context = multiprocessing.get_context('fork')
    with context.Pool(WORKERS, initializer=_memoize_crc) as pool:
        results = pool.map(_check_entry, jobs, chunksize=1)
    problems = [problem for found in results for problem in found]
    assert problems == []
