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


"""The ranged driver: the seekable driver's verdicts on real qemu-img
images, for at most 2 MiB read whatever the virtual size.
"""

import os
import re

import pytest

import glance_vsize
from glance_vsize import ranged
from tests import containergen
from tests import helpers
from tests import imagegen

MiB = 1 << 20
#: The issue's target for any image that is not a container.
BUDGET = 2 * MiB
GIB = 1 << 30


@pytest.fixture(scope='module')
def generated(tmp_path_factory):
    outdir = tmp_path_factory.mktemp('generated-ranged')
    return outdir, imagegen.build(str(outdir))


class Store:
    """A file read by offset, recording every read (a store's view)."""

    def __init__(self, path):
        self.path = str(path)
        self.length = os.path.getsize(self.path)
        self.reads = []

    def read_at(self, offset, length):
        self.reads.append((offset, length))
        with open(self.path, 'rb') as f:
            return os.pread(f.fileno(), length, offset)

    def inspect(self, disk_format=None, container_format=None):
        return ranged.inspect_image(self.length, read_at=self.read_at,
                                    disk_format=disk_format,
                                    container_format=container_format)


def _table_bytes(entry):
    """The VHDX block allocation table that qemu reads whole: 8 bytes per
    block (the one part of a read that grows with the disk).
    """
    found = re.match(r'vhdx-b(\d+)M-', entry['file'])
    if not found:
        return 0
    return 8 * -(-entry['virtual_size'] // (int(found.group(1)) * MiB))


@helpers.requires_qemu_img
def test_generated_images_agree_with_seekable_and_qemu(generated):
    outdir, entries = generated
    misses = []
    for entry in entries:
        path = os.path.join(outdir, entry['file'])
        for declared in (entry['disk_format'], None):
            got = Store(path).inspect(declared).inspection
            want = glance_vsize.inspect_file(path, declared)
            if got != want:
                misses.append('%s: ranged %s, seekable %s' % (
                    entry['file'], got.describe(), want.describe()))
            elif entry['safe'] and (got.virtual_size, got.safe) != (
                    entry['virtual_size'], True):
                misses.append('%s: %s, qemu-img says %d' % (
                    entry['file'], got.describe(), entry['virtual_size']))
            elif not entry['safe'] and got.safe:
                misses.append('%s: accepted (%s)' % (entry['file'],
                                                     entry['why']))
    assert misses == []


@helpers.requires_qemu_img
def test_at_most_2_mib_read_per_image(generated):
    outdir, entries = generated
    over = []
    for entry in entries:
        store = Store(os.path.join(outdir, entry['file']))
        result = store.inspect(entry['disk_format'])
        assert result.bytes_read == sum(
            min(n, store.length - o) for o, n in store.reads)
        assert result.mode == 'ranged'
        budget = BUDGET + _table_bytes(entry)
        if result.bytes_read > budget:
            over.append('%s: %d bytes in %d reads' % (
                entry['file'], result.bytes_read, result.reads))
    assert over == []


@helpers.requires_qemu_img
@pytest.mark.parametrize('fmt,opts', [
    ('qcow2', ''), ('qcow2', 'cluster_size=2M'), ('vmdk', ''),
    ('vmdk', 'subformat=streamOptimized'), ('vhd', ''), ('vhdx', ''),
    ('vdi', ''), ('ploop', ''), ('qed', '')])
def test_900_gib_costs_a_few_small_reads(tmp_path, fmt, opts):
    path = helpers.create(tmp_path / ('big.' + fmt), fmt, 900 * GIB, opts)
    store = Store(path)
    result = store.inspect(fmt)
    expected = glance_vsize.inspect_file(path, fmt)
    assert result.inspection == expected
    if fmt != 'qed':        # measured, but not a Glance disk format
        assert result.inspection.safe
        assert result.inspection.virtual_size == \
            helpers.qemu_info(path, fmt)['virtual-size']
    assert result.bytes_read <= BUDGET, store.reads
    # Requests close together share a read: a handful at most (the block
    # allocation tables of VHD and VHDX are read in 256 KiB regions).
    assert result.reads <= (10 if fmt in ('vhd', 'vhdx') else 4), \
        store.reads


@helpers.requires_qemu_img
def test_requests_of_all_probes_share_reads(tmp_path):
    path = helpers.create(tmp_path / 'a.qcow2', 'qcow2', 900 * GIB)
    store = Store(path)
    store.inspect('qcow2')
    # Every probe asks for the head: one read serves all of them, and no
    # byte is read twice.
    assert store.reads[0][0] == 0
    spans = sorted((o, o + n) for o, n in store.reads)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans


@helpers.requires_qemu_img
def test_unsafe_image_refused_as_by_seekable(tmp_path):
    helpers.create(tmp_path / 'base.qcow2', 'qcow2', GIB)
    path = helpers.create(tmp_path / 'child.qcow2', 'qcow2', GIB,
                          'backing_file=base.qcow2,backing_fmt=qcow2')
    result = Store(path).inspect('qcow2')
    assert 'backing_file' in result.inspection.failures
    assert result.bytes_read <= BUDGET


@helpers.requires_qemu_img
@pytest.mark.parametrize('tool', ['gzip', 'xz'])
def test_compressed_container_is_streamed(tmp_path, tool):
    path = helpers.create(tmp_path / 'd.qcow2', 'qcow2', 3 * GIB)
    packed = containergen.compress(path, tool)
    store = Store(packed)
    result = store.inspect('qcow2', 'compressed')
    assert result.mode == 'streamed'
    assert result.bytes_read == store.length
    assert result.inspection.safe
    assert result.inspection.virtual_size == \
        helpers.qemu_info(path, 'qcow2')['virtual-size']
    # Read front to back, in order.
    assert [o for o, _ in store.reads] == sorted(o for o, _ in store.reads)


@helpers.requires_qemu_img
def test_ova_is_streamed(tmp_path):
    pkg = tmp_path / 'pkg'
    pkg.mkdir()
    disk = helpers.create(pkg / 'disk.vmdk', 'vmdk', 20 * GIB,
                          'subformat=streamOptimized')
    path = containergen.ova(tmp_path / 'vm.ova', pkg, [
        ('disk.vmdk', 20 * GIB, containergen.VMDK_STREAM)])
    result = Store(path).inspect('vmdk', 'ova')
    assert result.mode == 'streamed'
    assert result.inspection.safe, result.inspection.describe()
    assert result.inspection.virtual_size == 20 * GIB == \
        helpers.qemu_info(disk, 'vmdk')['virtual-size']


@helpers.requires_qemu_img
def test_store_that_cannot_seek_is_streamed(tmp_path):
    path = helpers.create(tmp_path / 'a.vhd', 'vhd', 5 * GIB)
    result = ranged.inspect_image(os.path.getsize(path),
                                  chunks=helpers.chunked(path, 65536),
                                  disk_format='vhd')
    assert result.mode == 'streamed'
    assert result.inspection == glance_vsize.inspect_file(path, 'vhd')


@helpers.requires_qemu_img
def test_short_store_read_is_an_error_not_a_verdict(tmp_path):
    path = helpers.create(tmp_path / 'a.qcow2', 'qcow2', GIB)
    store = Store(path)
    # The catalogue says the image is longer than the store's object.
    with pytest.raises(ranged.RangedReadError, match='returned'):
        ranged.inspect_ranged(store.read_at, store.length + 4 * MiB,
                              'qcow2')


def test_store_errors_propagate():
    def broken(offset, length):
        raise OSError('connection reset')
    with pytest.raises(OSError, match='connection reset'):
        ranged.inspect_ranged(broken, 10 * MiB)


def test_empty_image_reads_nothing():
    result = ranged.inspect_ranged(lambda o, n: b'', 0, 'raw')
    assert (result.bytes_read, result.reads) == (0, 0)
    assert result.inspection.format == 'raw'


def test_inspect_image_needs_a_source():
    with pytest.raises(ValueError, match='read_at or chunks'):
        ranged.inspect_image(10)
