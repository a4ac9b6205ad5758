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


"""VMDK: real images from qemu-img, descriptor files, hostile headers."""

import functools
import os
import random
import shutil

import pytest

import glance_vsize
from glance_vsize.formats import vmdk
from tests import helpers

G = 1 << 30
SIZES = (1 << 20, G + 512, 10 * G + 12345 * 512, 2 * G - 512)
SUBFORMATS = ('monolithicSparse', 'streamOptimized')


def _copy(src, tmp_path, name):
    dst = tmp_path / name
    shutil.copy(src, dst)
    return str(dst)


def _header(path):
    with open(path, 'rb') as f:
        return vmdk.SparseHeader(*vmdk.SPARSE_EXTENT_HEADER.unpack(
            f.read(vmdk.SPARSE_EXTENT_HEADER.size)))


def _patch(path, **fields):
    header = _header(path)._replace(**fields)
    with open(path, 'r+b') as f:
        f.write(vmdk.SPARSE_EXTENT_HEADER.pack(*header))
    return path


def _edit_descriptor(path, old, new):
    """Rewrite the embedded descriptor at sector 1 (NUL padded)."""
    with open(path, 'r+b') as f:
        f.seek(512)
        raw = f.read(vmdk.DESC_SIZE)
        text = raw.split(b'\0', 1)[0]
        assert old in text
        text = text.replace(old, new)
        assert len(text) < vmdk.DESC_SIZE
        f.seek(512)
        f.write(text.ljust(vmdk.DESC_SIZE, b'\0'))
    return path


def _marker(kind, val=0):
    return vmdk.MARKER.pack(val, 0, kind).ljust(512, b'\0')


def _with_footer(path, footer_fields=None, header_fields=None,
                 marker=vmdk.MARKER_FOOTER, eos=vmdk.MARKER_END_OF_STREAM):
    """Make a streamOptimized image read its header from a footer, as
    VMware writes them: header gdOffset GD_AT_END, then footer marker,
    footer and end-of-stream marker at the end.
    """
    footer = _header(path)._replace(**(footer_fields or {}))
    _patch(path, gdOffset=vmdk.GD_AT_END, **(header_fields or {}))
    with open(path, 'ab') as f:
        f.write(_marker(marker, 1))
        f.write(vmdk.SPARSE_EXTENT_HEADER.pack(*footer).ljust(512, b'\0'))
        f.write(_marker(eos))
    return path


assert_named_failure = functools.partial(helpers.assert_hostile,
                                         disk_format='vmdk', agree=False)


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('vmdk')
    raw = tmp / 'data.raw'
    rng = random.Random(42)
    # Random data, and a size that is not a multiple of 512.
    raw.write_bytes(bytes(rng.getrandbits(8) for _ in range(3 * 65536))
                    + bytes(65536) + b'tail' * 1000)
    made = {}
    for sub in SUBFORMATS:
        made[sub] = helpers.create(tmp / ('%s.vmdk' % sub), 'vmdk', '1M',
                                   'subformat=%s' % sub)
        data = str(tmp / ('data-%s.vmdk' % sub))
        helpers.qemu_img('convert', '-f', 'raw', '-O', 'vmdk', '-o',
                         'subformat=%s' % sub, str(raw), data)
        made['data-' + sub] = data
    return made


# Safe images ------------------------------------------------------------

@helpers.requires_qemu_img
@pytest.mark.parametrize('sub', SUBFORMATS)
@pytest.mark.parametrize('size', SIZES)
def test_sizes_like_qemu(tmp_path, sub, size):
    path = helpers.create(tmp_path / 'x.vmdk', 'vmdk', size,
                          'subformat=%s' % sub)
    helpers.assert_like_qemu(path, 'vmdk', variant=sub)


@helpers.requires_qemu_img
@pytest.mark.parametrize('sub', SUBFORMATS)
def test_three_terabytes_like_qemu(tmp_path, sub):
    path = helpers.create(tmp_path / 'x.vmdk', 'vmdk', '3T',
                          'subformat=%s' % sub)
    helpers.assert_like_qemu(path, 'vmdk', variant=sub)


