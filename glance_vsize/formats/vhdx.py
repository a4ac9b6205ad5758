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

"""VHDX images.

References: Microsoft [MS-VHDX] "Virtual Hard Disk v2 (VHDX) File Format",
2.2 (file type identifier, headers, region table) and 2.6 (metadata
region); qemu 7.2 ``block/vhdx.c`` (``vhdx_open()``,
``vhdx_parse_header()``, ``vhdx_open_region_tables()``,
``vhdx_parse_metadata()``).  The log (2.3) is checked by :mod:`.vhdx_log`,
the BAT (2.5) by :mod:`.vhdx_bat`.

We check what qemu checks when it opens an image:

* headers at 64 and 128 KiB: valid with a correct CRC-32C over 4 KiB,
  signature ``head`` and Version 1; the higher SequenceNumber wins; equal
  numbers are refused unless the headers are identical (as Disk2VHD
  writes them);
* the current header's log: LogOffset a non-zero multiple of 1 MiB,
  LogVersion 0, LogLength a multiple of 1 MiB, and no entries to replay
  (qemu refuses to replay a log on a read-only open);
* the region table at 192 KiB (the copy at 256 KiB is ignored): CRC-32C,
  signature, at most 2047 entries, no overlaps (with the log either), one
  BAT and one metadata region, no unknown required region;
* the metadata table: signature, at most 2047 entries, each known item
  once, no unknown required item, the five required items, no parent
  (qemu does not open differencing disks), Block Size a power of two from
  1 MiB to 256 MiB, Logical Sector Size 512 (the only one qemu supports),
  a BAT region large enough for the disk's blocks;
* the BAT (``vhdx_check_bat_entries()``): every fully present block ends
  within the file (the last one may be partial) and overlaps no region.
  qemu-img puts the BAT before the metadata that gives the block size, so
  the BAT is summarised as it passes (the two largest block offsets, and
  the largest offset below each region's end) and checked afterwards.
  Every entry of the BAT region read is checked, also those past the
  disk's last block, which qemu skips (they are zero in the images qemu
  and Hyper-V write); BATs of more than ``MAX_BAT_BYTES`` are refused.

Like qemu, we read zeros past the end of the file.  The virtual size is
Virtual Disk Size truncated to a 512-byte sector.
"""

import collections
import logging
import struct
from typing import Any
from typing import cast
import uuid

from glance_vsize.formats import base
from glance_vsize.formats import crc32c
from glance_vsize.formats import vhdx_bat
from glance_vsize.formats import vhdx_log
from glance_vsize import inspection

LOG = logging.getLogger(__name__)

KiB, MiB = 1 << 10, 1 << 20

#: 2.2.1 File Type Identifier: Signature, Creator (UTF-16).
VHDX_FILE_IDENTIFIER = struct.Struct('<8s512s')
FILE_SIGNATURE = b'vhdxfile'

#: 2.2.2 Header: Signature, Checksum, SequenceNumber, FileWriteGuid,
#: DataWriteGuid, LogGuid, LogVersion, Version, LogLength, LogOffset.
VHDX_HEADER = struct.Struct('<4sIQ16s16s16sHHIQ')
Header = collections.namedtuple(
    'Header', 'signature checksum sequence_number file_write_guid '
    'data_write_guid log_guid log_version version log_length log_offset')
HEADER_SIGNATURE, HEADER_SIZE = b'head', 4 * KiB
HEADER_OFFSETS = (64 * KiB, 128 * KiB)

#: 2.2.3 Region Table Header: Signature, Checksum, EntryCount, Reserved.
VHDX_REGION_TABLE_HEADER = struct.Struct('<4sIII')
#: 2.2.3.1 Region Table Entry: Guid, FileOffset, Length, Required.
VHDX_REGION_TABLE_ENTRY = struct.Struct('<16sQII')
REGION_SIGNATURE, REGION_REQUIRED = b'regi', 0x1
REGION_TABLE_OFFSET, REGION_TABLE_SIZE = 192 * KiB, 64 * KiB
MAX_ENTRIES = 2047

