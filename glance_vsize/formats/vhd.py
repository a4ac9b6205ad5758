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

"""VHD (Virtual PC, qemu's ``vpc`` driver) images.

References: Microsoft "Virtual Hard Disk Image Format Specification"
(version 1.0, 2006), sections "Hard Disk Footer Format" and "Dynamic Disk
Header Format"; qemu 7.2 ``block/vpc.c``, ``vpc_open()``.

Where qemu looks for the footer (and so which kind of image it sees):

* a dynamic or differencing disk starts with a copy of its 512-byte footer
  (cookie ``conectix``), and its dynamic disk header (cookie ``cxsparse``)
  is at the footer's Data Offset;
* otherwise qemu reads the footer in the last 512 bytes (of the file
  length rounded up to 512, zero-filled), and since qemu 6.2 requires its
  Disk Type to be 2, fixed.  A fixed disk's data is the file's own bytes
  from offset 0, so a partition table or ISO inside it is expected.

qemu refuses a footer whose checksum is wrong, a disk over 2040 GiB
(``VHD_MAX_SECTORS``), a dynamic header with an invalid Block Size or
a Max Table Entries that does not cover the disk, and a dynamic disk whose
BAT maps a block that ends after the end of the file (a truncated image).
It ignores the dynamic header's checksum, and reads a differencing disk
(Disk Type 4) as a dynamic disk without its parent; we refuse that
(check ``parent``).

The virtual size depends on the creator application
(:attr:`~glance_vsize.inspection.Policy.vhd_size_rule`):

``qemu7``
    qemu 7.2 (and every release before 10.0): cylinders x heads x sectors
    of the Disk Geometry, unless the Creator Application is ``win ``
    (Hyper-V), ``qem2`` (qemu with ``force_size=on``), ``d2v `` (Disk2vhd),
    ``CTXS`` (XenConverter) or ``tap\\0`` (XenServer), or the geometry is
    the maximum 65535/16/255: then Current Size, truncated to 512 bytes.
``qemu10``
    qemu >= 10.0 (commit "vpc: Read images exported from Azure correctly",
    ``vpc_ignore_current_size()``) inverted the list: the geometry is used
    only for ``vpc `` (Virtual PC) and ``qemu`` images, Current Size for
    every other creator (e.g. Azure's ``wa\\0\\0``); the maximum geometry
    still means Current Size.
"""

import array
import collections
import logging
import struct
import sys
from typing import Any
from typing import cast

from glance_vsize.formats import base
from glance_vsize import inspection

LOG = logging.getLogger(__name__)

#: Hard Disk Footer: Cookie, Features, File Format Version, Data Offset,
#: Time Stamp, Creator Application, Creator Version, Creator Host OS,
#: Original Size, Current Size, Disk Geometry (Cylinders, Heads, Sectors
#: per track), Disk Type, Checksum, Unique Id, Saved State (then 427
#: reserved bytes, up to 512).
VHD_FOOTER = struct.Struct('>8sIIQI4sI4sQQHBBII16sB')
Footer = collections.namedtuple(
    'Footer', 'cookie features version data_offset timestamp creator '
    'creator_version creator_os original_size current_size cylinders heads '
    'sectors disk_type checksum unique_id saved_state')
FOOTER_SIZE = 512
FOOTER_COOKIE = b'conectix'
CHECKSUM_OFFSET = 64

#: Dynamic Disk Header: Cookie, Data Offset, Table Offset, Header Version,
#: Max Table Entries, Block Size, Checksum, Parent Unique ID, Parent Time
#: Stamp, Reserved, Parent Unicode Name (then 8 parent locator entries and
#: reserved bytes, up to 1024).
VHD_DYNAMIC_HEADER = struct.Struct('>8sQQIIII16sII512s')
DynamicHeader = collections.namedtuple(
    'DynamicHeader', 'cookie data_offset table_offset version '
    'max_table_entries block_size checksum parent_unique_id '
    'parent_timestamp reserved parent_name')
DYNAMIC_HEADER_SIZE = 1024
DYNAMIC_COOKIE = b'cxsparse'

DISK_TYPE_FIXED = 2
DISK_TYPE_DYNAMIC = 3
DISK_TYPE_DIFFERENCING = 4

#: qemu's limit: 2040 GiB.
VHD_MAX_SECTORS = 0xff000000
VHD_MAX_GEOMETRY = 65535 * 16 * 255
#: Creator applications whose Current Size qemu 7.2 trusts.
QEMU7_CURRENT_SIZE_CREATORS = frozenset(
    (b'win ', b'qem2', b'd2v ', b'CTXS', b'tap\0'))
