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

"""Each header field of each format set to 0, 1, its maximum and a random
value (:mod:`tests.hardening.fields`, from the format modules' own struct
layouts; checksummed structures also with the checksum recomputed).

Every variant gets a named refusal or the right answer: when the engine
calls it safe, ``qemu-img info -f FORMAT`` opens the same bytes and
reports the same size.  And however much a field claims (header lengths,
descriptor sizes, table counts and offsets of gigabytes), the engine stays
within its bounds, measured rather than assumed:

* every ``pread`` of the seekable driver asks for at most ``MAX_REGION``
  bytes, at most :data:`MAX_READS` of them and :data:`READ_BOUND` bytes in
  all (the largest reads by design: a VHDX log searched for entries,
  32 MiB, and a VHDX BAT, 64 MiB, read 1 MiB at a time);
* the peak of Python allocations (tracemalloc) while inspecting stays
  under :data:`MEMORY_BOUND`, in both modes.
"""

import os
import random
import tracemalloc

import pytest

from glance_vsize.formats import base
from tests.hardening import fields
from tests.hardening import support

MiB = 1 << 20
READ_BOUND = 128 * MiB
MAX_READS = 256
MEMORY_BOUND = 8 * MiB

LONG = support.long_run()
RANDOMS = 4 if LONG else 1
#: The share of raw verdicts (length rounded up) checked with qemu-img.
RAW_SAMPLE = 1.0 if LONG else 0.1

#: The images whose fields are mutated, by format.
BASES = {
    'qcow2': ('qcow2-v0.10-c64k-s1.qcow2', 'qcow2-v1.1-c64k-s1.qcow2',
              'qcow2-zstd-s0.qcow2', 'qcow2-l2ext-s1.qcow2',
              'unsafe-qcow2-backing.qcow2', 'qcow2-luks.qcow2'),
    'qed': ('qed-s1.qed', 'unsafe-qed-backing.qed'),
    'vmdk': ('vmdk-monolithicSparse-ide-s1.vmdk',
             'vmdk-streamOptimized-ide-s1.vmdk',
             'data-vmdk-streamOptimized.vmdk'),
    'vhd': ('vhd-dynamic-forceoff-s1.vhd', 'vhd-fixed-forceoff-s0.vhd',
            'data-vhd-default.vhd'),
    'vhdx': ('vhdx-b32M-s1.vhdx', 'vhdx-fixed.vhdx'),
    'vdi': ('vdi-s1.vdi', 'vdi-static.vdi'),
    'ploop': ('ploop-s1.ploop', 'data-ploop-default.ploop'),
    'luks': ('luks.luks',),
    'raw': ('raw-gpt.raw', 'raw-mbr.raw', 'hybrid.iso'),
}
if LONG:
    BASES['qcow2'] += ('data-qcow2-default.qcow2',)
    BASES['vmdk'] += ('data-vmdk-default.vmdk',)
    BASES['vhdx'] += ('data-vhdx-default.vhdx',)
    BASES['vdi'] += ('data-vdi-default.vdi',)


def _by_file(corpus):
    return {e['file']: e for e in corpus[1]}


def _bounded(counter, where):
    problems = []
    if counter.largest > base.MAX_REGION:
        problems.append('%s: a read of %d bytes' % (where, counter.largest))
    if counter.requested > READ_BOUND or counter.calls > MAX_READS:
        problems.append('%s: %d reads asking for %d bytes in all'
                        % (where, counter.calls, counter.requested))
    return problems


def _peak(function, *args):
    tracemalloc.start()
    try:
        result = function(*args)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _raw_rule(result, length):
    return result.format in ('raw', 'iso') and \
        result.virtual_size == base.round_up(length)