#: 2.6.1.1 Metadata Table Header: Signature, Reserved, EntryCount,
#: Reserved2.
VHDX_METADATA_TABLE_HEADER = struct.Struct('<8sHH20s')
#: 2.6.1.2 Metadata Table Entry: ItemId, Offset, Length, flags (IsUser,
#: IsVirtualDisk, IsRequired), Reserved2.
VHDX_METADATA_TABLE_ENTRY = struct.Struct('<16sIII4s')
METADATA_SIGNATURE, METADATA_TABLE_SIZE = b'metadata', 64 * KiB
METADATA_REQUIRED = 0x4
#: 2.6.2.1 File Parameters: BlockSize, flags (LeaveBlockAllocated,
#: HasParent).
VHDX_FILE_PARAMETERS = struct.Struct('<II')
LEAVE_BLOCK_ALLOCATED, HAS_PARENT = 0x1, 0x2


def _guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


BAT_GUID = _guid('2DC27766-F623-4200-9D64-115E9BFD4A08')
METADATA_GUID = _guid('8B7CA206-4790-4B9A-B8FE-575F050F886E')
FILE_PARAMETERS = _guid('CAA16737-FA36-4D43-B3B6-33F0AA44E76B')
VIRTUAL_DISK_SIZE = _guid('2FA54224-CD1B-4876-B211-5DBED83BF4B8')
PAGE_83_DATA = _guid('BECA12AB-B2E6-4523-93EF-C309E000C746')
LOGICAL_SECTOR_SIZE = _guid('8141BF1D-A96F-4709-BA47-F233A8FAAB5F')
PHYSICAL_SECTOR_SIZE = _guid('CDA348C7-445D-4471-9CC9-E9885251C556')
PARENT_LOCATOR = _guid('A8D35F2D-B30B-454D-ABF7-D3D84834AB0C')
#: Item GUID -> (name, bytes qemu reads from it).
METADATA_ITEMS = {
    FILE_PARAMETERS: ('File Parameters', VHDX_FILE_PARAMETERS.size),
    VIRTUAL_DISK_SIZE: ('Virtual Disk Size', 8),
    PAGE_83_DATA: ('Page 83 Data', 0),
    LOGICAL_SECTOR_SIZE: ('Logical Sector Size', 4),
    PHYSICAL_SECTOR_SIZE: ('Physical Sector Size', 4),
    PARENT_LOCATOR: ('Parent Locator', 0),
}
REQUIRED_ITEMS = (FILE_PARAMETERS, VIRTUAL_DISK_SIZE, PAGE_83_DATA,
                  LOGICAL_SECTOR_SIZE, PHYSICAL_SECTOR_SIZE)

BLOCK_SIZE_MIN, BLOCK_SIZE_MAX = 1 * MiB, 256 * MiB
#: 2.6.2.3: sectors per block * chunk ratio.
MAX_SECTORS_PER_BLOCK = 1 << 23
#: 2.6.2.2: the largest Virtual Disk Size (64 TiB), also qemu-img's limit.
MAX_VIRTUAL_DISK_SIZE = 64 << 40
#: qemu's block layer refuses reads that end beyond this.
BDRV_MAX_LENGTH = ((1 << 63) - 1) // (1 << 30) * (1 << 30)
#: ... and reads longer than this (the BAT region is read in one).
BDRV_REQUEST_MAX_BYTES = 0x7ffffe00
UINT32, UINT64 = (1 << 32) - 1, (1 << 64) - 1

#: The most BAT bytes examined: 8 Mi entries, 64 TiB in blocks of 8 MiB
#: or 8 TiB in blocks of 1 MiB; also the BAT qemu-img makes for a disk of
#: 0 bytes (its uint32 arithmetic wraps).  Larger BATs are refused
#: (``table_size``).
MAX_BAT_BYTES = 64 * MiB


