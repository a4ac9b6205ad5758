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

"""QEMU Enhanced Disk images (``qed``).

Layout and field names follow qemu's docs/interop/qed_spec.txt ("Header")
and block/qed.h; the checks port the open-time validation of qemu 7.2's
block/qed.c ``bdrv_qed_do_open``: ``qed_is_cluster_size_valid``,
``qed_is_table_size_valid``, ``qed_is_image_size_valid`` and
``qed_check_table_offset``.

QED is no Glance disk format: the engine refuses it unless the policy
allows it (``unsupported_format``).  This module measures it and checks
that qemu would open it without another file.

Read: the 64-byte header (in the first request), the backing file name
when there is one (at most 4 KiB), and the image length, which qemu
compares with the L1 table's place.  The L1 table itself is not read.
"""

import logging
import struct

from glance_vsize.formats import base
from glance_vsize import inspection

LOG = logging.getLogger(__name__)

MAGIC = b'QED\0'

#: The header (64 bytes, little-endian): magic, cluster_size, table_size,
#: header_size, features, compat_features, autoclear_features,
#: l1_table_offset, image_size, backing_filename_offset,
#: backing_filename_size.
QED_HEADER = struct.Struct('<4sIIIQQQQQII')

# Feature bits.
QED_F_BACKING_FILE = 0x01
QED_F_NEED_CHECK = 0x02
QED_F_BACKING_FORMAT_NO_PROBE = 0x04
QED_FEATURE_MASK = 0x07

QED_MIN_CLUSTER_SIZE = 4 << 10
QED_MAX_CLUSTER_SIZE = 64 << 20
QED_MIN_TABLE_SIZE = 1          # in clusters
QED_MAX_TABLE_SIZE = 16
TABLE_ENTRY_SIZE = 8
UINT32_MAX = (1 << 32) - 1
UINT64_MASK = (1 << 64) - 1
#: ``sizeof(bs->backing_file)`` (PATH_MAX): the name must be shorter.
BACKING_FILE_BUF = 4096

#: The first request: the header and a backing file name qemu-img wrote.
HEAD = 4096


def _power_of_2_within(value: int, low: int, high: int) -> bool:
    return low <= value <= high and not value & (value - 1)


def max_image_size(cluster_size: int, table_size: int) -> int:
    """``qed_max_image_size``, with its uint64_t wrap-around: for large
    clusters the product overflows and qemu's limit becomes tiny.
    """
    entries = table_size * cluster_size // TABLE_ENTRY_SIZE
    return entries * cluster_size * entries & UINT64_MASK


