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

"""VirtualBox Disk Image (VDI), as qemu 7.2's block/vdi.c reads it.

There is no published specification: the layout is VirtualBox's
``VDIPREHEADER`` and ``VDIHEADER1PLUS`` (src/VBox/Storage/VDICore.h), which
qemu mirrors in its ``VdiHeader`` with its own field names, used here.  The
512-byte header is followed by the block map (one little-endian 32-bit
entry per 1 MiB block) at ``offset_bmap`` and the data blocks at
``offset_data``.

qemu recognises a VDI by its signature alone (``vdi_probe``) and, when
opening it, checks the header (``vdi_open``) in this order:

* ``disk_size`` at most ``VDI_DISK_SIZE_MAX``;
* the signature, then version 1.1;
* ``offset_bmap`` and ``offset_data`` sector-aligned;
* ``sector_size`` 512 and ``block_size`` 1 MiB (the only supported ones);
* ``disk_size``, rounded up to a sector, within
  ``blocks_in_image * block_size``;
* ``uuid_link`` and ``uuid_parent`` null: qemu does not follow a
  differencing image to its parent, it refuses it;
* ``blocks_in_image`` at most ``VDI_BLOCKS_IN_IMAGE_MAX``.

Every one is ported here.  The virtual size is ``disk_size`` rounded *up*
to a sector: images written by ``VBoxManage convertfromraw`` can have odd
sizes.  ``image_type`` (dynamic, static, undo, diff), ``header_size`` and
``image_flags`` are not looked at by qemu and do not fail here either.

qemu then reads the whole block map, and a map past the end of the file
reads as zeros (every block mapped to block 0).  We do not read the map;
we require it to lie within the image (``table_bounds``), which qemu does
not, so that a tiny upload cannot make qemu allocate and read up to 2 GiB.
"""

import logging
import struct
from typing import Any

from glance_vsize.formats import base
from glance_vsize import inspection

LOG = logging.getLogger(__name__)

#: qemu block/vdi.c VdiHeader (VirtualBox VDIPREHEADER + VDIHEADER1PLUS),
#: little-endian, then 56 unused bytes up to 512.  VirtualBox's names are
#: szFileInfo, u32Signature, u32Version, cbHeader, u32Type, fFlags,
#: szComment, offBlocks, offData, LegacyGeometry, u32Dummy, cbDisk,
#: cbBlock, cbBlockExtra, cBlocks, cBlocksAllocated, uuidCreate,
#: uuidModify, uuidLinkage, uuidParentModify.
_LAYOUT = (
    ('text', '64s'), ('signature', 'I'), ('version', 'I'),
    ('header_size', 'I'), ('image_type', 'I'), ('image_flags', 'I'),
    ('description', '256s'), ('offset_bmap', 'I'), ('offset_data', 'I'),
    ('cylinders', 'I'), ('heads', 'I'), ('sectors', 'I'),
    ('sector_size', 'I'), ('unused1', 'I'), ('disk_size', 'Q'),
    ('block_size', 'I'), ('block_extra', 'I'), ('blocks_in_image', 'I'),
    ('blocks_allocated', 'I'), ('uuid_image', '16s'),
    ('uuid_last_snap', '16s'), ('uuid_link', '16s'), ('uuid_parent', '16s'),
)
VDI_HEADER = struct.Struct('<' + ''.join(code for _, code in _LAYOUT))
_FIELDS = tuple(name for name, _ in _LAYOUT)
#: Field name -> offset in the header, for messages.
OFFSETS = {name: struct.calcsize('<' + ''.join(c for _, c in _LAYOUT[:i]))
           for i, (name, _) in enumerate(_LAYOUT)}

VDI_HEADER_SIZE = 512
VDI_SIGNATURE = 0xbeda107f
SIGNATURE_OFFSET = 0x40
VDI_VERSION_1_1 = 0x00010001

#: The only block (cluster) size qemu accepts, and its block map limit:
#: the map is read in one request of at most INT_MAX bytes, rounded up
#: to a sector.
DEFAULT_CLUSTER_SIZE = 1 << 20
VDI_BLOCKS_IN_IMAGE_MAX = (0x7fffffff + 1 - base.SECTOR) // 4
VDI_DISK_SIZE_MAX = VDI_BLOCKS_IN_IMAGE_MAX * DEFAULT_CLUSTER_SIZE

#: VirtualBox image types (VDI_IMAGE_TYPE_*); qemu ignores the field.
IMAGE_TYPES = {1: 'dynamic', 2: 'static', 3: 'undo', 4: 'diff'}

NULL_UUID = b'\0' * 16


