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

"""VMware VMDK: the self-contained sparse subformats, and everything else.

References: VMware "Virtual Disk Format 5.0" ("Hosted Sparse Extent
Header", "Stream-Optimized Compressed Sparse Extents", "The Descriptor
File"), and qemu 7.2 block/vmdk.c, whose open path is matched here:

* ``vmdk_open``: a file starting with ``KDMV`` (or ``COWD``) is a sparse
  extent; anything else is read as a *descriptor file*, whose extent lines
  name the files that hold the data.  qemu opens those host files, so a
  descriptor file is always refused (``extent_file``).
* ``vmdk_open_vmdk4``: a header with ``capacity`` 0 and a descriptor is
  opened as a descriptor file too; ``gdOffset == GD_AT_END`` makes qemu
  read the footer at the end of the file, which takes precedence over the
  header; then the version, table size and truncation checks.
* ``vmdk_add_extent``: grain size and L1 size limits.
* ``vmdk_parent_open`` and ``vmdk_read_cid``: the descriptor at offset
  0x200 (whatever the header says) must hold ``CID`` and ``parentCID``;
  ``parentFileNameHint`` names a backing file.

qemu never reads the embedded descriptor's ``createType`` or extent lines
for a sparse file opened directly, but VMware tools do, so they are
checked against :attr:`Policy.vmdk_create_types` and the image's own file.

Not checked: the grain directory and grain tables themselves (only their
bounds), grain markers and compressed grains of streamOptimized images.
"""

import collections
import logging
import struct
from typing import Any
from typing import cast

from glance_vsize.formats import base
from glance_vsize.formats import vmdk_descriptor as vd
from glance_vsize import inspection

LOG = logging.getLogger(__name__)

VMDK4_MAGIC = b'KDMV'
VMDK3_MAGIC = b'COWD'

#: Virtual Disk Format 5.0, "Hosted Sparse Extent Header" (little endian):
#: magicNumber, version, flags, capacity, grainSize, descriptorOffset,
#: descriptorSize, numGTEsPerGT, rgdOffset, gdOffset, overHead,
#: uncleanShutdown, singleEndLineChar/nonEndLineChar/doubleEndLineChar1/
#: doubleEndLineChar2 (as one 4-byte field), compressAlgorithm.
SPARSE_EXTENT_HEADER = struct.Struct('<4sIIQQQQIQQQB4sH')
SparseHeader = collections.namedtuple('SparseHeader', (
    'magicNumber', 'version', 'flags', 'capacity', 'grainSize',
    'descriptorOffset', 'descriptorSize', 'numGTEsPerGT', 'rgdOffset',
    'gdOffset', 'overHead', 'uncleanShutdown', 'lineChars',
    'compressAlgorithm'))

#: qemu block/vmdk.c VMDK3Header, after the 'COWD' magic: version, flags,
#: disk_sectors, granularity, l1dir_offset, l1dir_size, file_sectors,
#: cylinders, heads, sectors_per_track.
VMDK3_HEADER = struct.Struct('<4sIIIIIIIIII')

#: "Stream-Optimized Compressed Sparse Extents": a marker is
#: val (uint64), size (uint32), type (uint32), padded to a sector.
MARKER = struct.Struct('<QII')
MARKER_END_OF_STREAM = 0
MARKER_FOOTER = 3

#: Header flags (spec, "Hosted Sparse Extent Header").
FLAG_NL_DETECT = 1 << 0
FLAG_RGD = 1 << 1
FLAG_ZERO_GRAIN = 1 << 2
FLAG_COMPRESS = 1 << 16
FLAG_MARKER = 1 << 17
KNOWN_FLAGS = (FLAG_NL_DETECT | FLAG_RGD | FLAG_ZERO_GRAIN | FLAG_COMPRESS
               | FLAG_MARKER)
#: singleEndLineChar, nonEndLineChar, doubleEndLineChar1 and 2.
LINE_CHARS = b'\n \r\n'

COMPRESSION_NONE = 0
COMPRESSION_DEFLATE = 1
GD_AT_END = 0xffffffffffffffff
#: Footer marker, footer and end-of-stream marker: three sectors that
#: qemu reads at (file sectors * 512 - 1536).
FOOTER_SIZE = 3 * base.SECTOR

#: block/vmdk.c DESC_SIZE: qemu reads CID, parentCID and
#: parentFileNameHint from 20 sectors at offset 0x200.
DESC_OFFSET = 0x200
DESC_SIZE = 20 * base.SECTOR
#: The first read: the header sector and qemu's descriptor window.
HEAD_SIZE = DESC_OFFSET + DESC_SIZE
#: The longest embedded descriptor read (qemu caps descriptors at 1 MiB).
MAX_DESCRIPTOR_SECTORS = 2047
#: block/block_int.h BLOCK_PROBE_BUF_SIZE: what vmdk_probe sees.
PROBE_SIZE = 2048
DESCRIPTOR_MARK = '# Disk DescriptorFile'