class QedInspector(base.FormatInspector):
    """QED, as qemu's ``qed`` driver opens it."""

    name = 'qed'
    order = 20

    #: The checks this inspector can fail, and what each means.
    CHECKS = {
        'truncated': 'the image ends inside the QED header',
        'unknown_features': 'feature bits qemu does not know',
        'cluster_size': 'cluster_size not a power of 2 in qemu\'s range',
        'table_size': 'table_size not a power of 2 in qemu\'s range',
        'image_size':
            'image_size not a multiple of 512 or more than the tables map',
        'header_size': 'header_size overflows 32 bits',
        'backing_file':
            'the image names a backing file, which qemu would open on the '
            'compute host',
        'table_bounds': 'the L1 table is misplaced or out of the image',
    }

    def inspect(self, probe: base.Probe,
                policy: inspection.Policy) -> base.Reads[None]:
        head = yield base.Read(0, HEAD)
        if head[:4] != MAGIC:
            return
        probe.match('magic %r at offset 0' % MAGIC)
        if len(head) < QED_HEADER.size:
            raise base.FormatError(
                'truncated', 'the image ends at offset %d, inside the %d-byte '
                'QED header' % (len(head), QED_HEADER.size))
        (_, cluster_size, table_size, header_size, features, _compat,
         _autoclear, l1_table_offset, image_size, backing_offset,
         backing_size) = QED_HEADER.unpack_from(head)
        # qemu keeps unknown compatible and autoclear features (it would
        # clear the autoclear ones when opening read-write).
        unknown = features & ~QED_FEATURE_MASK
        if unknown:
            probe.fail('unknown_features', 'unknown feature bits 0x%x at '
                       'offset 16' % unknown)
        if not _power_of_2_within(cluster_size, QED_MIN_CLUSTER_SIZE,
                                  QED_MAX_CLUSTER_SIZE):
            raise base.FormatError(
                'cluster_size', 'cluster_size %d at offset 4 is not a power '
                'of 2 from %d to %d' % (cluster_size, QED_MIN_CLUSTER_SIZE,
                                        QED_MAX_CLUSTER_SIZE))
        if not _power_of_2_within(table_size, QED_MIN_TABLE_SIZE,
                                  QED_MAX_TABLE_SIZE):
            raise base.FormatError(
                'table_size', 'table_size %d at offset 8 is not a power of 2 '
                'from %d to %d clusters' % (table_size, QED_MIN_TABLE_SIZE,
                                            QED_MAX_TABLE_SIZE))
        probe.virtual_size = image_size
        LOG.debug('QED with %d-byte clusters, tables of %d clusters, size %d',
                  cluster_size, table_size, image_size)
        limit = max_image_size(cluster_size, table_size)
        if image_size % base.SECTOR or image_size > limit:
            probe.fail('image_size', 'image_size %d at offset 48 is not a '
                       'multiple of 512 up to %d, the most that clusters of '
                       '%d bytes and tables of %d clusters map'
                       % (image_size, limit, cluster_size, table_size))
        if header_size > UINT32_MAX // cluster_size:
            probe.fail('header_size', 'header_size %d clusters at offset 12 '
                       'overflows 32 bits' % header_size)
            if features & QED_F_BACKING_FILE:
                probe.fail('backing_file', 'backing file feature bit at '
                           'offset 16 (its name is beyond the header)')
        elif features & QED_F_BACKING_FILE:
            yield from self._backing_file(probe, head, backing_offset,
                                          backing_size,
                                          cluster_size * header_size)
        # qemu compares the L1 table's place with the image length, which
        # the block layer rounds up to 512 bytes and qemu down to a cluster.
        length = yield base.LENGTH
        file_size = base.round_down(base.round_up(length), cluster_size)
        self._check_l1(probe, l1_table_offset, cluster_size, table_size,
                       header_size * cluster_size, file_size)

    @staticmethod
    def _backing_file(probe: base.Probe, head: bytes, offset: int,
                      length: int, header_bytes: int) -> base.Reads[None]:
        """Generator: report the backing file with its name.  Any image
        with the feature bit is refused, even with an empty name, which
        qemu would take as no backing file but never writes.
        """
        if offset + length > header_bytes:
            probe.fail('backing_file', 'backing file name of %d bytes at '
                       'offset %d lies beyond the %d-byte header'
                       % (length, offset, header_bytes))
            return
        if length >= BACKING_FILE_BUF:
            probe.fail('backing_file', 'backing file name of %d bytes at '
                       'offset %d (qemu refuses names that long)'
                       % (length, offset))
            return
        # The rest follows the first request; qemu reads zeros past the
        # end of the image.
        raw = yield from base.Reader(head, HEAD).read(offset, length)
        probe.fail('backing_file', 'backing file %r named at offset %d'
                   % (base.cstring(raw or b''), offset))

    @staticmethod
    def _check_l1(probe: base.Probe, offset: int, cluster_size: int,
                  table_size: int, header_bytes: int,
                  file_size: int) -> None:
        """``qed_check_table_offset``: the L1 table's first and last
        clusters lie after the header and start before the end of the
        image.  A table of one cluster never passes, as in qemu.
        """
        end = offset + (table_size - 1) * cluster_size
        if end == offset:
            probe.fail('table_bounds', 'table_size 1 at offset 8: qemu never '
                       'accepts an L1 table of one cluster')
        elif end > UINT64_MASK or offset % cluster_size or \
                offset < header_bytes or end >= file_size:
            probe.fail('table_bounds', 'the L1 table of %d clusters at offset '
                       '%d (l1_table_offset at offset 40) does not lie '
                       'between the %d-byte header and the end of the image '
                       '(%d whole clusters)' % (table_size, offset,
                                                header_bytes,
                                                file_size // cluster_size))
