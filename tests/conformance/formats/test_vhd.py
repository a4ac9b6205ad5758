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


"""VHD (qemu's vpc driver): sizes as qemu-img 7.2 reports them, and the
footer and dynamic header checks of vpc_open().
"""

import functools
import os
import random
import shutil
import struct
import subprocess

import pytest

import glance_vsize
from glance_vsize.formats import vhd
from tests import helpers
from tests import imagegen

GIB = 1 << 30
SMALL = (1 << 20, 2 * (1 << 20) - 512, 100 * (1 << 20) + 1536)
LARGE = (GIB + 512, 10 * GIB + 12345 * 512, 2 * GIB - 512, 127 * GIB,
         2000 * GIB)
QEMU10 = glance_vsize.Policy(vhd_size_rule='qemu10')


def footer_at(path, where):
    size = os.path.getsize(path)
    return 0 if where == 'head' else size - 512


def patch_footer(path, where='head', fix=True, **fields):
    """Set footer fields (by offset) and recompute the checksum."""
    offset = footer_at(path, where)
    with open(path, 'r+b') as f:
        f.seek(offset)
        footer = bytearray(f.read(512))
        for at, (fmt, value) in fields.items():
            struct.pack_into(fmt, footer, int(at[1:]), value)
        if fix:
            struct.pack_into('>I', footer, 64, vhd.footer_checksum(footer))
        f.seek(offset)
        f.write(footer)


def patch_dynamic(path, at, fmt, value):
    with open(path, 'r+b') as f:
        f.seek(512 + at)
        f.write(struct.pack(fmt, value))


def copy(src, tmp_path, name):
    dst = tmp_path / name
    shutil.copy(src, dst)
    return str(dst)


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """A dynamic 1 GiB + 512 image (CHS size), a 2000 GiB one (maximum
    geometry) and a small fixed one.
    """
    tmp = tmp_path_factory.mktemp('vhd')
    return {
        'dynamic': helpers.create(tmp / 'd.vhd', 'vhd', GIB + 512),
        'huge': helpers.create(tmp / 'h.vhd', 'vhd', 2000 * GIB),
        'fixed': helpers.create(tmp / 'f.vhd', 'vhd', 10 << 20,
                                'subformat=fixed'),
    }


assert_no_crash_and_like_qemu = functools.partial(
    helpers.assert_hostile, disk_format='vhd', agree=False)


@helpers.requires_qemu_img
@pytest.mark.parametrize('force', ('off', 'on'))
@pytest.mark.parametrize('subformat', ('dynamic', 'fixed'))
@pytest.mark.parametrize('size', SMALL)
def test_created_small(tmp_path, size, subformat, force):
    path = helpers.create(tmp_path / 'x.vhd', 'vhd', size,
                          'subformat=%s,force_size=%s' % (subformat, force))
    helpers.assert_like_qemu(path, 'vhd', variant=subformat)


@helpers.requires_qemu_img
@pytest.mark.parametrize('force', ('off', 'on'))
@pytest.mark.parametrize('size', LARGE)
def test_created_large_dynamic(tmp_path, size, force):
    path = helpers.create(tmp_path / 'x.vhd', 'vhd', size,
                          'force_size=%s' % force)
    helpers.assert_like_qemu(path, 'vhd', variant='dynamic')


@helpers.requires_qemu_img
@pytest.mark.parametrize('force', ('off', 'on'))
@pytest.mark.parametrize('size', LARGE[:3])
def test_created_large_fixed_seekable(tmp_path, size, force):
    # Sparse files; streaming gigabytes would only test the engine.
    path = helpers.create(tmp_path / 'x.vhd', 'vhd', size,
                          'subformat=fixed,force_size=%s' % force)
    result = glance_vsize.inspect_file(path, 'vhd')
    assert result.safe and result.variant == 'fixed', result.describe()
    assert result.virtual_size == helpers.qemu_info(path,
                                                    'vhd')['virtual-size']