@helpers.requires_qemu_img
@pytest.mark.parametrize('opts', [
    'adapter_type=ide', 'adapter_type=lsilogic', 'adapter_type=buslogic',
    'adapter_type=legacyESX', 'compat6=on', 'hwversion=6',
    'zeroed_grain=on', 'toolsversion=12345', 'preallocation=full',
    'preallocation=falloc',
    'subformat=streamOptimized,adapter_type=lsilogic,hwversion=6',
    'subformat=streamOptimized,zeroed_grain=on',
])
def test_create_options_like_qemu(tmp_path, opts):
    path = helpers.create(tmp_path / 'x.vmdk', 'vmdk', 3 * 1048576 + 512,
                          opts)
    helpers.assert_like_qemu(path, 'vmdk')


@helpers.requires_qemu_img
@pytest.mark.parametrize('sub', SUBFORMATS)
def test_data_images_like_qemu(images, sub):
    helpers.assert_like_qemu(images['data-' + sub], 'vmdk', variant=sub)


@helpers.requires_qemu_img
def test_footer_takes_precedence_like_qemu(images, tmp_path):
    path = _with_footer(_copy(images['data-streamOptimized'], tmp_path,
                              'f.vmdk'))
    helpers.assert_like_qemu(path, 'vmdk', variant='streamOptimized')
    # qemu reads whole sectors: a footer cut short inside its last
    # sector reads as zeroes and is still valid.
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) - 100)
    helpers.assert_like_qemu(path, 'vmdk', variant='streamOptimized')


# Unsafe images ----------------------------------------------------------

@helpers.requires_qemu_img
@pytest.mark.parametrize('sub', ['monolithicFlat', 'twoGbMaxExtentSparse',
                                 'twoGbMaxExtentFlat'])
def test_descriptor_files_are_refused(tmp_path, sub):
    path = helpers.create(tmp_path / 'x.vmdk', 'vmdk', '1M',
                          'subformat=%s' % sub)
    assert helpers.qemu_info(path, 'vmdk') is not None
    helpers.assert_refused(path, 'vmdk', 'extent_file')
    helpers.assert_refused(path, 'vmdk', 'create_type')
    result = glance_vsize.inspect_file(path)
    assert result.format == 'vmdk' and result.variant == sub


DESCRIPTOR = (b'# Disk DescriptorFile\nversion=1\nCID=12345678\n'
              b'parentCID=ffffffff\ncreateType="%s"\n\n'
              b'# Extent description\n%s\n')


@helpers.requires_qemu_img
@pytest.mark.parametrize('create_type,extent', [
    (b'vmfs', b'RW 2048 VMFS "x-flat.vmdk"'),
    (b'monolithicFlat', b'RW 2048 FLAT "/etc/passwd" 0'),
    (b'monolithicSparse', b'RW 2048 FLAT "/etc/passwd" 0'),
    (b'streamOptimized', b'RDONLY 2048 SPARSE "other.vmdk"'),
])
def test_hand_written_descriptors_are_refused(tmp_path, create_type, extent):
    path = tmp_path / 'd.vmdk'
    path.write_bytes(DESCRIPTOR % (create_type, extent))
    helpers.assert_refused(path, 'vmdk', 'extent_file')
    result = glance_vsize.inspect_file(str(path))
    assert result.format == 'vmdk'
    name = extent.split(b'"')[1].decode()
    assert name in result.failures['extent_file']
    assert 'offset %d' % bytes(path.read_bytes()).index(extent) in \
        result.failures['extent_file']


@helpers.requires_qemu_img
def test_descriptor_naming_host_file_is_opened_by_qemu(tmp_path):
    # What the refusal prevents: qemu -f vmdk reads /etc/passwd.
    path = tmp_path / 'p.vmdk'
    path.write_bytes(DESCRIPTOR % (b'monolithicFlat',
                                   b'RW 1 FLAT "/etc/passwd" 0'))
    assert helpers.qemu_info(path, 'vmdk')['virtual-size'] == 512
    helpers.assert_refused(path, 'vmdk', 'extent_file')


def test_text_with_create_type_but_no_probe_line_is_refused(tmp_path):
    # qemu's probe calls this raw, but qemu -f vmdk opens its extents.
    path = tmp_path / 't.txt'
    path.write_bytes(b'hello\nCID=1\nparentCID=ffffffff\n'
                     b'createType="monolithicFlat"\n'
                     b'RW 2048 FLAT "/etc/hostname" 0\n')
    helpers.assert_refused(path, 'vmdk', 'extent_file')
    for _mode, result in helpers.all_modes(path):
        assert result.format == 'vmdk' and not result.safe


