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

"""VDI: real images from qemu-img, and hostile headers."""

import functools
import os
import random
import struct

import pytest

from glance_vsize.formats import base
from glance_vsize.formats import vdi
from tests import helpers

pytestmark = helpers.requires_qemu_img

GiB = 1 << 30
SIZES = (1 << 20, GiB + 512, 10 * GiB + 12345 * 512, 3 << 40, 1000001, 0)


def patch(src, dst, *edits):
    return helpers.patch_fields(src, dst, vdi, *edits)


assert_consistent = functools.partial(helpers.assert_hostile,
                                      disk_format='vdi')


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    return helpers.create(tmp_path_factory.mktemp('vdi') / 'base.vdi',
                          'vdi', GiB)


@pytest.mark.parametrize('size', SIZES)
def test_dynamic(tmp_path, size):
    path = helpers.create(tmp_path / 'd.vdi', 'vdi', size)
    helpers.assert_like_qemu(path, 'vdi', variant='dynamic')


@pytest.mark.parametrize('size', (10 << 20, 1000001, (64 << 20) + 512))
def test_static(tmp_path, size):
    path = helpers.create(tmp_path / 's.vdi', 'vdi', size, 'static=on')
    helpers.assert_like_qemu(path, 'vdi', variant='static')


@pytest.mark.parametrize('opts', ('', 'static=on'))
def test_data(tmp_path, opts):
    raw = tmp_path / 'data.raw'
    rng = random.Random(7)
    with open(raw, 'wb') as f:
        for i in range(48):
            block = rng.randbytes(65536) if i % 3 else bytes(65536)
            f.write(block)
        f.write(b'tail' * 100)         # not a whole sector
    path = str(tmp_path / 'data.vdi')
    cmd = ['convert', '-O', 'vdi'] + (['-o', opts] if opts else [])
    helpers.qemu_img(*(cmd + [str(raw), path]))
    info = helpers.assert_like_qemu(path, 'vdi')
    assert info['virtual-size'] == base.round_up(os.path.getsize(raw))


@pytest.mark.parametrize('disk_size', (GiB - 1, GiB - 511, 12345))
def test_odd_disk_size_rounds_up(tmp_path, image, disk_size):
    # VBoxManage convertfromraw writes odd sizes; qemu rounds them up.
    path = patch(image, tmp_path / 'odd.vdi', ('disk_size', disk_size))
    helpers.assert_like_qemu(path, 'vdi')


@pytest.mark.parametrize('edits', [
    [('image_type', 4)], [('image_type', 99)], [('header_size', 0)],
    [('image_flags', 0xffffffff)], [('uuid_last_snap', b'\1' * 16)],
    [(0, b'\xff' * 64)], [('offset_bmap', 0)], [('block_extra', 7)],
])
def test_fields_qemu_ignores(tmp_path, image, edits):
    path = patch(image, tmp_path / 'x.vdi', *edits)
    helpers.assert_like_qemu(path, 'vdi')


MAX_BLOCKS = vdi.VDI_BLOCKS_IN_IMAGE_MAX


@pytest.mark.parametrize('edits,check', [
    ([('version', 0x00010000)], 'version'),
    ([('version', 0x00010002)], 'version'),
    ([('offset_bmap', 0x201)], 'alignment'),
    ([('offset_data', 0x1201)], 'alignment'),
    ([('sector_size', 1024)], 'sector_size'),
    ([('block_size', 2 << 20)], 'cluster_size'),
    ([('disk_size', GiB + 1)], 'table_bounds'),
    ([('blocks_in_image', MAX_BLOCKS + 1)], 'table_bounds'),
    ([('blocks_in_image', 0xffffffff)], 'table_bounds'),
    ([('blocks_in_image', MAX_BLOCKS),
      ('disk_size', MAX_BLOCKS * (1 << 20) + 1)], 'size_limit'),
    ([('disk_size', 1 << 63)], 'size_limit'),
    ([('uuid_link', b'\1' + b'\0' * 15)], 'parent'),
    ([('uuid_parent', b'\0' * 15 + b'\1')], 'parent'),
])
def test_qemu_refuses(tmp_path, image, edits, check):
    path = patch(image, tmp_path / 'bad.vdi', *edits)
    assert helpers.qemu_info(path, 'vdi') is None
    helpers.assert_refused(path, 'vdi', check)


@pytest.mark.parametrize('edits', [
    [('offset_bmap', 0x10000000)],
    [('blocks_in_image', 1 << 20)],
])
def test_block_map_past_the_end(tmp_path, image, edits):
    # qemu reads zeros past the end; we refuse a map outside the image.
    path = patch(image, tmp_path / 'far.vdi', *edits)
    assert helpers.qemu_info(path, 'vdi') is not None
    helpers.assert_refused(path, 'vdi', 'table_bounds')


@pytest.mark.parametrize('length', (0x40 + 4, 300, 511))
def test_truncated_header(tmp_path, image, length):
    path = str(tmp_path / 'short.vdi')
    with open(image, 'rb') as f:
        data = f.read(length)
    with open(path, 'wb') as f:
        f.write(data)
    helpers.assert_refused(path, 'vdi', 'truncated')


def test_truncated_block_map(tmp_path, image):
    path = patch(image, tmp_path / 'cut.vdi')
    os.truncate(path, 512 + 100)
    helpers.assert_refused(path, 'vdi', 'table_bounds')


def test_no_signature(tmp_path, image):
    path = patch(image, tmp_path / 'nosig.vdi', ('signature', 0xbeda107e))
    for _mode, result in helpers.all_modes(path):
        assert result.format == 'raw'


@pytest.mark.parametrize('seed', range(20))
def test_garbage_after_signature(tmp_path, image, seed):
    rng = random.Random(seed)
    head = bytearray(rng.randbytes(512))
    head[0x40:0x44] = struct.pack('<I', vdi.VDI_SIGNATURE)
    if seed % 2:
        # Mostly sane header, garbage in a few fields.
        with open(image, 'rb') as f:
            sane = bytearray(f.read(512))
        for _ in range(4):
            at = rng.randrange(0x44, 0x1c8)
            sane[at] = head[at]
        head = sane
    path = patch(image, tmp_path / 'junk.vdi', (0, bytes(head)))
    result = assert_consistent(path)
    assert result.format == 'vdi'
