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


"""VHDX: sizes as qemu-img 7.2 reports them, and the header, log, region
table and metadata checks of vhdx_open().
"""

import functools
import os
import random
import shutil
import struct
import uuid

import pytest

import glance_vsize
from glance_vsize.formats import crc32c
from tests import helpers
from tests import imagegen

GIB = 1 << 30
MIB = 1 << 20
H1, H2, RT = 64 << 10, 128 << 10, 192 << 10
#: Where qemu-img puts things in a small image: log at 1 MiB, BAT region at
#: 2 MiB, metadata region at 3 MiB with its items from 3 MiB + 64 KiB.
MD = 3 * MIB
ITEMS = MD + (64 << 10)
FILE_PARAMS, VDS, LSS = ITEMS, ITEMS + 8, ITEMS + 32


def write(path, offset, data):
    with open(path, 'r+b') as f:
        f.seek(offset)
        f.write(data)


def patch_block(path, offset, size, edit):
    """Edit a header (4 KiB) or region table (64 KiB); fix its CRC."""
    with open(path, 'r+b') as f:
        f.seek(offset)
        block = bytearray(f.read(size))
        edit(block)
        block[4:8] = b'\0\0\0\0'
        struct.pack_into('<I', block, 4, crc32c.crc32c(bytes(block)))
        f.seek(offset)
        f.write(block)


def setter(at, fmt, value):
    return lambda block: struct.pack_into(fmt, block, at, value)


def both_headers(path, edit):
    patch_block(path, H1, 4096, edit)
    patch_block(path, H2, 4096, edit)


def region_entry(guid, offset, length, required):
    return uuid.UUID(guid).bytes_le + struct.pack('<QII', offset, length,
                                                  required)


def metadata_entry(guid, offset, length, flags):
    return uuid.UUID(guid).bytes_le + struct.pack('<IIII', offset, length,
                                                  flags, 0)


def copy(src, tmp_path, name='x.vhdx'):
    dst = tmp_path / name
    shutil.copy(src, dst)
    return str(dst)


@pytest.fixture(scope='module')
def base(tmp_path_factory):
    """qemu-img's 1 GiB dynamic VHDX (32 MiB blocks)."""
    return helpers.create(tmp_path_factory.mktemp('vhdx') / 'b.vhdx',
                          'vhdx', GIB)


assert_no_crash_and_like_qemu = functools.partial(
    helpers.assert_hostile, disk_format='vhdx', agree=False)


def test_crc32c():
    assert crc32c.crc32c(b'123456789') == 0xE3069283
    rnd = random.Random(3)
    for data in (b'', bytes(65536), rnd.randbytes(100) + bytes(5000)):
        expected = 0xFFFFFFFF
        for byte in data:
            expected ^= byte
            for _ in range(8):
                expected = (expected >> 1) ^ (0x82F63B78 * (expected & 1))
        assert crc32c.crc32c(data) == expected ^ 0xFFFFFFFF


@helpers.requires_qemu_img
@pytest.mark.parametrize('size', (MIB, GIB + 512, 10 * GIB + 12345 * 512,
                                  2 * GIB - 512, 3 << 40, GIB + 100, 0))
def test_created_default_block_size(tmp_path, size):
    path = helpers.create(tmp_path / 'x.vhdx', 'vhdx', size)
    helpers.assert_like_qemu(path, 'vhdx', variant='dynamic')


@helpers.requires_qemu_img
@pytest.mark.parametrize('block', ('1M', '32M', '256M'))
@pytest.mark.parametrize('size', (GIB + 512, 3 << 40))
def test_created_block_sizes(tmp_path, block, size):
    path = helpers.create(tmp_path / 'x.vhdx', 'vhdx', size,
                          'block_size=%s' % block)
    helpers.assert_like_qemu(path, 'vhdx', variant='dynamic')


@helpers.requires_qemu_img
@pytest.mark.parametrize('opts,variant', [
    ('subformat=fixed', 'fixed'), ('subformat=fixed,block_size=1M', 'fixed'),
    ('log_size=4M', 'dynamic'), ('log_size=8M,block_size=8M', 'dynamic'),
    ('block_state_zero=off', 'dynamic')])
def test_created_options(tmp_path, opts, variant):
    path = helpers.create(tmp_path / 'x.vhdx', 'vhdx', 24 * MIB + 512, opts)
    helpers.assert_like_qemu(path, 'vhdx', variant=variant)