def test_long_descriptor_text_is_read_to_qemu_limit(tmp_path):
    path = tmp_path / 'long.vmdk'
    path.write_bytes(DESCRIPTOR % (b'vmfs', b'#' * 200000 + b'\n'
                                   b'RW 2048 VMFS "far.vmdk"'))
    helpers.assert_refused(path, 'vmdk', 'extent_file')
    assert 'far.vmdk' in glance_vsize.inspect_file(
        str(path)).failures['extent_file']


def test_plain_text_is_not_vmdk(tmp_path):
    path = tmp_path / 'plain.txt'
    path.write_bytes(b'just some text\n' * 2000)
    for _mode, result in helpers.all_modes(path):
        assert result.format == 'raw'


@helpers.requires_qemu_img
def test_backing_file_is_a_parent(images, tmp_path):
    base = _copy(images['monolithicSparse'], tmp_path, 'base.vmdk')
    path = helpers.create(tmp_path / 'delta.vmdk', 'vmdk', '1M',
                          'backing_file=%s,backing_fmt=vmdk' % base)
    helpers.assert_refused(path, 'vmdk', 'parent')
    result = glance_vsize.inspect_file(path)
    assert 'base.vmdk' in result.failures['parent']


@helpers.requires_qemu_img
def test_parent_cid_alone_is_a_parent(images, tmp_path):
    path = _edit_descriptor(_copy(images['monolithicSparse'], tmp_path,
                                  'p.vmdk'),
                            b'parentCID=ffffffff', b'parentCID=1234abcd')
    helpers.assert_refused(path, 'vmdk', 'parent')


@helpers.requires_qemu_img
def test_zero_capacity_opens_the_descriptor(tmp_path):
    # qemu-img creates it but cannot open it: capacity 0 makes qemu read
    # the embedded descriptor as a descriptor file.
    path = helpers.create(tmp_path / 'z.vmdk', 'vmdk', 0)
    assert helpers.qemu_info(path, 'vmdk') is None
    helpers.assert_refused(path, 'vmdk', 'capacity')


@helpers.requires_qemu_img
@pytest.mark.parametrize('old,new,check', [
    (b'createType="monolithicSparse"', b'createType="vmfs"', 'create_type'),
    (b'SPARSE "monolithicSparse.vmdk"', b'SPARSE "/etc/passwd"',
     'extent_file'),
    (b'SPARSE "monolithicSparse.vmdk"', b'FLAT "/etc/passwd" 0',
     'extent_file'),
    (b'# The Disk Data Base', b'RW 2048 SPARSE "other.vmdk"\n',
     'extent_file'),
    (b'RW 2048 SPARSE', b'RW 4096 SPARSE', 'extent_size'),
    (b'# The Disk Data Base', b'parentFileNameHint="/etc/base.vmdk"\n',
     'parent'),
    (b'CID=', b'XYZ=', 'descriptor'),
    (b'createType=', b'createTypo=', 'descriptor'),
])
def test_edited_embedded_descriptor(images, tmp_path, old, new, check):
    path = _edit_descriptor(_copy(images['monolithicSparse'], tmp_path,
                                  'e.vmdk'), old, new)
    helpers.assert_refused(path, 'vmdk', check)
    assert_named_failure(path, check)


@helpers.requires_qemu_img
def test_policy_create_types(images):
    policy = glance_vsize.Policy(vmdk_create_types=frozenset(
        {'monolithicSparse'}))
    for _mode, result in helpers.all_modes(images['streamOptimized'],
                                           'vmdk', policy):
        assert 'create_type' in result.failures
    for _mode, result in helpers.all_modes(images['monolithicSparse'],
                                           'vmdk', policy):
        assert result.safe


def test_vmdk3_cowd_is_refused(tmp_path):
    path = tmp_path / 'c.vmdk'
    path.write_bytes(b'COWD' + bytes(508) + bytes(4096))
    helpers.assert_refused(path, 'vmdk', 'create_type')


# Hostile headers --------------------------------------------------------

