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

"""Parallels expandable images (Glance's ``ploop``, qemu's ``parallels``).

Reference: qemu docs/interop/parallels.txt (the "Parallels Expandable Image
File Format"), and qemu 7.2 block/parallels.c ``parallels_open`` and
block/parallels-ext.c, whose behaviour is what we match.

A 64-byte little-endian header is followed by the BAT (one 32-bit entry
per cluster) and the data area.  qemu recognises the image by either magic
and version 2 (``parallels_probe``); when opening it read-only (as
``qemu-img info`` and ``convert`` do) it checks:

* the version (2);
* ``tracks`` (the cluster size in sectors) non-zero and at most
  ``INT32_MAX / 513``;
* ``nb_bat_entries`` at most ``INT_MAX / 4``; then it reads the header and
  BAT in one request, which fails past qemu's request limit;
* ``ext_off``: a Format Extension cluster (dirty bitmaps) is parsed and
  checked (magic, MD5 checksum, features) and any error fails the open;
* the virtual size, ``nb_sectors`` sectors, at most ``BDRV_MAX_LENGTH``
  bytes.  For the old ``WithoutFreeSpace`` magic only the low 32 bits of
  ``nb_sectors`` count.

qemu 7.2 does not check ``data_off``, the BAT entries, ``flags`` or
``in_use`` when opening read-only (later versions do), nor do we.  An
image whose ``in_use`` says it was not closed cleanly opens read-only and
is reported in ``details``; qemu 7.2 refuses to open it read/write.

Stricter than qemu, and why:

* a Format Extension is refused (``format_extension``): checking it takes
  a whole cluster (1 MiB by default) and qemu's dirty bitmap internals;
  qemu 7.2 never writes one, so only images from Virtuozzo tools have it;
* the BAT must lie within the image (``table_bounds``): qemu reads zeros
  past the end of the file, so a 64-byte upload could make it allocate and
  read 2 GiB.  The BAT entries themselves are not read.
"""

import logging
import struct

from glance_vsize.formats import base
from glance_vsize import inspection

LOG = logging.getLogger(__name__)

#: docs/interop/parallels.txt "Header" (qemu's ParallelsHeader),
#: little-endian.
_LAYOUT = (
    ('magic', '16s'), ('version', 'I'), ('heads', 'I'), ('cylinders', 'I'),
    ('tracks', 'I'), ('nb_bat_entries', 'I'), ('nb_sectors', 'Q'),
    ('in_use', 'I'), ('data_off', 'I'), ('flags', 'I'), ('ext_off', 'Q'),
)
PARALLELS_HEADER = struct.Struct('<' + ''.join(code for _, code in _LAYOUT))
_FIELDS = tuple(name for name, _ in _LAYOUT)
#: Field name -> offset in the header, for messages.
OFFSETS = {name: struct.calcsize('<' + ''.join(c for _, c in _LAYOUT[:i]))
           for i, (name, _) in enumerate(_LAYOUT)}

#: The two magics: BAT entries in sectors ("legacy", 32-bit nb_sectors)
#: or in clusters ("ext").
MAGICS = {b'WithoutFreeSpace': 'legacy', b'WithouFreSpacExt': 'ext'}
HEADER_VERSION = 2
HEADER_INUSE_MAGIC = 0x746F6E59

INT32_MAX = 0x7fffffff
#: parallels_open: "Invalid image: Too big cluster".
MAX_TRACKS = INT32_MAX // 513
#: parallels_open: "Catalog too large".
MAX_BAT_ENTRIES = INT32_MAX // 4
#: include/block/block-common.h BDRV_REQUEST_MAX_BYTES: the largest single
#: request, which the header + BAT read must not exceed.  qemu rounds the
#: read up to the host's memory alignment; 64 KiB covers every host page
#: size qemu runs on.
BDRV_REQUEST_MAX_BYTES = (INT32_MAX >> 9) << 9
HEADER_ALIGN = 65536
#: include/block/block_int-common.h BDRV_MAX_LENGTH: the largest disk.
BDRV_MAX_LENGTH = (2 ** 63 - 1) // (1 << 30) * (1 << 30)