@helpers.requires_qemu_img
@pytest.mark.parametrize('opts', ('subformat=dynamic', 'subformat=fixed',
                                  'block_state_zero=off,block_size=1M'))
def test_data_images(tmp_path, opts):
    raw = imagegen.payload(str(tmp_path / 'data.raw'), (6 << 20) + 512,
                           seed=11)
    path = str(tmp_path / 'data.vhdx')
    helpers.qemu_img('convert', '-f', 'raw', '-O', 'vhdx', '-o', opts, raw,
                     path)
    helpers.assert_like_qemu(path, 'vhdx')


@helpers.requires_qemu_img
@pytest.mark.parametrize('edits,check', [
    # One bad header: qemu uses the other one.
    ([(H1, 'crc')], None),
    ([(H2, 'crc')], None),
    ([(H2, setter(66, '<H', 2))], None),                 # Version
    ([(H2, setter(0, '4s', b'HEAD'))], None),
    ([(H1, setter(72, '<Q', 3 * MIB))], None),           # older header
    ([(H1, 'crc'), (H2, 'crc')], 'header'),
    ([(H1, setter(66, '<H', 2)), (H2, setter(66, '<H', 2))], 'header'),
    # Same SequenceNumber: fine when identical, refused when not.
    ([(H2, 'copy')], None),
    ([(H2, 'copy'), (H2, setter(16, '16s', b'x' * 16))], 'header'),
    # The current header's log fields.
    ([(H2, setter(72, '<Q', 0))], 'log'),
    ([(H2, setter(72, '<Q', MIB + 4096))], 'log'),
    ([(H2, setter(64, '<H', 1))], 'log'),
    ([(H2, setter(68, '<I', 4096))], None),              # no LogGuid
    ([(H2, setter(68, '<I', 4096)),
      (H2, setter(48, '16s', b'g' * 16))], 'log'),
    ([(H2, setter(48, '16s', b'g' * 16))], None),        # empty log
    ([(H2, setter(72, '<Q', 3 * MIB))], 'region_overlap'),
])
def test_headers_and_log_fields(tmp_path, base, edits, check):
    path = copy(base, tmp_path)
    with open(base, 'rb') as f:
        f.seek(H1)
        first = f.read(4096)
    for offset, edit in edits:
        if edit == 'crc':
            write(path, offset + 100, b'\xff')
        elif edit == 'copy':
            write(path, offset, first)
        else:
            patch_block(path, offset, 4096, edit)
    if check is None:
        helpers.assert_like_qemu(path, 'vhdx')
    else:
        assert helpers.qemu_info(path, 'vhdx') is None
        helpers.assert_refused(path, 'vhdx', check)


def _with_log_entry(path, guid, log_offset=MIB):
    """A log entry that qemu's vhdx_log_search() finds valid."""
    entry = bytearray(4096)
    size = os.path.getsize(path)
    struct.pack_into('<4sIIIQII16sQQ', entry, 0, b'loge', 0, 4096, 0, 1, 0,
                     0, guid, size, size)
    struct.pack_into('<I', entry, 4, crc32c.crc32c(bytes(entry)))
    write(path, log_offset, bytes(entry))


@helpers.requires_qemu_img
def test_log_that_needs_replay_is_refused(tmp_path, base):
    path = copy(base, tmp_path)
    guid = uuid.uuid4().bytes_le
    _with_log_entry(path, guid)
    helpers.assert_like_qemu(path, 'vhdx')      # LogGuid zero: ignored
    both_headers(path, setter(48, '16s', guid))
    assert helpers.qemu_info(path, 'vhdx') is None
    helpers.assert_refused(path, 'vhdx', 'log_replay')


@helpers.requires_qemu_img
def test_log_after_the_metadata(tmp_path, base):
    # An 8 MiB file: move the log to 5 MiB, with a LogGuid: it is read
    # after the metadata items, and holds no entry.
    path = copy(base, tmp_path)
    both_headers(path, setter(72, '<Q', 5 * MIB))
    both_headers(path, setter(48, '16s', b'g' * 16))
    helpers.assert_like_qemu(path, 'vhdx')
    _with_log_entry(path, b'g' * 16, 5 * MIB + 8192)
    assert helpers.qemu_info(path, 'vhdx') is None
    helpers.assert_refused(path, 'vhdx', 'log_replay')


