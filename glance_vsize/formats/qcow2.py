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

"""QEMU copy-on-write images, versions 2 and 3 (``qcow2``).

Layout and field names follow qemu's docs/interop/qcow2.txt ("Header");
the checks port the open-time validation of qemu 7.2's block/qcow2.c:
``qcow2_do_open``, ``validate_compression_type`` and
``qcow2_validate_table``.  Header extensions and encryption are checked in
:mod:`glance_vsize.formats.qcow2_extensions`.

Only the header cluster is read (in windows of at most 64 KiB), plus the
LUKS header of an encrypted image and the entry headers of the snapshot
table (``qcow2_read_snapshots``: the extra data of an entry and the
table's size within qemu's limits).  The L1 and refcount tables and the
bitmap directory are never read: what the header says about them
(offsets, entry counts, qemu's limits) is checked, their content is not.
A damaged bitmap directory can therefore still make qemu refuse an image
found safe here; it cannot make qemu read another file.

The virtual size is ``size`` rounded down to a multiple of 512: qemu keeps
it in sectors (``bs->total_sectors = header.size / BDRV_SECTOR_SIZE``).
"""

import logging
import struct
from typing import Any

from glance_vsize.formats import base
from glance_vsize.formats import qcow2_extensions as ext
from glance_vsize import inspection

LOG = logging.getLogger(__name__)

MAGIC = b'QFI\xfb'

#: The header fields common to versions 2 and 3 (72 bytes): magic, version,
#: backing_file_offset, backing_file_size, cluster_bits, size,
#: crypt_method, l1_size, l1_table_offset, refcount_table_offset,
#: refcount_table_clusters, nb_snapshots, snapshots_offset.
QCOW2_HEADER_V2 = struct.Struct('>4sIQIIQIIQQIIQ')

#: The version 3 fields at offset 72 (32 bytes): incompatible_features,
#: compatible_features, autoclear_features, refcount_order, header_length.
#: The optional compression_type byte follows at offset 104.
QCOW2_HEADER_V3 = struct.Struct('>QQQII')

V2_HEADER_LENGTH = QCOW2_HEADER_V2.size                         # 72
V3_MIN_HEADER_LENGTH = V2_HEADER_LENGTH + QCOW2_HEADER_V3.size  # 104
COMPRESSION_TYPE_OFFSET = V3_MIN_HEADER_LENGTH
COMPRESSION_TYPES = {0: 'zlib', 1: 'zstd'}
MIN_CLUSTER_BITS = 9
MAX_CLUSTER_BITS = 21
#: Extended L2 entries split a cluster in 32 subclusters of >= 512 bytes.
MIN_EXTL2_CLUSTER_BITS = 14
MAX_REFCOUNT_ORDER = 6

# Incompatible feature bits (all of them known to qemu 7.2).
INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTL2 = 1 << 4
INCOMPAT_MASK = 0x1f

# qemu's limits (block/qcow2.h, ``int`` fields of BDRVQcow2State).
INT_MAX = (1 << 31) - 1
QCOW_MAX_L1_SIZE = 32 << 20
QCOW_MAX_REFTABLE_SIZE = 8 << 20
QCOW_MAX_SNAPSHOTS = 65536
SNAPSHOT_HEADER_SIZE = 40
#: A snapshot table entry's header (QCowSnapshotHeader): l1_table_offset,
#: l1_size, id_str_size, name_size, date_sec, date_nsec, vm_clock_nsec,
#: vm_state_size, extra_data_size; then the extra data, id and name.
QCOW2_SNAPSHOT_HEADER = struct.Struct('>QIHHIIQII')
QCOW_MAX_SNAPSHOT_EXTRA_DATA = 1024
QCOW_MAX_SNAPSHOTS_SIZE = 1024 * QCOW_MAX_SNAPSHOTS
#: Read ahead while walking the snapshot table.
SNAPSHOT_READ_AHEAD = 16384
L1E_SIZE = 8