@helpers.requires_qemu_img
@pytest.mark.parametrize('opts', ('subformat=dynamic',
                                  'subformat=fixed,force_size=on',
                                  'subformat=fixed,force_size=off'))
def test_data_images(tmp_path, opts):
    raw = imagegen.payload(str(tmp_path / 'data.raw'), (6 << 20) + 3 * 512,
                           seed=7)
    path = str(tmp_path / 'data.vhd')
    helpers.qemu_img('convert', '-f', 'raw', '-O', 'vpc', '-o', opts, raw,
                     path)
    helpers.assert_like_qemu(path, 'vhd')


@helpers.requires_qemu_img
@pytest.mark.parametrize('creator,qemu10_current', [
    (b'win ', True), (b'd2v ', True), (b'tap\0', True), (b'CTXS', True),
    (b'qem2', True), (b'vpc ', False), (b'qemu', False), (b'wa\0\0', True),
    (b'tap ', True), (b'd2v\0', True)])
def test_creator_application_decides_the_size(tmp_path, images, creator,
                                              qemu10_current):
    path = copy(images['dynamic'], tmp_path, 'c.vhd')
    patch_footer(path, s28=('4s', creator), s48=('>Q', GIB + 512))
    info = helpers.assert_like_qemu(path, 'vhd')
    chs, current = 1073995776, GIB + 512
    assert info['virtual-size'] == (
        current if creator in vhd.QEMU7_CURRENT_SIZE_CREATORS else chs)
    result = glance_vsize.inspect_file(path, 'vhd', QEMU10)
    assert result.safe
    assert result.virtual_size == (current if qemu10_current else chs)


@helpers.requires_qemu_img
def test_maximum_geometry_means_current_size(tmp_path, images):
    info = helpers.assert_like_qemu(images['huge'], 'vhd')
    assert info['virtual-size'] == 2000 * GIB
    assert glance_vsize.inspect_file(images['huge'], 'vhd',
                                     QEMU10).virtual_size == 2000 * GIB
    # A smaller current size with the maximum geometry, from any creator.
    path = copy(images['huge'], tmp_path, 'm.vhd')
    patch_footer(path, s48=('>Q', 200 * GIB + 4096))
    assert helpers.assert_like_qemu(path, 'vhd')['virtual-size'] == \
        200 * GIB + 4096


@helpers.requires_qemu_img
def test_over_2040_gib_is_refused(tmp_path, images):
    path = copy(images['huge'], tmp_path, 'big.vhd')
    patch_footer(path, s48=('>Q', 2040 * GIB + 512))
    assert helpers.qemu_info(path, 'vhd') is None
    helpers.assert_refused(path, 'vhd', 'size_limit')
    patch_footer(path, s48=('>Q', 2040 * GIB))
    info = helpers.qemu_info(path, 'vhd')
    # qemu-img made a BAT for 2000 GiB: "Page table too small".
    assert info is None
    helpers.assert_refused(path, 'vhd', 'table_size')


@helpers.requires_qemu_img
@pytest.mark.parametrize('name', ('dynamic', 'fixed'))
def test_bad_footer_checksum(tmp_path, images, name):
    where = 'head' if name == 'dynamic' else 'tail'
    path = copy(images[name], tmp_path, 'c.vhd')
    patch_footer(path, where, fix=False, s40=('>Q', 12345))
    assert helpers.qemu_info(path, 'vhd') is None
    helpers.assert_refused(path, 'vhd', 'checksum')


@helpers.requires_qemu_img
def test_dynamic_header_checksum_is_ignored_like_qemu(tmp_path, images):
    path = copy(images['dynamic'], tmp_path, 'c.vhd')
    patch_dynamic(path, 36, '>I', 12345)
    helpers.assert_like_qemu(path, 'vhd')


