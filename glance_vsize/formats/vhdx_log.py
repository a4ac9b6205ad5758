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

"""The VHDX log, for :mod:`.vhdx`: is there anything to replay?

References: Microsoft [MS-VHDX] "Virtual Hard Disk v2 (VHDX) File Format",
2.2.2 (the header's LogGuid, LogVersion, LogLength, LogOffset) and 2.3
(log, 2.3.1.1 entry header); qemu 7.2 ``block/vhdx-log.c``
(``vhdx_parse_log()``, ``vhdx_log_search()``, ``vhdx_log_hdr_is_valid()``).

qemu refuses to replay a log on a read-only open, so an image whose log
holds entries is refused; an image whose log qemu does not search (a zero
LogGuid or LogLength) is not read there.
"""

import struct
from typing import Any

from glance_vsize.formats import base

KiB, MiB = 1 << 10, 1 << 20

#: 2.3.1.1 Entry Header: Signature, Checksum, EntryLength, Tail,
#: SequenceNumber, DescriptorCount, Reserved, LogGuid, FlushedFileOffset,
#: LastFileOffset.
VHDX_LOG_ENTRY_HEADER = struct.Struct('<4sIIIQII16sQQ')
LOG_SIGNATURE, LOG_SECTOR, LOG_DESCRIPTOR_SIZE = b'loge', 4 * KiB, 32
#: The longest log we search for entries (Hyper-V and qemu use 1 MiB).
LOG_SCAN_LIMIT = 32 * MiB


def check_fields(header: Any) -> bool:
    """``vhdx_parse_log()``: the log fields of the current header; True
    when the log must be searched for entries (a non-zero LogGuid and
    LogLength).
    """
    if header.log_offset < MiB or header.log_offset % MiB:
        raise base.FormatError(
            'log', 'the current header has LogOffset %d, not a non-zero '
            'multiple of 1 MiB' % header.log_offset)
    if header.log_version != 0:
        raise base.FormatError(
            'log', 'the current header has LogVersion %d, not 0'
            % header.log_version)
    if header.log_guid == bytes(16) or not header.log_length:
        return False
    if header.log_length % MiB:
        raise base.FormatError(
            'log', 'the current header has LogLength %d, not a multiple of '
            '1 MiB' % header.log_length)
    return True


def scan(reader: base.Reader, header: Any) -> base.Reads[None]:
    """Generator, 2.3: refuse a log in which qemu could find entries to
    replay.

    qemu searches the whole log for a sequence of valid entries (also
    checking their descriptors and CRC); we refuse any 4 KiB log sector
    with an entry header that ``vhdx_log_hdr_is_valid()`` accepts.
    """
    offset, length = header.log_offset, header.log_length
    if length > LOG_SCAN_LIMIT:
        raise base.FormatError(
            'log_replay', 'the log of %d bytes at offset %d has a non-zero '
            'LogGuid and is too long to check that it needs no replay'
            % (length, offset))
    for first in range(0, length, base.MAX_REGION):
        chunk = yield from reader.read(
            offset + first, min(base.MAX_REGION, length - first),
            'the log', keep=False)
        for at in range(0, len(chunk), LOG_SECTOR):
            if chunk[at:at + 4] != LOG_SIGNATURE:
                continue
            fields = VHDX_LOG_ENTRY_HEADER.unpack_from(chunk, at)
            entry_length, sequence, descriptors = fields[2], *fields[4:6]
            if entry_length <= length and sequence and \
                    not entry_length % LOG_SECTOR and \
                    fields[7] == header.log_guid and \
                    descriptors * LOG_DESCRIPTOR_SIZE <= entry_length:
                raise base.FormatError(
                    'log_replay', 'the log entry (sequence %d) at offset %d '
                    'needs replaying, which qemu refuses on a read-only open'
                    % (sequence, offset + first + at))