class PloopInspector(base.FormatInspector):
    """Parallels expandable images, checked as qemu 7.2 opens them."""

    name = 'ploop'
    order = 70
    qemu_name = 'parallels'

    #: The checks this inspector can fail, and what each means.
    CHECKS = {
        'truncated': 'the image ends inside the Parallels header',
        'version': 'a header version qemu does not read',
        'cluster_size': 'a cluster size outside qemu\'s range',
        'size_limit': 'a size over what qemu supports',
        'format_extension': 'a Format Extension, which qemu refuses',
        'table_bounds': 'the BAT is too large or ends past the image',
    }

    def inspect(self, probe: base.Probe,
                policy: inspection.Policy) -> base.Reads[None]:
        head = yield base.Read(0, PARALLELS_HEADER.size)
        variant = MAGICS.get(head[:16])
        if variant is None:
            return
        probe.match('magic %r at offset 0' % head[:16].decode(),
                    variant=variant)
        if len(head) < PARALLELS_HEADER.size:
            raise base.FormatError(
                'truncated', 'the Parallels header needs %d bytes but the '
                'image ends at offset %d'
                % (PARALLELS_HEADER.size, len(head)))
        hdr = dict(zip(_FIELDS, PARALLELS_HEADER.unpack(head)))

        if hdr['version'] != HEADER_VERSION:
            probe.fail('version', 'version %d at offset %d, qemu reads only '
                       '%d' % (hdr['version'], OFFSETS['version'],
                               HEADER_VERSION))
        tracks = hdr['tracks']
        if not 0 < tracks <= MAX_TRACKS:
            probe.fail('cluster_size',
                       'cluster size of %d sectors (tracks, at offset %d): '
                       'qemu allows 1 to %d' % (tracks, OFFSETS['tracks'],
                                                MAX_TRACKS))
        probe.details['cluster_size'] = tracks * base.SECTOR

        nb_sectors = hdr['nb_sectors']
        if variant == 'legacy':
            nb_sectors &= 0xffffffff
        if nb_sectors * base.SECTOR > BDRV_MAX_LENGTH:
            probe.fail('size_limit',
                       '%d sectors (nb_sectors, at offset %d) is more than '
                       'the %d bytes qemu supports'
                       % (nb_sectors, OFFSETS['nb_sectors'], BDRV_MAX_LENGTH))
        else:
            probe.virtual_size = nb_sectors * base.SECTOR

        if hdr['ext_off']:
            probe.fail('format_extension',
                       'Format Extension at sector %d (ext_off, at offset %d):'
                       ' qemu parses it (dirty bitmaps) and refuses the image'
                       ' if it is invalid; it is not inspected here'
                       % (hdr['ext_off'], OFFSETS['ext_off']))
        if hdr['in_use'] == HEADER_INUSE_MAGIC:
            probe.details['dirty'] = True

        entries = hdr['nb_bat_entries']
        bat_end = PARALLELS_HEADER.size + 4 * entries
        if entries > MAX_BAT_ENTRIES or \
                base.round_up(bat_end, HEADER_ALIGN) > BDRV_REQUEST_MAX_BYTES:
            raise base.FormatError(
                'table_bounds',
                'a BAT of %d entries (nb_bat_entries, at offset %d) is more '
                'than qemu reads' % (entries, OFFSETS['nb_bat_entries']))
        length = yield base.LENGTH
        if bat_end > length:
            probe.fail('table_bounds',
                       'the BAT of %d entries (nb_bat_entries, at offset %d) '
                       'ends at offset %d, past the end of the image at '
                       'offset %d' % (entries, OFFSETS['nb_bat_entries'],
                                      bat_end, length))
        LOG.debug('Parallels %s image: %d sectors, cluster %d sectors, '
                  '%d BAT entries', variant, nb_sectors, tracks, entries)