#: Creator applications whose geometry qemu >= 10 still trusts.
QEMU10_CHS_CREATORS = frozenset((b'vpc ', b'qemu'))

#: qemu's block layer limits (include/block/block_int-common.h): a read
#: beyond BDRV_MAX_LENGTH or longer than BDRV_REQUEST_MAX_BYTES fails.
BDRV_MAX_LENGTH = ((1 << 63) - 1) // (1 << 30) * (1 << 30)
BDRV_REQUEST_MAX_BYTES = 0x7ffffe00
#: qemu keeps Max Table Entries in an int and refuses > INT_MAX / 4.
MAX_TABLE_ENTRIES = 0x7fffffff // 4

#: Footer copy at 0 plus the dynamic header where qemu-img puts it.
HEAD_LENGTH = FOOTER_SIZE + DYNAMIC_HEADER_SIZE
#: The largest BAT read (4 Mi entries: a 2040 GiB disk of 512 KiB blocks,
#: Virtual PC's size).  qemu reads BATs of up to 2 GiB; larger ones are
#: refused here (``table_size``) so that the work stays bounded.
MAX_BAT_BYTES = 16 << 20
#: The BAT is read in regions of this size (bounded memory in streaming).
BAT_REGION = 256 << 10
_UNUSED_REGION = b'\xff' * BAT_REGION
#: A BAT entry for an unallocated block.
BAT_UNUSED = 0xffffffff
#: The array type code of unsigned 32-bit integers.
_UINT32 = next(code for code in 'IL' if array.array(code).itemsize == 4)


def footer_checksum(footer: bytes) -> int:
    """Spec, "Checksum": one's complement of the byte sum, field zeroed."""
    total = sum(footer) - sum(footer[CHECKSUM_OFFSET:CHECKSUM_OFFSET + 4])
    return ~total & 0xffffffff


def virtual_sectors(creator: bytes, current_size: int,
                    geometry: tuple[int, int, int],
                    rule: str) -> tuple[int, str]:
    """The disk size in sectors as ``vpc_open()`` computes it.

    :returns: ``(sectors, how)`` where ``how`` is ``chs`` or
        ``current_size``.
    """
    cylinders, heads, sectors = geometry
    chs = cylinders * heads * sectors
    if rule == 'qemu10':
        use_chs = creator in QEMU10_CHS_CREATORS
    else:
        use_chs = creator not in QEMU7_CURRENT_SIZE_CREATORS
    if not use_chs or chs == VHD_MAX_GEOMETRY:
        return current_size // base.SECTOR, 'current_size'
    return chs, 'chs'