class QcowInspector(base.FormatInspector):
    """qcow2, as qemu's ``qcow2`` driver opens it."""

    name = 'qcow2'
    order = 10

    #: The checks this inspector can fail, and what each means.
    CHECKS = {
        'truncated': 'the image ends inside the qcow2 header',
        'version': 'a qcow2 version other than 2 or 3',
        'cluster_size':
            'cluster_bits outside what qemu accepts, or too small for '
            'extended L2 entries',
        'backing_file':
            'the image names a backing file, which qemu would open on the '
            'compute host',
        'data_file': 'the guest data lives in an external data file',
        'refcount_order': 'reference counts wider than 64 bits',
        'header_length':
            'header_length too short, past the first cluster or not a '
            'multiple of 8',
        'unknown_features': 'incompatible feature bits qemu does not know',
        'compression_type':
            'an unknown compression type, or one that contradicts its feature '
            'bit',
        'table_bounds':
            'the L1, reference count or snapshot table is misplaced, out of '
            'range or too large',
        'image_size': 'a virtual size qemu cannot address',
        'stream_order': 'the snapshot table lies before data already read',
        'header_extension':
            'a header extension that overruns the header area or is malformed',
        'encryption':
            'legacy AES encryption, an unknown method or a broken LUKS header',
    }

    def inspect(self, probe: base.Probe,
                policy: inspection.Policy) -> base.Reads[None]:
        head = yield base.Read(0, ext.HEAD)
        if head[:4] != MAGIC:
            return
        version = struct.unpack('>I', head[4:8])[0] if len(head) >= 8 else 0
        probe.match('magic %r at offset 0 (version %d)' % (MAGIC, version))
        if len(head) < V2_HEADER_LENGTH:
            raise base.FormatError(
                'truncated', 'the image ends at offset %d, inside the %d-byte '
                'qcow2 header' % (len(head), V2_HEADER_LENGTH))
        (_, version, backing_file_offset, backing_file_size, cluster_bits,
         size, crypt_method, l1_size, l1_table_offset, refcount_table_offset,
         refcount_table_clusters, nb_snapshots, snapshots_offset
         ) = QCOW2_HEADER_V2.unpack_from(head)
        probe.virtual_size = base.round_down(size)
        if version not in (2, 3):
            # Version 1 is qemu's older "qcow" driver, no Glance format.
            raise base.FormatError(
                'version', 'qcow2 version %d at offset 4; qemu opens versions '
                '2 and 3 only' % version)
        if not MIN_CLUSTER_BITS <= cluster_bits <= MAX_CLUSTER_BITS:
            raise base.FormatError(
                'cluster_size', 'cluster_bits %d at offset 20 is outside '
                '%d..%d' % (cluster_bits, MIN_CLUSTER_BITS, MAX_CLUSTER_BITS))
        cluster_size = 1 << cluster_bits
        LOG.debug('qcow2 version %d, %d-byte clusters, size %d', version,
                  cluster_size, size)

        incompatible = autoclear = 0
        refcount_order = 4
        header_length = V2_HEADER_LENGTH
        if version == 3:
            if len(head) < V3_MIN_HEADER_LENGTH:
                raise base.FormatError(
                    'truncated', 'the image ends at offset %d, inside the '
                    '%d-byte qcow2 version 3 header'
                    % (len(head), V3_MIN_HEADER_LENGTH))
            (incompatible, _compatible, autoclear, refcount_order,
             header_length) = QCOW2_HEADER_V3.unpack_from(head, 72)
        walk = _check_header_length(probe, version, header_length,
                                    cluster_size)
        if backing_file_offset > cluster_size:
            probe.fail('backing_file', 'backing file name offset %d at offset '
                       '8 is beyond the first cluster (%d bytes)'
                       % (backing_file_offset, cluster_size))
            walk = False

        compression = 0
        if header_length > COMPRESSION_TYPE_OFFSET and \
                len(head) > COMPRESSION_TYPE_OFFSET:
            compression = head[COMPRESSION_TYPE_OFFSET]
        _check_features(probe, incompatible, compression, cluster_bits)
        if refcount_order > MAX_REFCOUNT_ORDER:
            probe.fail('refcount_order', 'refcount_order %d at offset 96: '
                       'refcounts wider than 64 bits' % refcount_order)
        _check_tables(probe, cluster_size, l1_table_offset, l1_size,
                      refcount_table_offset, refcount_table_clusters,
                      snapshots_offset, nb_snapshots)
        _check_size(probe, size, cluster_bits, incompatible, l1_size)

        cursor = base.Reader(head, ext.HEAD)
        found: dict[str, Any] = {}
        if walk:
            # The extensions end where the backing file name starts.
            found = yield from ext.walk(
                probe, cursor, header_length,
                backing_file_offset or cluster_size, cluster_size,
                crypt_method, autoclear)
        _check_data_file(probe, incompatible, found.get('data_file'))
        if backing_file_offset and backing_file_offset <= cluster_size:
            yield from _backing_file(probe, cursor, backing_file_offset,
                                     backing_file_size, cluster_size)
        # The LUKS header and the snapshot table, in file order.
        snapshots_first = 'crypto' in found and \
            snapshots_offset < found['crypto'][1]
        if snapshots_first:
            yield from _snapshot_table(probe, cursor, snapshots_offset,
                                       nb_snapshots)
        yield from ext.check_encryption(probe, cursor, crypt_method, found)
        if not snapshots_first:
            yield from _snapshot_table(probe, cursor, snapshots_offset,
                                       nb_snapshots)