@helpers.requires_qemu_img
@pytest.mark.parametrize('content', ('mbr', 'gpt', 'iso'))
def test_fixed_vhd_holding_a_partitioned_disk_or_iso(tmp_path, content):
    raw = str(tmp_path / 'disk.raw')
    if content == 'iso':
        tree = tmp_path / 'tree'
        tree.mkdir()
        (tree / 'a.txt').write_text('a' * 5000)
        subprocess.run(['xorriso', '-as', 'mkisofs', '-quiet', '-o', raw,
                        str(tree)], check=True, stderr=subprocess.DEVNULL)
    else:
        with open(raw, 'wb') as f:
            f.truncate(4 << 20)
            (imagegen.write_mbr if content == 'mbr' else
             imagegen.write_gpt)(f, 4 << 20)
    path = str(tmp_path / 'disk.vhd')
    helpers.qemu_img('convert', '-f', 'raw', '-O', 'vpc', '-o',
                     'subformat=fixed,force_size=on', raw, path)
    helpers.assert_like_qemu(path, 'vhd', variant='fixed')


@helpers.requires_qemu_img
def test_differencing_disk_names_a_parent(tmp_path, images):
    path = copy(images['dynamic'], tmp_path, 'diff.vhd')
    patch_footer(path, s60=('>I', 4))
    name = 'base.vhd'.encode('utf-16-be')
    with open(path, 'r+b') as f:
        f.seek(512 + 64)
        f.write(name)
    assert helpers.qemu_info(path, 'vhd') is not None  # qemu ignores it
    helpers.assert_refused(path, 'vhd', 'parent')
    result = glance_vsize.inspect_file(path, 'vhd')
    assert "'base.vhd'" in result.failures['parent']
    assert result.variant == 'differencing'


@helpers.requires_qemu_img
@pytest.mark.parametrize('name,where,disk_type,qemu_opens', [
    ('dynamic', 'head', 2, True), ('dynamic', 'head', 5, True),
    ('fixed', 'tail', 3, False), ('fixed', 'tail', 4, False)])
def test_disk_type_must_match_where_the_footer_is(tmp_path, images, name,
                                                  where, disk_type,
                                                  qemu_opens):
    path = copy(images[name], tmp_path, 't.vhd')
    patch_footer(path, where, s60=('>I', disk_type))
    assert (helpers.qemu_info(path, 'vhd') is not None) == qemu_opens
    helpers.assert_refused(path, 'vhd', 'disk_type')


@helpers.requires_qemu_img
@pytest.mark.parametrize('length,check', [
    (4096, None), (3588, None), (3584, 'table_bounds'),
    (600, 'table_bounds'), (300, 'dynamic_header'), (8, 'checksum')])
def test_truncated_dynamic(tmp_path, images, length, check):
    path = copy(images['dynamic'], tmp_path, 't.vhd')
    os.truncate(path, length)
    if check is None:       # the BAT still ends within the last sector
        helpers.assert_like_qemu(path, 'vhd')
    else:
        assert helpers.qemu_info(path, 'vhd') is None
        helpers.assert_refused(path, 'vhd', check)


@helpers.requires_qemu_img
def test_fixed_footer_in_a_partial_last_sector(tmp_path, images):
    # qemu reads the footer at the length rounded up to a sector, padded
    # with zeros: losing 100 reserved (zero) bytes of the footer is fine.
    path = copy(images['fixed'], tmp_path, 'f.vhd')
    os.truncate(path, os.path.getsize(path) - 100)
    helpers.assert_like_qemu(path, 'vhd', variant='fixed')


@helpers.requires_qemu_img
@pytest.mark.parametrize('change', ('cut', 'append'))
def test_fixed_without_its_footer_is_raw(tmp_path, images, change):
    path = copy(images['fixed'], tmp_path, 'f.vhd')
    if change == 'cut':
        os.truncate(path, os.path.getsize(path) - 600)
    else:
        with open(path, 'ab') as f:     # qemu reads a zero-padded sector
            f.write(b'x' * 100)
    assert helpers.qemu_info(path, 'vhd') is None
    helpers.assert_refused(path, 'vhd', 'format_mismatch')
    result = glance_vsize.inspect_file(path)
    assert result.safe and result.format == 'raw'