class VdiInspector(base.FormatInspector):
    """VDI 1.1 images, checked as qemu 7.2's ``vdi_open`` does."""

    name = 'vdi'
    order = 60

    #: The checks this inspector can fail, and what each means.
    CHECKS = {
        'truncated': 'the image ends inside the VDI header',
        'table_bounds':
            'the block map is misplaced, too large or too small for the disk',
        'size_limit': 'a disk size over what qemu supports',
        'version': 'a VDI version other than 1.1',
        'alignment': 'an offset that is not a multiple of 512',
        'sector_size': 'a sector size other than 512',
        'cluster_size': 'a block size other than 1 MiB',
        'parent': 'a differencing image naming a parent',
    }

    def inspect(self, probe: base.Probe,
                policy: inspection.Policy) -> base.Reads[None]:
        head = yield base.Read(0, VDI_HEADER_SIZE)
        if len(head) < SIGNATURE_OFFSET + 4:
            return
        signature, = struct.unpack_from('<I', head, SIGNATURE_OFFSET)
        if signature != VDI_SIGNATURE:
            return
        probe.match('VDI signature 0x%08x at offset %d'
                    % (VDI_SIGNATURE, SIGNATURE_OFFSET))
        if len(head) < VDI_HEADER_SIZE:
            raise base.FormatError(
                'truncated', 'the VDI header needs %d bytes but the image '
                'ends at offset %d' % (VDI_HEADER_SIZE, len(head)))
        hdr = dict(zip(_FIELDS, VDI_HEADER.unpack_from(head)))
        probe.variant = IMAGE_TYPES.get(hdr['image_type'],
                                        'type %d' % hdr['image_type'])
        self._check(probe, hdr)

        # vdi_open: odd sizes are rounded up to a whole sector.
        probe.virtual_size = base.round_up(hdr['disk_size'])
        LOG.debug('VDI %s image, disk size %d, %d blocks',
                  probe.variant, hdr['disk_size'], hdr['blocks_in_image'])

        # Not a qemu check: the block map must be inside the image.
        map_bytes = base.round_up(hdr['blocks_in_image'] * 4)
        map_end = hdr['offset_bmap'] + map_bytes
        if map_bytes and hdr['blocks_in_image'] <= VDI_BLOCKS_IN_IMAGE_MAX:
            length = yield base.LENGTH
            if map_end > length:
                probe.fail('table_bounds',
                           'the block map of %d entries at offset %d (field '
                           'at offset %d) ends at offset %d, past the end of '
                           'the image at offset %d'
                           % (hdr['blocks_in_image'], hdr['offset_bmap'],
                              OFFSETS['offset_bmap'], map_end, length))

    @staticmethod
    def _check(probe: base.Probe, hdr: dict[str, Any]) -> None:
        """The header checks of qemu's ``vdi_open``, in its order."""
        if hdr['disk_size'] > VDI_DISK_SIZE_MAX:
            probe.fail('size_limit',
                       'disk size %d at offset %d is over the %d bytes qemu '
                       'supports' % (hdr['disk_size'], OFFSETS['disk_size'],
                                     VDI_DISK_SIZE_MAX))
        version = hdr['version']
        if version != VDI_VERSION_1_1:
            probe.fail('version',
                       'version %d.%d at offset %d, qemu reads only 1.1'
                       % (version >> 16, version & 0xffff,
                          OFFSETS['version']))
        for field in ('offset_bmap', 'offset_data'):
            if hdr[field] % base.SECTOR:
                probe.fail('alignment',
                           '%s 0x%x at offset %d is not a multiple of %d'
                           % (field, hdr[field], OFFSETS[field], base.SECTOR))
        if hdr['sector_size'] != base.SECTOR:
            probe.fail('sector_size',
                       'sector size %d at offset %d, qemu reads only %d'
                       % (hdr['sector_size'], OFFSETS['sector_size'],
                          base.SECTOR))
        if hdr['block_size'] != DEFAULT_CLUSTER_SIZE:
            probe.fail('cluster_size',
                       'block size %d at offset %d, qemu reads only %d'
                       % (hdr['block_size'], OFFSETS['block_size'],
                          DEFAULT_CLUSTER_SIZE))
        room = hdr['blocks_in_image'] * hdr['block_size']
        if base.round_up(hdr['disk_size']) > room:
            probe.fail('table_bounds',
                       'disk size %d at offset %d is larger than the %d '
                       'bytes the %d blocks of the block map cover'
                       % (hdr['disk_size'], OFFSETS['disk_size'], room,
                          hdr['blocks_in_image']))
        for field in ('uuid_link', 'uuid_parent'):
            if hdr[field] != NULL_UUID:
                probe.fail('parent',
                           'non-null %s %s at offset %d: a differencing '
                           'image, which qemu refuses'
                           % (field, hdr[field].hex(), OFFSETS[field]))
        if hdr['blocks_in_image'] > VDI_BLOCKS_IN_IMAGE_MAX:
            probe.fail('table_bounds',
                       '%d blocks (field at offset %d), qemu allows at '
                       'most %d' % (hdr['blocks_in_image'],
                                    OFFSETS['blocks_in_image'],
                                    VDI_BLOCKS_IN_IMAGE_MAX))
