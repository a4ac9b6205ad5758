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

"""The VHDX Block Allocation Table, for :mod:`.vhdx`.

References: Microsoft [MS-VHDX] "Virtual Hard Disk v2 (VHDX) File Format",
2.5 (BAT: payload block entries, their State and FileOffsetMB); qemu 7.2
``block/vhdx.c`` (``vhdx_check_bat_entries()``).

The BAT is read in bounded regions and summarised as it passes, since
qemu-img writes it before the metadata that gives the block size; the
summary is checked once the block size and the file's length are known.
"""

import array
import bisect
import sys

from glance_vsize.formats import base

UINT64 = (1 << 64) - 1
INT64_MAX = (1 << 63) - 1

#: 2.5 BAT entries: State (bits 0-2), FileOffsetMB (bits 20-63).
BAT_STATE_MASK = 0x7
PAYLOAD_BLOCK_FULLY_PRESENT = 6
BAT_FILE_OFFSET_MASK = 0xfffffffffff00000
#: bytes.translate() table: 1 for a BAT state byte of a present block.
_PRESENT = bytes(int(b & BAT_STATE_MASK == PAYLOAD_BLOCK_FULLY_PRESENT)
                 for b in range(256))
_UINT64_CODE = next(c for c in 'LQ' if array.array(c).itemsize == 8)

#: The BAT is read in regions of this size (bounded memory in streaming).
BAT_REGION = 256 << 10


class BatTable:
    """``vhdx_check_bat_entries()``, with the BAT read before or after the
    metadata that gives its block size.

    qemu refuses the image when a fully present block's offset overflows,
    when the block starts or ends after the end of the file (the block at
    index ``disk size // block size`` may be partial: older qemu wrote
    such files), or when it overlaps a region (the log, the BAT, the
    metadata, any region of the table).  So what is kept of the BAT is
    enough for these checks whatever the block size: the two present
    entries with the largest offsets, and for each region the largest
    present offset below its end.
    """

    def __init__(self, regions: list[tuple[int, int, str]]) -> None:
        #: (start, end as qemu computes it in uint64, what)
        self.regions = [(start, (start + length) & UINT64, what)
                        for start, length, what in regions]
        self.ends = sorted({end for _, end, _ in self.regions})
        #: Up to two (offset, index), largest first.
        self.top: list[tuple[int, int]] = []
        #: Region end -> the largest offset below it.
        self.below: dict[int, int] = {}

    def read(self, reader: base.Reader, offset: int,
             count: int) -> base.Reads[None]:
        """Generator: read and summarise ``count`` entries at ``offset``;
        entries past the end of the image read as zero (not present).
        """
        step = BAT_REGION // 8
        for first in range(0, count, step):
            at = offset + first * 8
            if reader.image_end is not None and at >= reader.image_end:
                return
            chunk = yield from reader.read(at, min(step, count - first) * 8,
                                           'the BAT', keep=False)
            if 1 in chunk[0::8].translate(_PRESENT):
                self._add(chunk, first)
            del chunk       # dropped before the next region is read

    def _add(self, chunk: bytes, first: int) -> None:
        table = array.array(_UINT64_CODE, chunk)
        if sys.byteorder != 'little':
            table.byteswap()
        offsets = [e & BAT_FILE_OFFSET_MASK
                   if e & BAT_STATE_MASK == PAYLOAD_BLOCK_FULLY_PRESENT
                   else -1 for e in table]
        present = sorted(o for o in offsets if o >= 0)
        top = [(present[-1], first + offsets.index(present[-1]))]
        if len(present) > 1:
            offsets[top[0][1] - first] = -1
            second = max(offsets)
            top.append((second, first + offsets.index(second)))
        self.top = sorted(self.top + top, reverse=True)[:2]
        for end in self.ends:
            k = bisect.bisect_left(present, end)
            if k and present[k - 1] > self.below.get(end, -1):
                self.below[end] = present[k - 1]

    def check(self, block_size: int, total: int, file_size: int) -> None:
        """Raise what qemu would refuse; ``total`` is the disk size in
        whole sectors, ``file_size`` the image length rounded up to a
        sector (``bdrv_getlength()``).
        """
        partial_index = total // block_size
        for offset, index in self.top:
            length = block_size
            if index == partial_index:
                length = total - index * block_size
            if offset > INT64_MAX - block_size or offset >= file_size or \
                    offset + length > file_size:
                raise base.FormatError(
                    'table_bounds', 'BAT entry %d maps a block of %d bytes '
                    'at offset %d, after the end of the image (%d bytes): '
                    'the image was truncated'
                    % (index, length, offset, file_size))
            if index != partial_index:
                break       # every other block ends before this one
        for start, end, what in self.regions:
            below = self.below.get(end, -1)
            if below >= 0 and below + block_size > start:
                raise base.FormatError(
                    'region_overlap', 'the BAT maps a block of %d bytes at '
                    'offset %d, which overlaps %s (%d bytes at offset %d)'
                    % (block_size, below, what, (end - start) & UINT64,
                       start))