def checksum_ok(block: bytes) -> bool:
    """[MS-VHDX] 2.2.2/2.2.3: the Checksum field (at offset 4) is the
    CRC-32C of the whole block with the field itself zeroed.
    """
    stored: int = struct.unpack_from('<I', block, 4)[0]
    return crc32c.crc32c(block[:4] + b'\0\0\0\0' + block[8:]) == stored


def _error(check: str, reason: str, *args: object) -> base.FormatError:
    return base.FormatError(check, reason % args)


class VhdxInspector(base.FormatInspector):
    """Microsoft VHDX, dynamic and fixed (differencing disks are refused,
    as by qemu).
    """

    name = 'vhdx'
    order = 50

    #: The checks this inspector can fail, and what each means.
    CHECKS = {
        'header':
            'no valid header, or two different headers with one sequence '
            'number',
        'checksum': 'the region table checksum is wrong',
        'region_table': 'a malformed or incomplete region table',
        'region_overlap': 'regions, or a block and a region, overlap',
        'unknown_region': 'a required region qemu does not know',
        'metadata': 'a malformed or incomplete metadata table',
        'unknown_metadata': 'a required metadata item qemu does not know',
        'parent': 'a differencing disk naming a parent image',
        'block_size':
            'a BlockSize that is not a power of two from 1 MiB to 256 MiB',
        'logical_sector_size': 'a logical sector size other than 512',
        'table_size': 'a BAT too large to inspect or too small for the disk',
        'table_bounds':
            'the BAT, or a block it maps, lies beyond what qemu reads',
        'size_limit': 'a virtual disk size over 64 TiB',
        'stream_order': 'a structure lies before data already read',
        'log': 'malformed log fields in the current header',
        'log_replay':
            'a log that needs replaying, which qemu refuses read-only',
    }

    def inspect(self, probe: base.Probe,
                policy: inspection.Policy) -> base.Reads[None]:
        ident = yield base.Read(0, VHDX_FILE_IDENTIFIER.size)
        if ident[:len(FILE_SIGNATURE)] != FILE_SIGNATURE:
            return
        probe.match('signature %r at offset 0' % FILE_SIGNATURE.decode())
        creator = ident[8:].decode('utf-16-le', 'replace').split('\0')[0]
        if creator:
            probe.details['creator'] = creator
        reader = base.Reader(position=len(ident), retain='all',
                             limit=BDRV_MAX_LENGTH)
        # Both headers and the region table: 64 KiB to 256 KiB.
        start = HEADER_OFFSETS[0]
        block = yield from reader.read(
            start, REGION_TABLE_OFFSET + REGION_TABLE_SIZE - start,
            'the header section')
        header = self._header(block, start)
        scan = vhdx_log.check_fields(header)
        regions = [(header.log_offset, header.log_length, 'the log')]
        bat, metadata = self._region_table(
            block[REGION_TABLE_OFFSET - start:], regions)
        if bat[0] + bat[1] > BDRV_MAX_LENGTH or \
                bat[1] > BDRV_REQUEST_MAX_BYTES:
            raise _error('table_bounds', 'the BAT region of %d bytes at '
                         'offset %d is beyond what qemu reads', bat[1],
                         bat[0])
        # In file order: the log, the metadata and the BAT.
        steps = sorted([(metadata[0], 1), (bat[0], 2)] +
                       ([(header.log_offset, 0)] if scan else []))
        table = vhdx_bat.BatTable(regions)
        disk: tuple[int, int, int] | None = None  # block size, size, entries
        for _offset, step in steps:
            if step == 0:
                yield from vhdx_log.scan(reader, header)
            elif step == 1:
                disk = yield from self._metadata(probe, reader, bat,
                                                 metadata)
            else:
                # Before the metadata, the number of entries qemu checks
                # is not known yet: read the whole region.
                count = disk[2] if disk else bat[1] // 8
                yield from table.read(reader, bat[0],
                                      min(count, MAX_BAT_BYTES // 8))
        block_size, size, entries = cast(tuple[int, int, int], disk)
        if entries > MAX_BAT_BYTES // 8:
            raise _error('table_size', 'a BAT of %d entries (at offset %d) '
                         'is more than the %d bytes inspected', entries,
                         bat[0], MAX_BAT_BYTES)
        length = yield base.LENGTH
        table.check(block_size, base.round_down(size), base.round_up(length))

    def _header(self, block: bytes, start: int) -> Any:
        """2.2.2: the current header, by ``vhdx_parse_header()``'s rules."""
        valid, why = [], []
        for offset in HEADER_OFFSETS:
            raw = block[offset - start:offset - start + HEADER_SIZE]
            fields = Header._make(VHDX_HEADER.unpack_from(raw))
            if not checksum_ok(raw):
                why.append('bad checksum at offset %d' % offset)
            elif fields.signature != HEADER_SIGNATURE or fields.version != 1:
                why.append('signature %r version %d at offset %d'
                           % (fields.signature, fields.version, offset))
            else:
                valid.append((fields.sequence_number, -offset,
                              raw[:VHDX_HEADER.size], fields))
        if not valid:
            raise _error('header', 'no valid header: %s', ', '.join(why))
        if len(valid) == 2 and valid[0][0] == valid[1][0] and \
                valid[0][2] != valid[1][2]:
            raise _error('header', 'the headers at offsets %d and %d differ '
                         'but have the same SequenceNumber %d',
                         *HEADER_OFFSETS, valid[0][0])
        current = max(valid)    # on a tie, the header at 64 KiB
        LOG.debug('VHDX header at offset %d, SequenceNumber %d, is current',
                  -current[1], current[0])
        return current[3]

    def _region_table(self, table: bytes,
                      regions: list[tuple[int, int, str]],
                      ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """2.2.3: the BAT and metadata regions, as ``(offset, length)``;
        ``regions`` holds the log, which no region may overlap.
        """
        signature, _crc, count, _res = \
            VHDX_REGION_TABLE_HEADER.unpack_from(table)
        if not checksum_ok(table):
            raise _error('checksum', 'bad checksum of the region table at '
                         'offset %d', REGION_TABLE_OFFSET)
        if signature != REGION_SIGNATURE or count > MAX_ENTRIES:
            raise _error('region_table', 'the region table at offset %d has '
                         'signature %r and %d entries (at most %d)',
                         REGION_TABLE_OFFSET, signature, count, MAX_ENTRIES)
        found: dict[bytes, tuple[int, int, int]] = {}
        for i in range(count):
            guid, offset, length, flags = VHDX_REGION_TABLE_ENTRY.unpack_from(
                table, VHDX_REGION_TABLE_HEADER.size + i * 32)
            end = (offset + length) & UINT64    # as in C
            for r_offset, r_length, r_what in regions:
                if not (offset >= (r_offset + r_length) & UINT64 or
                        end <= r_offset):
                    raise _error('region_overlap', 'region %d (%d bytes at '
                                 'offset %d) overlaps %s (%d bytes at offset '
                                 '%d)', i, length, offset, r_what, r_length,
                                 r_offset)
            regions.append((offset, length, 'region %d' % i))
            if guid in (BAT_GUID, METADATA_GUID):
                if guid in found:
                    raise _error('region_table', 'region %d repeats region '
                                 '%d', i, found[guid][2])
                found[guid] = (offset, length, i)
            elif flags & REGION_REQUIRED:
                raise _error('unknown_region', 'region %d (%s at offset %d) '
                             'is required but unknown', i,
                             uuid.UUID(bytes_le=guid), offset)
        if len(found) != 2:
            raise _error('region_table', 'the region table at offset %d lacks '
                         'the %s region', REGION_TABLE_OFFSET,
                         'metadata' if BAT_GUID in found else 'BAT')
        return found[BAT_GUID], found[METADATA_GUID]

    def _metadata(self, probe: base.Probe, reader: base.Reader,
                  bat: tuple[int, int, int], metadata: tuple[int, int, int],
                  ) -> base.Reads[tuple[int, int, int]]:
        """2.6: the metadata table, its items, and the virtual size."""
        table_offset = metadata[0]
        table = yield from reader.read(table_offset, METADATA_TABLE_SIZE,
                                       'the metadata table')
        signature, _res, count, _res2 = \
            VHDX_METADATA_TABLE_HEADER.unpack_from(table)
        if signature != METADATA_SIGNATURE or count > MAX_ENTRIES:
            raise _error('metadata', 'the metadata table at offset %d has '
                         'signature %r and %d entries (at most %d)',
                         table_offset, signature, count, MAX_ENTRIES)
        at: dict[bytes, int] = {}
        for i in range(count):
            guid, offset, _length, flags, _res = \
                VHDX_METADATA_TABLE_ENTRY.unpack_from(table, (i + 1) * 32)
            if guid in at:
                raise _error('metadata', 'metadata entry %d repeats %s', i,
                             METADATA_ITEMS[guid][0])
            if guid in METADATA_ITEMS:
                at[guid] = table_offset + offset
            elif flags & METADATA_REQUIRED:
                raise _error('unknown_metadata', 'metadata entry %d (%s) is '
                             'required but unknown', i,
                             uuid.UUID(bytes_le=guid))
        if PARENT_LOCATOR in at:
            raise _error('parent', 'differencing disk: a Parent Locator at '
                         'offset %d names a parent disk', at[PARENT_LOCATOR])
        missing = [METADATA_ITEMS[g][0] for g in REQUIRED_ITEMS
                   if g not in at]
        if missing:
            raise _error('metadata', 'the metadata table at offset %d lacks '
                         '%s', table_offset, ', '.join(missing))
        values = {}
        for offset, guid in sorted((at[g], g) for g in at):
            name, size = METADATA_ITEMS[guid]
            if size:
                values[guid] = yield from reader.read(offset, size, name)
        block_size, flags = VHDX_FILE_PARAMETERS.unpack(
            values[FILE_PARAMETERS])
        size, = struct.unpack('<Q', values[VIRTUAL_DISK_SIZE])
        sector, = struct.unpack('<I', values[LOGICAL_SECTOR_SIZE])
        if flags & HAS_PARENT:
            raise _error('parent', 'File Parameters at offset %d have '
                         'HasParent set (a differencing disk)',
                         at[FILE_PARAMETERS])
        probe.variant = 'fixed' if flags & LEAVE_BLOCK_ALLOCATED else \
            'dynamic'
        if not BLOCK_SIZE_MIN <= block_size <= BLOCK_SIZE_MAX or \
                block_size & (block_size - 1):
            raise _error('block_size', 'File Parameters at offset %d give '
                         'BlockSize %d, not a power of two from 1 MiB to '
                         '256 MiB', at[FILE_PARAMETERS], block_size)
        if sector != base.SECTOR:
            raise _error('logical_sector_size', 'Logical Sector Size %d at '
                         'offset %d: qemu supports only 512', sector,
                         at[LOGICAL_SECTOR_SIZE])
        # vhdx_calc_bat_entries(), in qemu's uint32 arithmetic.
        chunk_ratio = MAX_SECTORS_PER_BLOCK * base.SECTOR // block_size
        blocks = -(-size // block_size) & UINT32
        entries = (blocks + (((blocks - 1) & UINT32) >>
                             (chunk_ratio.bit_length() - 1))) & UINT32
        if entries > bat[1] // 8:
            raise _error('table_size', 'the BAT region at offset %d has %d '
                         'bytes, too few for %d entries', bat[0], bat[1],
                         entries)
        # Not in qemu, which opens larger disks when the BAT region is large
        # enough (and then indexes it in uint32 arithmetic).
        if size > MAX_VIRTUAL_DISK_SIZE:
            raise _error('size_limit', 'Virtual Disk Size %d at offset %d is '
                         'over the 64 TiB limit of the specification', size,
                         at[VIRTUAL_DISK_SIZE])
        probe.virtual_size = base.round_down(size)
        return block_size, size, entries