BAT = '2DC27766-F623-4200-9D64-115E9BFD4A08'
METADATA = '8B7CA206-4790-4B9A-B8FE-575F050F886E'
UNKNOWN = '33333333-3333-4333-8333-333333333333'


THIRD = 16 + 2 * 32     # a third region table entry


@helpers.requires_qemu_img
@pytest.mark.parametrize('edits,check', [
    ([(8, struct.pack('<I', 2048))], 'region_table'),
    ([(0, b'regX')], 'region_table'),
    ([(8, struct.pack('<I', 1))], 'region_table'),          # no metadata
    ([(8, struct.pack('<I', 3)),
      (THIRD, region_entry(UNKNOWN, 5 * MIB, MIB, 1))], 'unknown_region'),
    ([(8, struct.pack('<I', 3)),
      (THIRD, region_entry(UNKNOWN, 5 * MIB, MIB, 0))], None),
    ([(8, struct.pack('<I', 3)),
      (THIRD, region_entry(BAT, 5 * MIB, MIB, 0))], 'region_table'),
    ([(8, struct.pack('<I', 3)),
      (THIRD, region_entry(UNKNOWN, 3 * MIB, 4096, 0))], 'region_overlap'),
    ([(16, region_entry(BAT, MIB, MIB, 1))], 'region_overlap'),  # the log
    ([(48, region_entry(METADATA, 2 * MIB + 4096, MIB, 1))],
     'region_overlap'),
    ([(48, region_entry(METADATA, 1 << 40, MIB, 1))], 'metadata'),
    ([(48, region_entry(METADATA, 1 << 63, MIB, 1))], 'table_bounds'),
    ([(16, region_entry(BAT, 1 << 40, MIB, 1))], None),   # zeros: fine
    ([(16, region_entry(BAT, 2 * MIB, 8, 1))], 'table_size'),
    ([(16, region_entry(BAT, 2 * MIB, 0, 1))], 'table_size'),
])
def test_region_table(tmp_path, base, edits, check):
    path = copy(base, tmp_path)

    def edit(block):
        for at, data in edits:
            block[at:at + len(data)] = data
    patch_block(path, RT, 64 << 10, edit)
    if check is None:
        helpers.assert_like_qemu(path, 'vhdx')
    else:
        assert helpers.qemu_info(path, 'vhdx') is None
        helpers.assert_refused(path, 'vhdx', check)


@helpers.requires_qemu_img
def test_region_table_checksum(tmp_path, base):
    path = copy(base, tmp_path)
    write(path, RT + 4 + (64 << 10), b'\xff')    # the ignored copy
    helpers.assert_like_qemu(path, 'vhdx')
    write(path, RT + 40000, b'\xff')
    assert helpers.qemu_info(path, 'vhdx') is None
    helpers.assert_refused(path, 'vhdx', 'checksum')


PARENT = 'A8D35F2D-B30B-454D-ABF7-D3D84834AB0C'
FILE_PARAMETERS = 'CAA16737-FA36-4D43-B3B6-33F0AA44E76B'