#: Limits of block/vmdk.c vmdk_open_vmdk4 and vmdk_add_extent.
MAX_GTES_PER_GT = 512
MAX_GRAIN_SECTORS = 0x200000
MAX_L1_SIZE = 32 * 1024 * 1024
#: block/block_int-common.h BDRV_MAX_LENGTH: larger disks fail to open
#: ("Could not refresh total sector count: File too large").
BDRV_MAX_LENGTH = (2 ** 63 - 1) // (1 << 30) * (1 << 30)

#: Header fields a footer must repeat: they change how the disk is read.
FOOTER_FIELDS = ('version', 'flags', 'capacity', 'grainSize',
                 'numGTEsPerGT', 'compressAlgorithm')


class VmdkInspector(base.FormatInspector):
    """VMDK: monolithicSparse and streamOptimized images are measured;
    descriptor files and extents naming other files are refused.
    """

    name = 'vmdk'
    order = 30

    #: The checks this inspector can fail, and what each means.
    CHECKS = {
        'truncated':
            'the image ends inside the sparse extent header or its overhead',
        'capacity':
            'a capacity qemu cannot open, or 0 with an embedded descriptor',
        'create_type':
            'a createType other than the accepted vmdk_create_types',
        'footer':
            'the grain directory is at the end but there is no valid footer',
        'footer_mismatch': 'the header and the footer disagree',
        'version': 'an unsupported VMDK version',
        'unknown_features': 'flags qemu does not know',
        'newline_detect':
            'the newline detection characters were altered in transfer',
        'compression': 'an unknown compression algorithm',
        'l1_size':
            'the capacity needs more grain directory entries than qemu allows',
        'l2_size': 'numGTEsPerGT outside qemu\'s range',
        'grain_size': 'grainSize outside qemu\'s range',
        'table_bounds': 'the grain directory is misplaced',
        'descriptor':
            'the embedded descriptor is misplaced, too large or unreadable',
        'parent': 'the descriptor names a parent image (a delta disk)',
        'extent_file': 'the descriptor names extents in other files',
        'extent_size': 'the extent size disagrees with the header\'s capacity',
    }

    def inspect(self, probe: base.Probe,
                policy: inspection.Policy) -> base.Reads[None]:
        head = yield base.Read(0, HEAD_SIZE)
        if head[:4] == VMDK4_MAGIC:
            probe.match("magic 'KDMV' at offset 0")
            yield from self._sparse(probe, policy, head)
        elif head[:4] == VMDK3_MAGIC:
            probe.match("magic 'COWD' at offset 0", variant='vmfsSparse')
            self._vmdk3(probe, head)
        else:
            yield from self._descriptor_file(probe, policy, head)

    # Sparse extents -----------------------------------------------------

    def _sparse(self, probe: base.Probe, policy: inspection.Policy,
                head: bytes) -> base.Reads[None]:
        """vmdk_open_vmdk4 on a 'KDMV' hosted sparse extent."""
        if len(head) < base.SECTOR:
            raise base.FormatError(
                'truncated', 'the sparse extent header needs 512 bytes at '
                'offset 0 but the image ends at offset %d' % len(head))
        header = SparseHeader(*SPARSE_EXTENT_HEADER.unpack_from(head))
        window = head[DESC_OFFSET:]
        sectors = header.descriptorSize
        if header.descriptorOffset == 1 and \
                DESC_SIZE < sectors * base.SECTOR <= \
                MAX_DESCRIPTOR_SECTORS * base.SECTOR and \
                len(head) == HEAD_SIZE:
            window += yield base.Read(HEAD_SIZE,
                                      sectors * base.SECTOR - DESC_SIZE)
        length = yield base.LENGTH

        if header.capacity == 0 and header.descriptorOffset:
            # vmdk_open_vmdk4: the descriptor is opened as a descriptor
            # file, whose extents qemu opens.
            probe.fail('capacity', 'capacity 0 at offset 12 with a '
                       'descriptor at sector %d: qemu opens the descriptor '
                       'as a descriptor file, with the extent files it '
                       'names' % header.descriptorOffset)
            if header.descriptorOffset == 1:
                vd.check_descriptor_file(probe, policy, vd.text_of(window),
                                         DESC_OFFSET)
            return

        effective, at = header, 0
        if header.gdOffset == GD_AT_END:
            tail = yield base.Tail(FOOTER_SIZE)
            effective, at = self._footer(probe, header, tail, length)

        probe.variant = ('streamOptimized'
                         if effective.compressAlgorithm == COMPRESSION_DEFLATE
                         else 'monolithicSparse')
        probe.virtual_size = effective.capacity * base.SECTOR
        self._check_header(probe, effective, at, length)
        if probe.variant.lower() not in {
                t.lower() for t in policy.vmdk_create_types}:
            probe.fail('create_type', 'the header at offset %d makes a %s '
                       'extent, which is not an accepted create type'
                       % (at, probe.variant))
        self._check_embedded(probe, policy, header, window)

    def _footer(self, probe: base.Probe, header: Any, tail: bytes,
                length: int) -> tuple[Any, int]:
        """vmdk_open_vmdk4: with gdOffset GD_AT_END, the footer read at
        (file sectors * 512 - 1536) replaces the header.

        :returns: the footer's header and its offset.
        """
        end = base.round_up(length)
        start = end - FOOTER_SIZE
        if start < 0:
            raise base.FormatError(
                'footer', 'gdOffset is GD_AT_END but the image (%d bytes) '
                'is too short for a footer' % length)
        # qemu reads whole sectors: bytes past the end of a file whose
        # size is not a multiple of 512 read as zeroes.
        data = tail[len(tail) - (length - start):] + bytes(end - length)
        marker = MARKER.unpack_from(data, 0)
        eos = MARKER.unpack_from(data, 2 * base.SECTOR)
        if data[base.SECTOR:base.SECTOR + 4] != VMDK4_MAGIC or \
                marker[1:] != (0, MARKER_FOOTER) or \
                eos != (0, 0, MARKER_END_OF_STREAM):
            raise base.FormatError(
                'footer', 'gdOffset is GD_AT_END but there is no valid '
                'footer marker, footer and end-of-stream marker at offset '
                '%d' % start)
        footer = SparseHeader(*SPARSE_EXTENT_HEADER.unpack_from(
            data, base.SECTOR))
        differ = ['%s %d/%d' % (f, getattr(header, f), getattr(footer, f))
                  for f in FOOTER_FIELDS
                  if getattr(header, f) != getattr(footer, f)]
        if differ:
            probe.fail('footer_mismatch', 'the header at offset 0 and the '
                       'footer at offset %d disagree (%s): qemu uses the '
                       'footer, other readers the header'
                       % (start + base.SECTOR, ', '.join(differ)))
        return footer, start + base.SECTOR

    def _check_header(self, probe: base.Probe, header: Any, at: int,
                      length: int) -> None:
        """The checks of vmdk_open_vmdk4 and vmdk_add_extent, on the
        header qemu uses: the one at offset ``at`` (0, or the footer's).
        """
        if not 1 <= header.version <= 3:
            # qemu refuses versions above 3 and accepts 0, which no
            # specification defines.
            probe.fail('version', 'unsupported VMDK version %d at offset %d'
                       % (header.version, at + 4))
        if header.flags & ~KNOWN_FLAGS:
            probe.fail('unknown_features', 'unknown flags 0x%x at offset %d'
                       % (header.flags & ~KNOWN_FLAGS, at + 8))
        if header.flags & FLAG_NL_DETECT and header.lineChars != LINE_CHARS:
            probe.fail('newline_detect', 'the newline detection characters '
                       'at offset %d are %r, not %r: the file was altered in '
                       'a text-mode transfer' % (at + 73, header.lineChars,
                                                 LINE_CHARS))
        if header.compressAlgorithm not in (COMPRESSION_NONE,
                                            COMPRESSION_DEFLATE):
            probe.fail('compression', 'unknown compressAlgorithm %d at '
                       'offset %d' % (header.compressAlgorithm, at + 77))
        if header.capacity * base.SECTOR > BDRV_MAX_LENGTH:
            probe.fail('capacity', 'capacity %d sectors at offset %d is '
                       'beyond what qemu can open' % (header.capacity,
                                                      at + 12))
        l1_size = None
        gtes_ok = 0 < header.numGTEsPerGT <= MAX_GTES_PER_GT
        grain_ok = 0 < header.grainSize <= MAX_GRAIN_SECTORS
        if not gtes_ok:
            probe.fail('l2_size', 'numGTEsPerGT %d at offset %d is not '
                       'within 1..%d' % (header.numGTEsPerGT, at + 44,
                                         MAX_GTES_PER_GT))
        if not grain_ok:
            probe.fail('grain_size', 'grainSize %d sectors at offset %d is '
                       'not within 1..%d' % (header.grainSize, at + 20,
                                             MAX_GRAIN_SECTORS))
        if gtes_ok and grain_ok:
            # qemu computes this in 32 bits, so that a capacity large
            # enough wraps it below the limit: the exact value is used.
            per_l1 = header.numGTEsPerGT * header.grainSize
            l1_size = -(-header.capacity // per_l1)
            if l1_size > MAX_L1_SIZE:
                probe.fail('l1_size', 'capacity %d sectors at offset %d '
                           'needs %d grain directory entries, more than '
                           'qemu\'s %d' % (header.capacity, at + 12, l1_size,
                                           MAX_L1_SIZE))
                l1_size = None
        if -(-length // base.SECTOR) < header.overHead:
            probe.fail('truncated', 'overHead at offset %d is %d sectors '
                       'but the image has %d bytes'
                       % (at + 64, header.overHead, length))
        if l1_size:
            # vmdk_init_tables reads the grain directories: beyond the end
            # of the file they read as zeroes, so such offsets are lies.
            # Sector 0 is the header itself.
            tables = [('gdOffset', 56, header.gdOffset)]
            if header.flags & FLAG_RGD and header.rgdOffset:
                tables.append(('rgdOffset', 48, header.rgdOffset))
            for field, where, sector in tables:
                end = sector * base.SECTOR + l1_size * 4
                if sector == 0 or end > length:
                    probe.fail('table_bounds', '%s at offset %d puts a %d-'
                               'entry grain directory at sector %d, not '
                               'within sectors 1.. of the %d-byte image'
                               % (field, at + where, l1_size, sector,
                                  length))

    # Descriptors ----------------------------------------------------------

    def _check_embedded(self, probe: base.Probe, policy: inspection.Policy,
                        header: Any, window: bytes) -> None:
        """The descriptor embedded in a sparse extent."""
        qemu_text = vd.text_of(window[:DESC_SIZE - 1])
        if header.descriptorOffset != 1:
            probe.fail('descriptor', 'descriptorOffset at offset 28 is %d: '
                       'qemu reads the descriptor at sector 1 regardless'
                       % header.descriptorOffset)
        if not 0 < header.descriptorSize <= MAX_DESCRIPTOR_SECTORS:
            probe.fail('descriptor', 'descriptorSize %d sectors at offset 36 '
                       'is not within 1..%d' % (header.descriptorSize,
                                                MAX_DESCRIPTOR_SECTORS))
        text = qemu_text
        if header.descriptorOffset == 1:
            vmware_text = vd.text_of(
                window[:header.descriptorSize * base.SECTOR])
            text = max(qemu_text, vmware_text, key=len)
        for key in ('CID', 'parentCID'):
            if vd.qemu_cid(qemu_text, key) is None:
                probe.fail('descriptor', 'no %s in the descriptor at offset '
                           '%d: qemu cannot open the image'
                           % (key, DESC_OFFSET))
        types = list(vd.values(text, 'createType'))
        if not types:
            probe.fail('descriptor', 'no createType in the descriptor at '
                       'offset %d' % DESC_OFFSET)
        vd.check_create_types(probe, policy, types, DESC_OFFSET)
        vd.check_parent(probe, text, DESC_OFFSET)

        vd.check_own_extent(probe, text, DESC_OFFSET,
                            cast(int, probe.virtual_size) // base.SECTOR)

    def _descriptor_file(self, probe: base.Probe,
                         policy: inspection.Policy,
                         head: bytes) -> base.Reads[None]:
        """vmdk_open: anything without a sparse magic is a descriptor."""
        if len(head) < 4:
            return
        if b'\0' not in head and len(head) == HEAD_SIZE:
            head += yield base.Read(HEAD_SIZE, vd.MAX_TEXT - HEAD_SIZE)
        text = vd.text_of(head[:vd.MAX_TEXT])
        if vd.qemu_probes(head[:PROBE_SIZE]):
            evidence = 'a version= line qemu probes as VMDK'
        elif text.startswith(DESCRIPTOR_MARK):
            evidence = '%r at offset 0' % DESCRIPTOR_MARK
        elif 'createType' in text:
            # qemu -f vmdk opens any text with a createType.
            evidence = 'createType at offset %d' % text.find('createType')
        else:
            return
        probe.match('VMDK descriptor text: %s' % evidence)
        LOG.debug('VMDK descriptor file (%s): refusing its extents', evidence)
        vd.check_descriptor_file(probe, policy, text, 0)

    def _vmdk3(self, probe: base.Probe, head: bytes) -> None:
        if len(head) >= VMDK3_HEADER.size:
            probe.virtual_size = VMDK3_HEADER.unpack_from(head)[3] * 512
        probe.fail('create_type', "a VMDK3 'COWD' sparse extent at offset 0 "
                   '(an ESX vmfsSparse extent) is not a self-contained '
                   'image')