class VhdInspector(base.FormatInspector):
    """Microsoft VHD: fixed, dynamic and differencing disks."""

    name = 'vhd'
    order = 40
    qemu_name = 'vpc'

    #: The checks this inspector can fail, and what each means.
    CHECKS = {
        'disk_type': 'a footer whose Disk Type does not fit where it is',
        'checksum': 'the footer checksum is wrong',
        'size_limit': 'a size over qemu\'s limit of 2040 GiB',
        'dynamic_header': 'no dynamic disk header where the footer points',
        'parent': 'a differencing disk naming a parent image',
        'block_size':
            'a Block Size that is not a power of two of at least 512',
        'table_size':
            'a block allocation table too large, or too small for the disk',
        'table_bounds':
            'the block allocation table, or a block it maps, lies beyond the '
            'image',
    }

    def inspect(self, probe: base.Probe,
                policy: inspection.Policy) -> base.Reads[None]:
        head = yield base.Read(0, HEAD_LENGTH)
        if head[:len(FOOTER_COOKIE)] == FOOTER_COOKIE:
            probe.match('cookie %r at offset 0' % FOOTER_COOKIE.decode(),
                        variant='dynamic')
            footer = head[:FOOTER_SIZE].ljust(FOOTER_SIZE, b'\0')
            fields = Footer._make(VHD_FOOTER.unpack_from(footer))
            self._footer(probe, policy, fields, footer, 0)
            yield from self._dynamic(probe, fields, head)
            return

        # Not at 0: qemu reads the footer at the file length rounded up to
        # a sector, minus 512, zero-filled past the end of the file.
        tail = yield base.Tail(FOOTER_SIZE)
        length = yield base.LENGTH
        if length < FOOTER_SIZE:
            return
        partial = length % base.SECTOR
        if partial:
            tail = tail[-partial:].ljust(FOOTER_SIZE, b'\0')
        offset = base.round_up(length) - FOOTER_SIZE
        if tail[:len(FOOTER_COOKIE)] != FOOTER_COOKIE:
            return
        probe.raw_data = True
        probe.match('cookie %r in the footer at offset %d'
                    % (FOOTER_COOKIE.decode(), offset), variant='fixed')
        fields = Footer._make(VHD_FOOTER.unpack_from(tail))
        if fields.disk_type != DISK_TYPE_FIXED:
            raise base.FormatError(
                'disk_type', 'the footer at offset %d has Disk Type %d, but '
                'a footer only at the end of the image must be fixed (2)'
                % (offset, fields.disk_type))
        self._footer(probe, policy, fields, tail, offset)

    def _footer(self, probe: base.Probe, policy: inspection.Policy,
                fields: Any, footer: bytes, offset: int) -> None:
        """Checksum, disk type and size checks common to both footers."""
        probe.details['creator'] = base.cstring(fields.creator)
        probe.details['creator_os'] = base.cstring(fields.creator_os)
        expected = footer_checksum(footer)
        if fields.checksum != expected:
            raise base.FormatError(
                'checksum', 'the footer at offset %d has checksum 0x%08x, '
                'but its bytes sum to 0x%08x'
                % (offset, fields.checksum, expected))
        if offset == 0:
            if fields.disk_type == DISK_TYPE_DIFFERENCING:
                probe.variant = 'differencing'
            elif fields.disk_type != DISK_TYPE_DYNAMIC:
                raise base.FormatError(
                    'disk_type', 'the footer at offset 0 has Disk Type %d, '
                    'but a footer copy at offset 0 is only valid for '
                    'dynamic (3) and differencing (4) disks'
                    % fields.disk_type)
        total, how = virtual_sectors(
            fields.creator, fields.current_size,
            (fields.cylinders, fields.heads, fields.sectors),
            policy.vhd_size_rule)
        LOG.debug('VHD footer at offset %d, creator %r: size from %s',
                  offset, fields.creator, how)
        probe.details['size_from'] = how
        if total > VHD_MAX_SECTORS:
            raise base.FormatError(
                'size_limit', 'the footer at offset %d gives %d sectors '
                '(from %s), over qemu\'s limit of %d (2040 GiB)'
                % (offset, total, how, VHD_MAX_SECTORS))
        probe.virtual_size = total * base.SECTOR

    def _dynamic(self, probe: base.Probe, fields: Any,
                 head: bytes) -> base.Reads[None]:
        """The dynamic disk header at the footer's Data Offset."""
        data_offset = fields.data_offset
        total = cast(int, probe.virtual_size) // base.SECTOR
        if data_offset > BDRV_MAX_LENGTH - DYNAMIC_HEADER_SIZE:
            raise base.FormatError(
                'dynamic_header', 'the footer at offset 0 gives Data Offset '
                '%d, beyond any file' % data_offset)
        raw = yield from base.Reader(head, HEAD_LENGTH).read(
            data_offset, DYNAMIC_HEADER_SIZE)
        header = DynamicHeader._make(
            VHD_DYNAMIC_HEADER.unpack_from(cast(bytes, raw)))
        table_offset = header.table_offset
        max_entries, block_size = header.max_table_entries, header.block_size
        if header.cookie != DYNAMIC_COOKIE:
            raise base.FormatError(
                'dynamic_header', 'no %r dynamic disk header at offset %d '
                '(the Data Offset of the footer at 0)'
                % (DYNAMIC_COOKIE.decode(), data_offset))
        if probe.variant == 'differencing':
            name = header.parent_name.decode('utf-16-be', 'replace')
            name = name.split('\0')[0]
            probe.fail('parent', 'differencing disk (Disk Type 4 in the '
                       'footer at 0) names parent %r at offset %d'
                       % (name, data_offset + 64))
        if block_size < base.SECTOR or block_size & (block_size - 1):
            raise base.FormatError(
                'block_size', 'the dynamic disk header at offset %d has '
                'Block Size %d, not a power of two >= 512'
                % (data_offset, block_size))
        if total * base.SECTOR // block_size > 0xffffffff:
            raise base.FormatError(
                'table_size', 'a disk of %d sectors has too many blocks of '
                '%d bytes' % (total, block_size))
        if max_entries > MAX_TABLE_ENTRIES:
            raise base.FormatError(
                'table_size', 'the dynamic disk header at offset %d has Max '
                'Table Entries %d, over qemu\'s limit of %d'
                % (data_offset, max_entries, MAX_TABLE_ENTRIES))
        if max_entries * block_size < total * base.SECTOR:
            raise base.FormatError(
                'table_size', 'the dynamic disk header at offset %d has Max '
                'Table Entries %d of %d-byte blocks, too few for a disk of '
                '%d bytes' % (data_offset, max_entries, block_size,
                              cast(int, probe.virtual_size)))
        table_size = max_entries * 4
        if table_size > BDRV_REQUEST_MAX_BYTES:
            raise base.FormatError(
                'table_size', 'the block allocation table of %d bytes (from '
                'the header at %d) is too large for qemu to read'
                % (table_size, data_offset))
        if table_offset > BDRV_MAX_LENGTH - table_size:
            raise base.FormatError(
                'table_bounds', 'the block allocation table of %d bytes at '
                'offset %d (from the header at %d) is beyond any file'
                % (table_size, table_offset, data_offset))
        if table_size > MAX_BAT_BYTES:
            raise base.FormatError(
                'table_size', 'the block allocation table of %d bytes (from '
                'the header at %d) is larger than the %d bytes inspected'
                % (table_size, data_offset, MAX_BAT_BYTES))
        # vpc_open() reads the whole BAT and refuses the image when the
        # BAT, or a block it maps (its sector bitmap and data), ends after
        # the end of the file, rounded up to a sector
        # (free_data_block_offset: "The image has been truncated").
        table_end = base.round_up(table_offset + table_size)
        last = yield from _last_block(head, table_offset, max_entries)
        length = yield base.LENGTH
        if table_end > base.round_up(length):
            raise base.FormatError(
                'table_bounds', 'the block allocation table (%d entries at '
                'offset %d) ends at offset %d, after the end of the image '
                '(%d bytes)' % (max_entries, table_offset, table_end, length))
        if last is not None:
            bitmap_size = base.round_up(block_size // (8 * base.SECTOR))
            block_end = last * base.SECTOR + bitmap_size + block_size
            if block_end > base.round_up(length):
                raise base.FormatError(
                    'table_bounds', 'the block allocation table at offset %d '
                    'maps a block at sector %d that ends at offset %d, after '
                    'the end of the image (%d bytes): the image was '
                    'truncated' % (table_offset, last, block_end, length))


def _last_block(head: bytes, offset: int,
                entries: int) -> base.Reads[int | None]:
    """Generator: the largest entry of the BAT of ``entries`` entries at
    ``offset`` that maps a block (the sector of the block that ends last),
    or None.  Read in regions of ``BAT_REGION`` bytes, each dropped before
    the next is asked for; the bytes of ``head`` are taken from it.
    Reading stops at the end of the image: the BAT then ends after it,
    which is refused anyway.  Unused entries (all ones) are skipped at C
    speed, so a sparse disk's BAT costs little whatever its size.
    """
    last = None
    size = entries * 4
    done = 0
    while done < size:
        start = offset + done
        want = min(BAT_REGION, size - done)
        data = head[start:start + want]
        if len(head) == HEAD_LENGTH and start + want > HEAD_LENGTH:
            begin = max(start, HEAD_LENGTH)
            data += yield base.Read(begin, start + want - begin)
        short = len(data) < want
        used = _largest_used(data[:len(data) // 4 * 4])
        del data
        if used is not None and (last is None or used > last):
            last = used
        if short:
            break
        done += want
    return last


def _largest_used(data: bytes) -> int | None:
    """The largest big-endian uint32 of ``data`` that is not BAT_UNUSED."""
    if data == _UNUSED_REGION[:len(data)]:
        return None     # a memcmp: the common case of a sparse disk
    # Trim the unused entries at both ends (whole entries only).
    head = (len(data) - len(data.lstrip(b'\xff'))) // 4 * 4
    tail = (len(data) - len(data.rstrip(b'\xff'))) // 4 * 4
    data = data[head:len(data) - tail]
    if not data:
        return None
    table = array.array(_UINT32, data)
    if sys.byteorder == 'little':
        table.byteswap()
    if b'\xff\xff\xff\xff' not in data:
        return max(table)
    return max(filter(BAT_UNUSED.__ne__, table), default=None)