@helpers.requires_qemu_img
@pytest.mark.parametrize('edits,check', [
    ([(MD, b'metadatX')], 'metadata'),
    ([(MD + 10, struct.pack('<H', 2048))], 'metadata'),
    ([(MD + 10, struct.pack('<H', 2047))], None),      # zero entries
    ([(MD + 10, struct.pack('<H', 4))], 'metadata'),   # 4 of 5 items
    ([(MD + 10, struct.pack('<H', 6)),
      (MD + 6 * 32, metadata_entry(UNKNOWN, 65600, 8, 4))],
     'unknown_metadata'),
    ([(MD + 10, struct.pack('<H', 6)),
      (MD + 6 * 32, metadata_entry(UNKNOWN, 65600, 8, 2))], None),
    ([(MD + 10, struct.pack('<H', 6)),
      (MD + 6 * 32, metadata_entry(PARENT, 65600, 8, 6))], 'parent'),
    ([(MD + 10, struct.pack('<H', 6)),
      (MD + 6 * 32, metadata_entry(FILE_PARAMETERS, 0, 8, 4))], 'metadata'),
    ([(FILE_PARAMS + 4, struct.pack('<I', 2))], 'parent'),
    ([(FILE_PARAMS + 4, struct.pack('<I', 1))], None),  # "fixed"
    ([(FILE_PARAMS, struct.pack('<I', 512 << 10))], 'block_size'),
    ([(FILE_PARAMS, struct.pack('<I', 3 * MIB))], 'block_size'),
    ([(FILE_PARAMS, struct.pack('<I', 512 << 20))], 'block_size'),
    ([(LSS, struct.pack('<I', 4096))], 'logical_sector_size'),
    ([(LSS + 4, struct.pack('<I', 7))], None),         # not checked
    ([(VDS, struct.pack('<Q', GIB + 100))], None),
    ([(VDS, struct.pack('<Q', 2 * GIB))], None),
    ([(VDS, struct.pack('<Q', 0))], 'table_size'),
    ([(VDS, struct.pack('<Q', 64 << 40))], 'table_size'),
    ([(MD + 32 + 16, struct.pack('<I', 0xfffffff0))], 'block_size'),
    ([(MD + 64 + 16, struct.pack('<I', 0xfffffff0))], 'table_size'),
    ([(MD + 64 + 16, struct.pack('<I', 8))], None),    # in the table
])
def test_metadata(tmp_path, base, edits, check):
    path = copy(base, tmp_path)
    for offset, data in edits:
        write(path, offset, data)
    if check is None:
        helpers.assert_like_qemu(path, 'vhdx')
    else:
        assert helpers.qemu_info(path, 'vhdx') is None
        helpers.assert_refused(path, 'vhdx', check)


def test_over_64_tib_is_refused(tmp_path, base):
    # A BAT region large enough for 128 TiB of 256 MiB blocks; qemu would
    # read 8 MiB of zeros from beyond the file and open it.
    path = copy(base, tmp_path)
    write(path, FILE_PARAMS, struct.pack('<I', 256 << 20))
    write(path, VDS, struct.pack('<Q', 128 << 40))
    patch_block(path, RT, 64 << 10, lambda b: b.__setitem__(
        slice(16, 48), region_entry(BAT, 8 * MIB, 8 * MIB, 1)))
    helpers.assert_refused(path, 'vhdx', 'size_limit')


@helpers.requires_qemu_img
@pytest.mark.parametrize('length,check', [
    (8, 'header'), (100 << 10, 'checksum'), (200 << 10, 'metadata'),
    (MIB, 'metadata'), (FILE_PARAMS + 2, 'block_size'),
    (LSS, 'logical_sector_size'), (LSS + 8, None)])
def test_truncated(tmp_path, base, length, check):
    path = copy(base, tmp_path)
    os.truncate(path, length)
    if check is None:       # the BAT is all "not present" (zeros)
        helpers.assert_like_qemu(path, 'vhdx')
    else:
        assert helpers.qemu_info(path, 'vhdx') is None
        helpers.assert_refused(path, 'vhdx', check)


@helpers.requires_qemu_img
def test_random_mutations(tmp_path, base):
    """Random bytes in the headers, the metadata table and its items
    (with valid CRCs): never an exception, and a safe verdict agrees
    with qemu.  (The BAT region is left alone: qemu's BAT entry checks
    are not ported.)
    """
    rnd = random.Random(4242)
    targets = [(H1, 80), (H2, 80), (RT, 16), (MD, 32 * 6),
               (ITEMS, 36)]
    for i in range(30):
        path = copy(base, tmp_path, 'm%d.vhdx' % i)
        for _ in range(rnd.randint(1, 3)):
            start, length = rnd.choice(targets)
            at = start + rnd.randrange(length)
            write(path, at, bytes([rnd.randrange(256)]))
            if start in (H1, H2, RT):
                size = 4096 if start != RT else 64 << 10
                patch_block(path, start, size, lambda b: None)
        assert_no_crash_and_like_qemu(path)


def test_garbage_after_the_signature(tmp_path):
    rnd = random.Random(5)
    for i in range(3):
        path = tmp_path / ('g%d.vhdx' % i)
        path.write_bytes(b'vhdxfile' + rnd.randbytes(300 << 10))
        for _mode, result in helpers.all_modes(path):
            assert result.format == 'vhdx' and not result.safe
            assert 'inspector_error' not in result.failures


def test_not_vhdx(tmp_path):
    path = tmp_path / 'x.raw'
    path.write_bytes(b'vhdxfil')
    result = glance_vsize.inspect_file(str(path))
    assert result.format == 'raw' and result.safe