def _check_header_length(probe: base.Probe, version: int,
                         header_length: int, cluster_size: int) -> bool:
    """header_length rules; returns whether the extensions can be read."""
    if version == 3 and header_length < V3_MIN_HEADER_LENGTH:
        probe.fail('header_length', 'header_length %d at offset 100 is '
                   'below %d' % (header_length, V3_MIN_HEADER_LENGTH))
    elif header_length > cluster_size:
        probe.fail('header_length', 'header_length %d at offset 100 exceeds '
                   'the cluster size %d' % (header_length, cluster_size))
    elif header_length % 8:
        # Required by the spec; qemu then looks for extensions at an
        # unaligned offset.
        probe.fail('header_length', 'header_length %d at offset 100 is not '
                   'a multiple of 8' % header_length)
    else:
        return True
    return False


def _check_features(probe: base.Probe, incompatible: int, compression: int,
                    cluster_bits: int) -> None:
    """Feature bits and compression type (``validate_compression_type``).

    qemu opens dirty and corrupt images read-only, which is all a guest
    backed by this image needs; the dirty bit only means leaked clusters.
    """
    unknown = incompatible & ~INCOMPAT_MASK
    if unknown:
        probe.fail('unknown_features', 'unknown incompatible feature bits '
                   '0x%x at offset 72' % unknown)
    if compression not in COMPRESSION_TYPES:
        probe.fail('compression_type', 'unknown compression_type %d at '
                   'offset 104' % compression)
    elif bool(compression) != bool(incompatible & INCOMPAT_COMPRESSION):
        probe.fail('compression_type', 'compression_type %s at offset 104 '
                   'but incompatible feature bit 3 is %s'
                   % (COMPRESSION_TYPES[compression],
                      'clear' if compression else 'set'))
    elif compression:
        probe.details['compression_type'] = COMPRESSION_TYPES[compression]
    if incompatible & INCOMPAT_EXTL2 and cluster_bits < MIN_EXTL2_CLUSTER_BITS:
        probe.fail('cluster_size', 'extended L2 entries (incompatible bit 4) '
                   'need clusters of at least %d bytes, cluster_bits is %d'
                   % (1 << MIN_EXTL2_CLUSTER_BITS, cluster_bits))
    if incompatible & INCOMPAT_CORRUPT:
        probe.details['corrupt'] = True


def _check_tables(probe: base.Probe, cluster_size: int,
                  l1_table_offset: int, l1_size: int,
                  refcount_table_offset: int, refcount_table_clusters: int,
                  snapshots_offset: int, nb_snapshots: int) -> None:
    """``qcow2_validate_table`` for the three tables, from the header.

    The tables are read by qemu when it opens the image, so each must also
    end before ``BDRV_MAX_LENGTH``.  Of the snapshot table only its first
    entry header is sure to be read: its total size (at most 64 MiB)
    depends on the entries, unread here.
    """
    if refcount_table_clusters == 0:
        probe.fail('table_bounds', 'refcount_table_clusters at offset 56 is '
                   '0: the image has no reference count table')
    tables = (
        ('refcount table', refcount_table_offset, 48, refcount_table_clusters,
         56, cluster_size, QCOW_MAX_REFTABLE_SIZE,
         refcount_table_clusters * cluster_size),
        ('snapshot table', snapshots_offset, 64, nb_snapshots, 60,
         SNAPSHOT_HEADER_SIZE, SNAPSHOT_HEADER_SIZE * QCOW_MAX_SNAPSHOTS,
         SNAPSHOT_HEADER_SIZE if nb_snapshots else 0),
        ('L1 table', l1_table_offset, 40, l1_size, 36, L1E_SIZE,
         QCOW_MAX_L1_SIZE, l1_size * L1E_SIZE))
    for (what, offset, offset_at, entries, entries_at, entry_len, max_bytes,
         read_len) in tables:
        if entries > max_bytes // entry_len:
            probe.fail('table_bounds', 'the %s of %d entries (count at offset '
                       '%d) exceeds qemu\'s limit of %d bytes'
                       % (what, entries, entries_at, max_bytes))
        elif offset % cluster_size or \
                offset > ext.INT64_MAX - entries * entry_len:
            probe.fail('table_bounds', 'the %s offset %d at offset %d is not '
                       'cluster aligned or out of range'
                       % (what, offset, offset_at))
        elif read_len and offset + read_len > ext.BDRV_MAX_LENGTH:
            probe.fail('table_bounds', 'the %s offset %d at offset %d is '
                       'beyond the last offset qemu can read'
                       % (what, offset, offset_at))


