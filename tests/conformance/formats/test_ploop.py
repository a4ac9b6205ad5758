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

"""ploop (qemu's parallels): real images from qemu-img, hostile headers."""

import functools
import os
import random
import struct

import pytest

import glance_vsize
from glance_vsize.formats import base
from glance_vsize.formats import ploop
from tests import helpers

pytestmark = helpers.requires_qemu_img

GiB = 1 << 30
SIZES = (1 << 20, GiB + 512, 10 * GiB + 12345 * 512, 3 << 40, 1000001, 0)
LEGACY = b'WithoutFreeSpace'


def patch(src, dst, *edits):
    return helpers.patch_fields(src, dst, ploop, *edits)


assert_consistent = functools.partial(helpers.assert_hostile,
                                      disk_format='ploop')


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    return helpers.create(tmp_path_factory.mktemp('ploop') / 'base.hds',
                          'ploop', GiB)


@pytest.mark.parametrize('size', SIZES)
def test_sizes(tmp_path, size):
    path = helpers.create(tmp_path / 'p.hds', 'ploop', size)
    helpers.assert_like_qemu(path, 'ploop', variant='ext')


@pytest.mark.parametrize('cluster', ('512', '4k', '64k', '2M', '1000k'))
def test_cluster_sizes(tmp_path, cluster):
    path = helpers.create(tmp_path / 'c.hds', 'ploop', GiB + 512,
                          'cluster_size=%s' % cluster)
    helpers.assert_like_qemu(path, 'ploop')


def test_preallocated(tmp_path):
    path = helpers.create(tmp_path / 'f.hds', 'ploop', 10 << 20,
                          'preallocation=full')
    helpers.assert_like_qemu(path, 'ploop')


@pytest.mark.parametrize('opts', ('', 'cluster_size=64k'))
def test_data(tmp_path, opts):
    raw = tmp_path / 'data.raw'
    rng = random.Random(3)
    with open(raw, 'wb') as f:
        for i in range(48):
            f.write(rng.randbytes(65536) if i % 3 else bytes(65536))
        f.write(b'tail' * 100)         # not a whole sector
    path = str(tmp_path / 'data.hds')
    cmd = ['convert', '-O', 'parallels'] + (['-o', opts] if opts else [])
    helpers.qemu_img(*(cmd + [str(raw), path]))
    info = helpers.assert_like_qemu(path, 'ploop')
    assert info['virtual-size'] == base.round_up(os.path.getsize(raw))


@pytest.mark.parametrize('nb_sectors,size', [
    (2097152, GiB),
    ((1 << 33) + 5, 5 * 512),          # only the low 32 bits count
    (0xffffffff, 0xffffffff * 512),
])
def test_legacy_magic(tmp_path, image, nb_sectors, size):
    path = patch(image, tmp_path / 'old.hds', (0, LEGACY),
                 ('nb_sectors', nb_sectors))
    info = helpers.assert_like_qemu(path, 'ploop', variant='legacy')
    assert info['virtual-size'] == size


@pytest.mark.parametrize('edits', [
    [('data_off', 0)], [('data_off', 0xffffffff)], [('data_off', 1)],
    [('flags', 0xffffffff)], [('heads', 0), ('cylinders', 0)],
    [('in_use', 5)], [('tracks', 3)], [('tracks', ploop.MAX_TRACKS)],
    [('nb_bat_entries', 0)], [('nb_bat_entries', 1)],
    [('nb_sectors', ploop.BDRV_MAX_LENGTH // 512)],
    [(64, struct.pack('<I', 0x100000))],       # BAT entry past the end
])
def test_fields_qemu_7_2_ignores(tmp_path, image, edits):
    path = patch(image, tmp_path / 'x.hds', *edits)
    helpers.assert_like_qemu(path, 'ploop')


def test_dirty_image(tmp_path, image):
    # qemu 7.2 opens it read-only (qemu-img), not read/write: reported.
    path = patch(image, tmp_path / 'dirty.hds',
                 ('in_use', ploop.HEADER_INUSE_MAGIC))
    helpers.assert_like_qemu(path, 'ploop')
    assert glance_vsize.inspect_file(path).details['dirty'] is True


@pytest.mark.parametrize('edits,check', [
    ([('version', 3)], 'version'),
    ([('version', 1)], 'version'),
    ([('tracks', 0)], 'cluster_size'),
    ([('tracks', ploop.MAX_TRACKS + 1)], 'cluster_size'),
    ([('nb_bat_entries', ploop.MAX_BAT_ENTRIES + 1)], 'table_bounds'),
    ([('nb_bat_entries', ploop.MAX_BAT_ENTRIES)], 'table_bounds'),
    ([('nb_sectors', ploop.BDRV_MAX_LENGTH // 512 + 1)], 'size_limit'),
    ([('nb_sectors', 1 << 62)], 'size_limit'),
    ([('ext_off', 1)], 'format_extension'),
    ([('ext_off', 1 << 40)], 'format_extension'),
])
def test_qemu_refuses(tmp_path, image, edits, check):
    path = patch(image, tmp_path / 'bad.hds', *edits)
    assert helpers.qemu_info(path, 'ploop') is None
    helpers.assert_refused(path, 'ploop', check)


def test_bat_past_the_end(tmp_path, image):
    # qemu reads zeros past the end; we refuse a BAT outside the image.
    entries = (os.path.getsize(image) - 64) // 4 + 1
    path = patch(image, tmp_path / 'far.hds', ('nb_bat_entries', entries))
    assert helpers.qemu_info(path, 'ploop') is not None
    helpers.assert_refused(path, 'ploop', 'table_bounds')


@pytest.mark.parametrize('length', (16, 40, 63))
def test_truncated_header(tmp_path, image, length):
    path = patch(image, tmp_path / 'short.hds')
    os.truncate(path, length)
    helpers.assert_refused(path, 'ploop', 'truncated')


def test_truncated_bat(tmp_path, image):
    path = patch(image, tmp_path / 'cut.hds')
    os.truncate(path, 1000)
    helpers.assert_refused(path, 'ploop', 'table_bounds')


def test_no_magic(tmp_path, image):
    path = patch(image, tmp_path / 'nomagic.hds', (0, b'WithoutFreeSpacf'))
    for _mode, result in helpers.all_modes(path):
        assert result.format == 'raw'


@pytest.mark.parametrize('seed', range(20))
def test_garbage_after_magic(tmp_path, image, seed):
    rng = random.Random(seed)
    with open(image, 'rb') as f:
        head = bytearray(f.read(64))
    if seed % 2:
        head[16:] = rng.randbytes(48)
    else:
        for _ in range(3):
            head[rng.randrange(16, 64)] = rng.randrange(256)
    path = patch(image, tmp_path / 'junk.hds', (0, bytes(head)))
    result = assert_consistent(path)
    assert result.format == 'ploop'