@helpers.requires_qemu_img
@pytest.mark.parametrize('at,fmt,value,check', [
    (0, '8s', b'cxsparsX', 'dynamic_header'),
    (32, '>I', 0, 'block_size'),
    (32, '>I', 256, 'block_size'),
    (32, '>I', 3072, 'block_size'),
    (32, '>I', 512, 'table_size'),
    (28, '>I', 511, 'table_size'),
    (28, '>I', 0x20000000, 'table_size'),
    (28, '>I', 0x1fffffff, 'table_size'),
    (28, '>I', 0x80000000, 'table_size'),
    (16, '>Q', 1 << 40, 'table_bounds'),
    (16, '>Q', (1 << 63) - 4096, 'table_bounds'),
    (16, '>Q', 1 << 63, 'table_bounds'),
])
def test_hostile_dynamic_header(tmp_path, images, at, fmt, value, check):
    path = copy(images['dynamic'], tmp_path, 'h.vhd')
    patch_dynamic(path, at, fmt, value)
    assert helpers.qemu_info(path, 'vhd') is None
    helpers.assert_refused(path, 'vhd', check)


@helpers.requires_qemu_img
@pytest.mark.parametrize('data_offset', (0, 100, 1 << 40, (1 << 63) - 100,
                                         (1 << 64) - 1))
def test_hostile_data_offset(tmp_path, images, data_offset):
    path = copy(images['dynamic'], tmp_path, 'h.vhd')
    patch_footer(path, s16=('>Q', data_offset))
    assert helpers.qemu_info(path, 'vhd') is None
    helpers.assert_refused(path, 'vhd', 'dynamic_header')


@helpers.requires_qemu_img
def test_garbage_after_the_cookie(tmp_path):
    rnd = random.Random(1)
    for i in range(4):
        head = tmp_path / ('g%d.vhd' % i)
        head.write_bytes(b'conectix' + rnd.randbytes(4000))
        tail = tmp_path / ('t%d.vhd' % i)
        tail.write_bytes(rnd.randbytes(8192) + b'conectix' +
                         rnd.randbytes(504))
        for path in (head, tail):
            assert helpers.qemu_info(path, 'vhd') is None
            for _mode, result in helpers.all_modes(path):
                assert result.format == 'vhd' and not result.safe
                assert 'inspector_error' not in result.failures


@helpers.requires_qemu_img
def test_random_footer_mutations(tmp_path, images):
    """Random footer bytes (with a valid checksum): never an exception,
    and a safe verdict always agrees with qemu.  (The dynamic header's
    table fields are left alone; tests/hardening mutates those.)
    """
    rnd = random.Random(20240611)
    for i in range(25):
        path = copy(images['dynamic'], tmp_path, 'm%d.vhd' % i)
        with open(path, 'r+b') as f:
            footer = bytearray(f.read(512))
            for _ in range(rnd.randint(1, 3)):
                footer[rnd.randrange(8, 64)] = rnd.randrange(256)
            struct.pack_into('>I', footer, 64, vhd.footer_checksum(footer))
            f.seek(0)
            f.write(footer)
        assert_no_crash_and_like_qemu(path)


def test_size_rules():
    geometry = (2080, 16, 63)
    assert vhd.virtual_sectors(b'qemu', 1 << 30, geometry, 'qemu7') == (
        2080 * 16 * 63, 'chs')
    assert vhd.virtual_sectors(b'wa\0\0', (1 << 30) + 100, geometry,
                               'qemu10') == (2097152, 'current_size')
    assert vhd.virtual_sectors(b'vpc ', 1 << 30, (65535, 16, 255),
                               'qemu7') == (2097152, 'current_size')
