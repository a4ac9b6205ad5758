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

"""What the hardening tests found, each kept as a test of its own.

Every case is checked the same way (``helpers.assert_hostile``): in every
mode a verdict naming the expected check, never an exception, and a safe
verdict only where qemu-img opens the bytes with the same size.
"""

import os
import struct
import subprocess

import pytest

from glance_vsize.formats import crc32c
from glance_vsize.formats import vhd
from glance_vsize.formats import vhdx
from glance_vsize.formats import vhdx_bat
from tests import helpers

MiB = 1 << 20


def _copy(entries, name, tmp_path):
    path = str(tmp_path / name)
    subprocess.run(['cp', '--sparse=always', entries[name]['path'], path],
                   check=True)
    return path


@pytest.fixture
def entries(corpus):
    return {e['file']: e for e in corpus[1]}


def _assert_refused_like_qemu(path, disk_format, check):
    assert helpers.qemu_info(path, disk_format) is None
    helpers.assert_hostile(path, check, disk_format=disk_format)
    helpers.assert_refused(path, disk_format, check)


# 1. vhd, check table_bounds: a dynamic VHD whose BAT maps a block past the
#    end of the file.  qemu refuses it ("free_data_block_offset points
#    after the end of file. The image has been truncated."); the BAT was
#    not read, so the engine accepted every truncation of a VHD with data.

@pytest.mark.parametrize('length', (2048, 1 << 20, 4000000,
                                    8393216 - 4096))
def test_vhd_truncated_through_its_data(entries, tmp_path, length):
    path = _copy(entries, 'data-vhd-default.vhd', tmp_path)
    os.truncate(path, length)
    _assert_refused_like_qemu(path, 'vhd', 'table_bounds')


def test_vhd_bat_at_offset_0(entries, tmp_path):
    """The BAT pointer at the footer: its "entries" map blocks far away."""
    path = _copy(entries, 'vhd-dynamic-forceoff-s1.vhd', tmp_path)
    with open(path, 'r+b') as f:
        f.seek(512 + 16)
        f.write(struct.pack('>Q', 0))
    _assert_refused_like_qemu(path, 'vhd', 'table_bounds')


def test_vhd_block_ending_in_the_last_partial_sector(entries, tmp_path):
    """qemu compares with the length rounded up to a sector."""
    path = _copy(entries, 'data-vhd-default.vhd', tmp_path)
    size = os.path.getsize(path)
    os.truncate(path, size - 512 - 100)     # the footer copy, mostly
    info = helpers.qemu_info(path, 'vhd')
    assert info is not None
    helpers.assert_hostile(path, None, disk_format='vhd')