def _check_size(probe: base.Probe, size: int, cluster_bits: int,
                incompatible: int, l1_size: int) -> None:
    """The L1 table must map ``size`` bytes (``size_to_l1``)."""
    if size > ext.INT64_MAX:
        probe.fail('image_size', 'size %d at offset 24 is beyond the signed '
                   '64-bit range qemu uses' % size)
        return
    l2_bits = cluster_bits - (4 if incompatible & INCOMPAT_EXTL2 else 3)
    shift = cluster_bits + l2_bits
    # size_to_l1() adds in int64_t: past INT64_MAX the sum wraps to a
    # negative index, which qemu then takes as too big as well.
    rounded = size + (1 << shift) - 1
    needed = rounded >> shift
    if rounded > ext.INT64_MAX or needed > INT_MAX:
        probe.fail('image_size', 'size %d at offset 24 is too big for '
                   'clusters of %d bytes' % (size, 1 << cluster_bits))
    elif l1_size < needed:
        probe.fail('table_bounds', 'the L1 table of %d entries (l1_size at '
                   'offset 36) is too small for size %d, which needs %d'
                   % (l1_size, size, needed))


def _check_data_file(probe: base.Probe, incompatible: int,
                     named: tuple[int, str] | None) -> None:
    where = ''
    if named:
        where = ' %r (named in the header extension at offset %d)' % (
            named[1], named[0])
    if incompatible & INCOMPAT_DATA_FILE:
        probe.fail('data_file', 'incompatible feature bit 2 at offset 72: the '
                   'guest data is in the external data file%s' % where)
    elif named:
        # qemu ignores the name without the feature bit, but qemu itself
        # never writes one alone: refuse rather than guess.
        probe.fail('data_file', 'external data file%s' % where)


def _backing_file(probe: base.Probe, cursor: base.Reader, offset: int,
                  length: int, cluster_size: int) -> base.Reads[None]:
    """Generator: report the backing file, named as qemu would read it."""
    if length > min(ext.MAX_NAME, cluster_size - offset):
        probe.fail('backing_file', 'backing file name of %d bytes at offset '
                   '%d (qemu refuses names that long)' % (length, offset))
        return
    raw = yield from cursor.read(offset, length)
    # An empty name means no backing file to qemu, but qemu never writes
    # one: refuse it as well.
    name = '?' if raw is None else base.cstring(raw)
    probe.fail('backing_file', 'backing file %r named at offset %d'
               % (name, offset))


def _snapshot_table(probe: base.Probe, cursor: base.Reader, offset: int,
                    count: int) -> base.Reads[None]:
    """Generator: ``qcow2_read_snapshots()``, which qemu runs when it opens
    the image.  It refuses an entry with more than 1 KiB of extra data, and
    a table longer than 64 MiB; the rest of the entries (ids, names, VM
    state) are not looked at here.  Skipped for an image already refused.
    """
    if not count or probe.failures or count > QCOW_MAX_SNAPSHOTS:
        return
    start = offset
    for index in range(count):
        offset = base.round_up(offset, 8)
        raw = yield from cursor.read(offset, QCOW2_SNAPSHOT_HEADER.size,
                                     ahead=SNAPSHOT_READ_AHEAD)
        if raw is None:
            probe.fail('stream_order', 'snapshot table entry %d at offset '
                       '%d lies before data already read' % (index, offset))
            return
        (_l1_offset, _l1_size, id_size, name_size, _sec, _nsec, _clock,
         _vm_state, extra) = QCOW2_SNAPSHOT_HEADER.unpack(raw)
        if extra > QCOW_MAX_SNAPSHOT_EXTRA_DATA:
            probe.fail('table_bounds', 'snapshot table entry %d at offset %d '
                       'has %d bytes of extra data; qemu takes at most %d'
                       % (index, offset, extra,
                          QCOW_MAX_SNAPSHOT_EXTRA_DATA))
            return
        offset += QCOW2_SNAPSHOT_HEADER.size + extra + id_size + name_size
        if offset - start > QCOW_MAX_SNAPSHOTS_SIZE or \
                offset > ext.BDRV_MAX_LENGTH:
            probe.fail('table_bounds', 'the snapshot table of %d entries at '
                       'offset %d is over qemu\'s limit of %d bytes (entry %d '
                       'ends at offset %d)' % (count, start,
                                               QCOW_MAX_SNAPSHOTS_SIZE,
                                               index, offset))
            return
