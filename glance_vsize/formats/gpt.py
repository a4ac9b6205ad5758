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


"""Partition tables of raw disks: MBR and GPT.

A partitioned raw disk is still read by qemu as raw: its virtual size is
the stream's raw size, decided by the engine.  These inspectors recognise
the tables so that the verdict can say ``raw (gpt)``, so that a hybrid ISO
(an ISO with an MBR/GPT in front) stays an ISO, and so that a partition
table in front of another format's header is noticed.

They are deliberately strict about what they call a table (a boot sector
of a FAT file system also ends in 55 AA) and lenient about its contents:
nothing in a partition table can make qemu read another file.
"""

from collections.abc import Iterator
import struct
from typing import Any
import zlib

from glance_vsize.formats import base
from glance_vsize import inspection

#: UEFI 2.10, 5.2.1 Legacy MBR: four 16-byte partition records at offset
#: 446, then the signature 0x55 0xAA at 510.
MBR_PARTITION_RECORD = struct.Struct('<B3sB3sII')
MBR_PARTITIONS = 446
MBR_SIGNATURE = b'\x55\xaa'
PROTECTIVE_TYPE = 0xEE

#: UEFI 2.10, 5.3.2 GPT Header: Signature, Revision, HeaderSize,
#: HeaderCRC32, Reserved, MyLBA, AlternateLBA, FirstUsableLBA,
#: LastUsableLBA, DiskGUID, PartitionEntryLBA, NumberOfPartitionEntries,
#: SizeOfPartitionEntry, PartitionEntryArrayCRC32.
GPT_HEADER = struct.Struct('<8sIIIIQQQQ16sQIII')
GPT_SIGNATURE = b'EFI PART'
#: Logical block sizes a GPT is found with: its header is at LBA 1.
GPT_BLOCK_SIZES = (512, 4096)


def _mbr_records(sector: bytes) -> Iterator[tuple[Any, ...]]:
    for i in range(4):
        start = MBR_PARTITIONS + i * MBR_PARTITION_RECORD.size
        yield MBR_PARTITION_RECORD.unpack_from(sector, start)


class MbrInspector(base.FormatInspector):
    """UEFI 2.10 5.2.1: an MBR whose four records are well formed."""

    name = 'mbr'
    order = 92
    content = True

    def inspect(self, probe: base.Probe,
                policy: inspection.Policy) -> base.Reads[None]:
        sector = yield base.Read(0, base.SECTOR)
        if len(sector) < base.SECTOR or sector[510:512] != MBR_SIGNATURE:
            return
        records = list(_mbr_records(sector))
        # BootIndicator is 0x00 or 0x80; a used record has a type.
        if any(r[0] not in (0, 0x80) for r in records):
            return
        if not any(r[2] for r in records):
            return
        protective = any(r[2] == PROTECTIVE_TYPE for r in records)
        probe.match('MBR signature 55 aa at offset 510',
                    variant='protective' if protective else 'mbr')


class GptInspector(base.FormatInspector):
    """UEFI 2.10 5.3.2: a GPT header with a valid HeaderCRC32 at LBA 1."""

    name = 'gpt'
    order = 91
    content = True

    def inspect(self, probe: base.Probe,
                policy: inspection.Policy) -> base.Reads[None]:
        for block in GPT_BLOCK_SIZES:
            header = yield base.Read(block, GPT_HEADER.size)
            if len(header) < GPT_HEADER.size:
                return
            fields = GPT_HEADER.unpack(header)
            if fields[0] != GPT_SIGNATURE:
                continue
            size = fields[2]
            if not GPT_HEADER.size <= size <= block:
                continue
            full = header
            if size > GPT_HEADER.size:
                rest = yield base.Read(block + GPT_HEADER.size,
                                       size - GPT_HEADER.size)
                full += rest
            if len(full) < size:
                return
            crc = fields[3]
            blank = full[:16] + b'\0\0\0\0' + full[20:size]
            if zlib.crc32(blank) != crc or fields[5] != 1:
                continue
            probe.match('GPT header %r at offset %d'
                        % (GPT_SIGNATURE.decode(), block),
                        variant='gpt%d' % block if block != 512 else None)
            return