def test_vhd_bat_too_large_to_inspect(entries, tmp_path):
    """Max Table Entries of 8 Mi (a 32 MiB BAT, which qemu reads): over
    the bound of what is inspected, refused (table_size).
    """
    path = _copy(entries, 'vhd-dynamic-forceoff-s1.vhd', tmp_path)
    with open(path, 'r+b') as f:
        f.seek(512 + 28)
        f.write(struct.pack('>I', vhd.MAX_BAT_BYTES // 4 + 1))
    helpers.assert_hostile(path, 'table_size', disk_format='vhd')


# 2. vhdx, checks table_bounds and region_overlap: qemu's
#    vhdx_check_bat_entries() was not ported; truncated VHDX images with
#    data, and blocks overlapping metadata, were accepted.

def _vhdx_with_partial_block(tmp_path):
    """17 MiB in 8 MiB blocks; the last (1 MiB) block is written, at
    8 MiB in the file.
    """
    path = str(tmp_path / 'partial.vhdx')
    helpers.create(path, 'vhdx', 17 * MiB)
    subprocess.run(['qemu-io', '-f', 'vhdx', '-c',
                    'write -P 0x5a %d 1M' % (16 * MiB), path], check=True,
                   stdout=subprocess.DEVNULL)
    return path


def _region_table_fixed(path, changes):
    """Apply ``changes`` ((offset, fmt, value)) and re-checksum the region
    table.
    """
    with open(path, 'r+b') as f:
        for at, fmt, value in changes:
            f.seek(at)
            f.write(struct.pack(fmt, value))
        at = vhdx.REGION_TABLE_OFFSET
        f.seek(at)
        table = f.read(vhdx.REGION_TABLE_SIZE)
        f.seek(at + 4)
        f.write(struct.pack('<I', crc32c.crc32c(
            table[:4] + b'\0\0\0\0' + table[8:])))


@pytest.mark.parametrize('length', (4 * MiB, 20000000, 24 * MiB - 4096))
def test_vhdx_truncated_through_its_data(entries, tmp_path, length):
    path = _copy(entries, 'data-vhdx-default.vhdx', tmp_path)
    os.truncate(path, length)
    _assert_refused_like_qemu(path, 'vhdx', 'table_bounds')


@helpers.requires_qemu_img
def test_vhdx_last_block_may_be_partial(tmp_path):
    """The block of the disk's last MiB is allowed to end with the file;
    one sector less and qemu refuses.
    """
    path = _vhdx_with_partial_block(tmp_path)
    os.truncate(path, 9 * MiB)
    helpers.assert_like_qemu(path, 'vhdx')
    os.truncate(path, 9 * MiB - 512)
    _assert_refused_like_qemu(path, 'vhdx', 'table_bounds')


@helpers.requires_qemu_img
def test_vhdx_block_overlapping_the_metadata(tmp_path):
    path = _vhdx_with_partial_block(tmp_path)
    with open(path, 'r+b') as f:
        f.seek(2 * MiB + 16)                # BAT entry 2
        f.write(struct.pack('<Q',
                            3 * MiB | vhdx_bat.PAYLOAD_BLOCK_FULLY_PRESENT))
    _assert_refused_like_qemu(path, 'vhdx', 'region_overlap')


@helpers.requires_qemu_img
def test_vhdx_bat_after_the_metadata(tmp_path):
    """Hyper-V's order (metadata, then BAT): the BAT is read once the
    block size is known, still in one pass.
    """
    path = _vhdx_with_partial_block(tmp_path)
    with open(path, 'r+b') as f:
        f.seek(2 * MiB)
        bat = f.read(MiB)
        f.seek(2 * MiB)
        f.write(bytes(MiB))
        f.seek(4 * MiB)
        f.write(bat)
    entry = vhdx.REGION_TABLE_OFFSET + 16
    _region_table_fixed(path, [(entry + 16, '<Q', 4 * MiB)])
    helpers.assert_like_qemu(path, 'vhdx')
    os.truncate(path, 9 * MiB - 512)
    _assert_refused_like_qemu(path, 'vhdx', 'table_bounds')


@helpers.requires_qemu_img
@pytest.mark.parametrize('length,opens', ((0xfff00000, False),
                                          (0x10000000, True)))
def test_vhdx_bat_region_qemu_cannot_read(tmp_path, length, opens):
    """qemu reads the BAT region in one request: past 2 GiB it fails.
    (The region that opens is kept at 256 MiB: qemu allocates it.)
    """
    path = _vhdx_with_partial_block(tmp_path)
    entry = vhdx.REGION_TABLE_OFFSET + 16
    _region_table_fixed(path, [(entry + 16, '<Q', 64 * MiB),
                               (entry + 24, '<I', length)])
    if opens:
        helpers.assert_like_qemu(path, 'vhdx')
    else:
        _assert_refused_like_qemu(path, 'vhdx', 'table_bounds')


@helpers.requires_qemu_img
def test_vhdx_of_zero_bytes(tmp_path):
    """qemu-img's uint32 arithmetic gives a 0-byte disk a 64 MiB BAT:
    the largest BAT inspected.
    """
    path = helpers.create(str(tmp_path / 'zero.vhdx'), 'vhdx', 0)
    helpers.assert_like_qemu(path, 'vhdx')


# 3. qcow2, check encryption: a LUKS-encrypted qcow2 cut inside its LUKS
#    header.  Only the header's magic was checked; qemu checks its key
#    slots ("Keyslot 6 is corrupted (stripes 0 != 4000)").

def test_qcow2_luks_header_cut_short(entries, tmp_path):
    path = _copy(entries, 'qcow2-luks.qcow2', tmp_path)
    with open(path, 'rb') as f:
        head = f.read(4096)
    # The crypto header extension gives the LUKS header's offset.
    offset = struct.unpack_from('>I', head, 100)[0]
    while True:
        kind, length = struct.unpack_from('>II', head, offset)
        if kind == 0x0537be77:
            luks_at = struct.unpack_from('>Q', head, offset + 8)[0]
            break
        offset += 8 + (length + 7) // 8 * 8
    os.truncate(path, luks_at + 512)
    _assert_refused_like_qemu(path, 'qcow2', 'encryption')


def test_qcow2_luks_key_slot_damaged(entries, tmp_path):
    path = _copy(entries, 'qcow2-luks.qcow2', tmp_path)
    with open(path, 'rb') as f:
        data = f.read()
    luks_at = data.index(b'LUKS\xba\xbe')
    with open(path, 'r+b') as f:
        f.seek(luks_at + 208 + 44)          # key slot 0: stripes
        f.write(struct.pack('>I', 3999))
    _assert_refused_like_qemu(path, 'qcow2', 'encryption')


# 4. qcow2, check table_bounds: qemu reads the snapshot table when it
#    opens an image (qcow2_read_snapshots) and refuses an entry with more
#    than 1 KiB of extra data; the table was not read, so a header whose
#    nb_snapshots points at garbage was accepted.  Found by tools/fuzz
#    --long (nb_snapshots 2969 in a version 2 image, table at offset 0).

def _snapshot_image(tmp_path):
    path = str(tmp_path / 'snap.qcow2')
    helpers.create(path, 'qcow2', 1 << 30)
    for name in ('first', 'second-snapshot'):
        subprocess.run(['qemu-img', 'snapshot', '-c', name, path],
                       check=True)
    return path


def test_qcow2_snapshot_count_pointing_at_the_header(entries, tmp_path):
    path = _copy(entries, 'qcow2-v0.10-c64k-s1.qcow2', tmp_path)
    with open(path, 'r+b') as f:
        f.seek(60)
        f.write(struct.pack('>I', 2969))
    _assert_refused_like_qemu(path, 'qcow2', 'table_bounds')


@helpers.requires_qemu_img
def test_qcow2_with_snapshots(tmp_path):
    helpers.assert_like_qemu(_snapshot_image(tmp_path), 'qcow2')


@helpers.requires_qemu_img
@pytest.mark.parametrize('extra,opens', ((1024, True), (1025, False)))
def test_qcow2_snapshot_extra_data_limit(tmp_path, extra, opens):
    path = _snapshot_image(tmp_path)
    with open(path, 'rb') as f:
        head = f.read(72)
    table = struct.unpack_from('>Q', head, 64)[0]
    with open(path, 'r+b') as f:
        f.seek(table + 36)                  # entry 0: extra_data_size
        f.write(struct.pack('>I', extra))
    if opens:
        helpers.assert_like_qemu(path, 'qcow2')
    else:
        _assert_refused_like_qemu(path, 'qcow2', 'table_bounds')


# 5. stream.py: a chunk that is not ``bytes`` (a memoryview, a bytearray
#    the caller reuses) of 4 KiB or more was kept as a copy of its last
#    4 KiB but counted whole, so the next small chunks pushed the copy out
#    of the tail: the image's last bytes were lost and a fixed VHD's
#    footer went unseen (verdict raw, where seekable mode said vhd).
#    Found by test_fuzz (chunk sizes 1, 1, 1806, 65536).

@pytest.mark.parametrize('sizes', ([65536, 1], [1, 1, 1806, 65536],
                                   [4096, 7]))
def test_stream_tail_after_large_buffer_chunks(entries, sizes):
    import glance_vsize
    from tests.hardening import support
    entry = entries['vhd-fixed-forceoff-s0.vhd']
    with open(entry['path'], 'rb') as f:
        data = bytearray(f.read())
    expected = glance_vsize.inspect_file(entry['path'])
    assert (expected.format, expected.virtual_size) == (
        'vhd', entry['virtual_size'])
    result = support.streamed(data, sizes)
    assert result.as_dict() == expected.as_dict()

    def chunks():
        view, pos, i = memoryview(data), 0, 0
        while pos < len(data):
            yield view[pos:pos + sizes[i % len(sizes)]]
            pos += sizes[i % len(sizes)]
            i += 1
    reader = glance_vsize.InspectingReader(chunks(), 'vhd')
    for _chunk in reader:
        pass
    assert reader.result.as_dict() == expected.as_dict()