@helpers.requires_qemu_img
@pytest.mark.parametrize('fields,check', [
    ({'version': 0}, 'version'),
    ({'version': 4}, 'version'),
    ({'version': 0xffffffff}, 'version'),
    ({'flags': 0xff000003}, 'unknown_features'),
    ({'lineChars': b'\n \n\n'}, 'newline_detect'),
    ({'compressAlgorithm': 2}, 'compression'),
    ({'grainSize': 0}, 'grain_size'),
    ({'grainSize': vmdk.MAX_GRAIN_SECTORS + 1}, 'grain_size'),
    ({'grainSize': 1 << 32}, 'grain_size'),
    ({'numGTEsPerGT': 0}, 'l2_size'),
    ({'numGTEsPerGT': 513}, 'l2_size'),
    ({'capacity': 1 << 54}, 'capacity'),
    ({'capacity': (1 << 64) - 1}, 'capacity'),
    ({'capacity': (1 << 41) + 1}, 'l1_size'),
    # qemu's 32-bit L1 size wraps to 0 and it opens a 128 PiB disk.
    ({'capacity': (1 << 32) * 65536}, 'l1_size'),
    ({'overHead': 1 << 40}, 'truncated'),
    ({'gdOffset': 0}, 'table_bounds'),
    ({'gdOffset': 100000}, 'table_bounds'),
    ({'gdOffset': 1 << 60}, 'table_bounds'),
    ({'rgdOffset': 1 << 60}, 'table_bounds'),
    ({'descriptorOffset': 0}, 'descriptor'),
    ({'descriptorOffset': 5}, 'descriptor'),
    ({'descriptorSize': 0}, 'descriptor'),
    ({'descriptorSize': 1 << 40}, 'descriptor'),
    ({'descriptorSize': 40}, None),
    ({'grainSize': 3}, None),
    ({'version': 3}, None),
])
def test_hostile_header(images, tmp_path, fields, check):
    path = _patch(_copy(images['monolithicSparse'], tmp_path, 'h.vmdk'),
                  **fields)
    assert_named_failure(path, check)


@helpers.requires_qemu_img
@pytest.mark.parametrize('kwargs,check', [
    ({'marker': 2}, 'footer'),
    ({'eos': 1}, 'footer'),
    ({'footer_fields': {'magicNumber': b'XXXX'}}, 'footer'),
    ({'footer_fields': {'capacity': 8192}}, 'footer_mismatch'),
    ({'footer_fields': {'version': 4}}, 'version'),
    ({'header_fields': {'version': 4}}, 'footer_mismatch'),
    ({'header_fields': {'capacity': 1}}, 'footer_mismatch'),
    ({'footer_fields': {'gdOffset': vmdk.GD_AT_END}}, 'table_bounds'),
    ({'footer_fields': {'grainSize': 0}}, 'grain_size'),
])
def test_hostile_footer(images, tmp_path, kwargs, check):
    path = _with_footer(_copy(images['data-streamOptimized'], tmp_path,
                              'f.vmdk'), **kwargs)
    assert_named_failure(path, check)


@helpers.requires_qemu_img
def test_misplaced_footer(images, tmp_path):
    path = _with_footer(_copy(images['data-streamOptimized'], tmp_path,
                              'f.vmdk'))
    with open(path, 'ab') as f:
        f.write(bytes(100))
    assert_named_failure(path, 'footer')
    tiny = tmp_path / 'tiny.vmdk'
    with open(path, 'rb') as f:
        tiny.write_bytes(f.read(512))
    assert_named_failure(tiny, None)


@helpers.requires_qemu_img
def test_truncated_images(images, tmp_path):
    for sub in SUBFORMATS:
        data = open(images['data-' + sub], 'rb').read()
        for cut in (4, 100, 511, 512, 600, 10752, 65536, len(data) // 2):
            path = tmp_path / ('t%d.vmdk' % cut)
            path.write_bytes(data[:cut])
            assert_named_failure(path)


@helpers.requires_qemu_img
def test_random_garbage_after_magic(images, tmp_path):
    rng = random.Random(7)
    base = open(images['monolithicSparse'], 'rb').read()
    for i in range(12):
        data = bytearray(base)
        length = rng.choice((80, 512, 4096))
        data[4:length] = bytes(rng.getrandbits(8) for _ in range(length - 4))
        path = tmp_path / ('g%d.vmdk' % i)
        path.write_bytes(bytes(data))
        assert_named_failure(path)