def check_variant(fd, data, where, measure_memory, rnd):
    """Problems of one mutated image, ``data`` also in the memfd ``fd``,
    in both modes.
    """
    problems = []
    counter = support.ReadCounter()
    if measure_memory:
        result, peak = _peak(support.seekable_fd, fd, None,
                             support.ALL_FORMATS, None, counter)
        streamed, speak = _peak(support.streamed, data, 65536, None,
                                support.ALL_FORMATS)
        for mode, value in (('seekable', peak), ('stream', speak)):
            if value > MEMORY_BOUND:
                problems.append('%s [%s]: %d bytes allocated at the peak'
                                % (where, mode, value))
    else:
        result = support.seekable_fd(fd, None, support.ALL_FORMATS,
                                     counter=counter)
        streamed = support.streamed(data, 65536, None, support.ALL_FORMATS)
    problems += _bounded(counter, where)
    for mode, verdict in (('seekable', result), ('stream', streamed)):
        why = support.verdict_problem(verdict)
        if why:
            problems.append('%s [%s]: %s' % (where, mode, why))
    if streamed.safe and (not result.safe or (
            streamed.format, streamed.virtual_size) != (
            result.format, result.virtual_size)):
        problems.append('%s: streaming says %s, seekable %s'
                        % (where, streamed.describe(), result.describe()))
    # qemu's raw rule (length rounded up to 512) is checked on a sample.
    if result.safe and (not _raw_rule(result, len(data)) or
                        rnd.random() < RAW_SAMPLE):
        size = support.qemu_size(support.fd_path(fd), result.format)
        if size != result.virtual_size:
            problems.append('%s: %s, but qemu-img -f %s %s' % (
                where, result.describe(), result.format,
                'cannot open it' if size is None else 'says %d' % size))
    return problems


@pytest.mark.parametrize('fmt', sorted(BASES))
def test_every_header_field(corpus, fmt):
    entries = _by_file(corpus)
    problems = []
    count = 0
    # A first run outside the measurements (imports, caches).
    support.seekable(b'\0' * 4096, None, support.ALL_FORMATS)
    for number, name in enumerate(BASES[fmt]):
        entry = entries[name]
        with open(entry['path'], 'rb') as f:
            image = f.read()
        rnd = random.Random('%s/%d' % (name, number))
        fd = support.memfd(image)
        try:
            for field, value in fields.mutations(
                    entry['disk_format'] if fmt != 'raw' else 'raw', image,
                    rnd.random(), RANDOMS):
                data = fields.mutate(image, field, value)
                patches = fields.changed(image, data, field)
                for at, length in patches:
                    os.pwrite(fd, data[at:at + length], at)
                where = '%s %r=%r' % (name, field, value)
                # Memory is measured for the values that claim the most.
                big = field.code != 's' and value > 1
                problems += check_variant(fd, data, where, big, rnd)
                for at, length in patches:
                    os.pwrite(fd, image[at:at + length], at)
                count += 1
        finally:
            os.close(fd)
    assert count > 0
    assert problems == []


def test_fields_cover_every_format(corpus):
    """The field lists reach deep: every format's mutations include more
    than its magic, and the checksummed structures are re-checksummed.
    """
    entries = _by_file(corpus)
    for fmt, names in BASES.items():
        for name in names:
            entry = entries[name]
            with open(entry['path'], 'rb') as f:
                image = f.read()
            listed = fields.fields_of(
                entry['disk_format'] if fmt != 'raw' else 'raw', image)
            assert len(listed) >= 4, name
    vhdx_image = open(entries['vhdx-b32M-s1.vhdx']['path'], 'rb').read()
    names = {'%s.%s' % (f.where, f.name)
             for f in fields.fields_of('vhdx', vhdx_image)}
    assert 'vhdx File Parameters.block_size' in names
    assert 'vhdx region 0+crc.length' in names


def test_random_values_are_seeded():
    one = list(fields.Field('x', 'y', 0, 'I', 4, '<', None).values(
        random.Random(1), 3))
    two = list(fields.Field('x', 'y', 0, 'I', 4, '<', None).values(
        random.Random(1), 3))
    assert one == two and one[:3] == [0, 1, 0xffffffff]


def test_memory_bound_is_measured():
    """tracemalloc sees what the engine holds: a VMDK descriptor file
    without a NUL is read up to its 1 MiB limit, held in memory (the
    image itself is in a memfd, outside the Python heap).
    """
    data = b'# Disk DescriptorFile\n' + b'x' * (2 * MiB)
    _result, peak = _peak(support.seekable, data, None, support.ALL_FORMATS)
    assert MiB <= peak <= MEMORY_BOUND
