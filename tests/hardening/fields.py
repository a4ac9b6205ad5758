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

"""Every header field of every format, from the format modules' own
``struct`` layouts, and the values the mutation tests give them.

A :class:`Field` is one field of one structure at one place in one image;
:func:`fields_of` lists them for an image (its headers, where the image
says they are).  :func:`mutate` sets a field and then, for the variants
that ask for it, recomputes the checksum that covers it (VHD footer,
VHDX header and region table, GPT header), so that the checks behind
the checksum are reached too.
"""

import random
import re
import struct
import zlib

from glance_vsize.formats import crc32c
from glance_vsize.formats import gpt
from glance_vsize.formats import luks
from glance_vsize.formats import ploop
from glance_vsize.formats import qcow2
from glance_vsize.formats import qed
from glance_vsize.formats import vdi
from glance_vsize.formats import vhd
from glance_vsize.formats import vhdx
from glance_vsize.formats import vmdk

_CODE = re.compile(r'(\d*)([a-zA-Z?])')


class Field:
    """``size`` bytes at absolute ``offset``: an integer (``code`` one of
    the struct integer codes, ``order`` '<' or '>') or raw bytes ('s').
    """

    def __init__(self, where, name, offset, code, size, order, checksum):
        self.where = where          # 'qcow2 header'
        self.name = name
        self.offset = offset
        self.code = code
        self.size = size
        self.order = order
        self.checksum = checksum    # function(image bytearray) or None

    def __repr__(self):
        return '%s.%s@%d' % (self.where, self.name, self.offset)

    def encode(self, value):
        if self.code == 's':
            return bytes(value)
        return value.to_bytes(self.size, 'little' if self.order == '<'
                              else 'big')

    def values(self, rnd, count=1):
        """0, 1, the maximum, and ``count`` random values."""
        if self.code == 's':
            vals = [bytes(self.size), b'\1' + bytes(self.size - 1),
                    b'\xff' * self.size]
            vals += [rnd.randbytes(self.size) for _ in range(count)]
            return vals
        top = (1 << (8 * self.size)) - 1
        vals = [0, 1, top]
        vals += [rnd.randrange(top + 1) for _ in range(count)]
        return vals


def layout(where, st, offset, names=None, checksum=None):
    """The fields of ``struct.Struct`` ``st`` placed at ``offset``."""
    order = st.format[0]
    specs = []
    for count, code in _CODE.findall(st.format[1:]):
        count = int(count or 1)
        if code == 's':
            specs.append((code, count))
        else:
            specs.extend([(code, struct.calcsize(order + code))] * count)
    names = list(names or [])
    fields = []
    pos = offset
    for i, (code, size) in enumerate(specs):
        name = names[i] if i < len(names) else 'field%d' % i
        fields.append(Field(where, name, pos, code, size, order, checksum))
        pos += size
    assert pos - offset == st.size, (where, pos - offset, st.size)
    return fields


# Checksums to recompute after a mutation

def _vhd_footer_at(at):
    def fix(img):
        footer = img[at:at + vhd.FOOTER_SIZE]
        if len(footer) == vhd.FOOTER_SIZE:
            struct.pack_into('>I', img, at + vhd.CHECKSUM_OFFSET,
                             vhd.footer_checksum(bytes(footer)))
    fix.field = (at + vhd.CHECKSUM_OFFSET, 4)
    return fix


def _vhdx_crc_at(at, size):
    def fix(img):
        block = bytes(img[at:at + size])
        if len(block) == size:
            struct.pack_into('<I', img, at + 4, crc32c.crc32c(
                block[:4] + b'\0\0\0\0' + block[8:]))
    fix.field = (at + 4, 4)
    return fix


def _gpt_crc_at(at):
    def fix(img):
        size = struct.unpack_from('<I', img, at + 12)[0]
        if gpt.GPT_HEADER.size <= size <= 512:
            blank = img[at:at + 16] + b'\0\0\0\0' + img[at + 20:at + size]
            struct.pack_into('<I', img, at + 16, zlib.crc32(blank))
    fix.field = (at + 16, 4)
    return fix


# Where each format's structures are

QCOW2_NAMES = ('magic version backing_file_offset backing_file_size '
               'cluster_bits size crypt_method l1_size l1_table_offset '
               'refcount_table_offset refcount_table_clusters nb_snapshots '
               'snapshots_offset').split()
QCOW2_V3_NAMES = ('incompatible_features compatible_features '
                  'autoclear_features refcount_order header_length').split()
QED_NAMES = ('magic cluster_size table_size header_size features '
             'compat_features autoclear_features l1_table_offset image_size '
             'backing_filename_offset backing_filename_size').split()
LUKS_NAMES = ('magic version cipher_name cipher_mode hash_spec '
              'payload_offset key_bytes mk_digest mk_digest_salt '
              'mk_digest_iter uuid').split()
SLOT_NAMES = 'active iterations salt key_offset stripes'.split()
VHDX_REGION_NAMES = 'guid file_offset length required'.split()
VHDX_META_NAMES = 'item_id offset length flags reserved'.split()


def _vhdx_fields(img):
    kib = 1024
    out = layout('vhdx identifier', vhdx.VHDX_FILE_IDENTIFIER, 0,
                 ['signature', 'creator'])
    for at in vhdx.HEADER_OFFSETS:
        for fix in (None, _vhdx_crc_at(at, vhdx.HEADER_SIZE)):
            out += layout('vhdx header@%dK%s' % (at // kib,
                                                 '+crc' if fix else ''),
                          vhdx.VHDX_HEADER, at, vhdx.Header._fields, fix)
    rt = vhdx.REGION_TABLE_OFFSET
    fix = _vhdx_crc_at(rt, vhdx.REGION_TABLE_SIZE)
    out += layout('vhdx region table', vhdx.VHDX_REGION_TABLE_HEADER, rt,
                  ['signature', 'checksum', 'entry_count', 'reserved'])
    out += layout('vhdx region table+crc', vhdx.VHDX_REGION_TABLE_HEADER, rt,
                  ['signature', 'checksum', 'entry_count', 'reserved'], fix)
    count = struct.unpack_from('<I', img, rt + 8)[0]
    meta = None
    for i in range(min(count, 4)):
        at = rt + 16 + 32 * i
        guid, offset = struct.unpack_from('<16sQ', img, at)
        if guid == vhdx.METADATA_GUID:
            meta = offset
        out += layout('vhdx region %d+crc' % i,
                      vhdx.VHDX_REGION_TABLE_ENTRY, at, VHDX_REGION_NAMES,
                      fix)
    if meta is None or meta + 64 * kib > len(img):
        return out
    out += layout('vhdx metadata table', vhdx.VHDX_METADATA_TABLE_HEADER,
                  meta, ['signature', 'reserved', 'entry_count', 'reserved2'])
    items = struct.unpack_from('<H', img, meta + 10)[0]
    for i in range(min(items, 8)):
        at = meta + 32 * (i + 1)
        guid, offset = struct.unpack_from('<16sI', img, at)
        name = vhdx.METADATA_ITEMS.get(guid, ('item%d' % i, 0))[0]
        out += layout('vhdx metadata entry %d' % i,
                      vhdx.VHDX_METADATA_TABLE_ENTRY, at, VHDX_META_NAMES)
        item = meta + offset
        if guid == vhdx.FILE_PARAMETERS:
            out += layout('vhdx ' + name, vhdx.VHDX_FILE_PARAMETERS, item,
                          ['block_size', 'flags'])
        elif guid == vhdx.VIRTUAL_DISK_SIZE:
            out += layout('vhdx ' + name, struct.Struct('<Q'), item,
                          ['size'])
        elif guid in (vhdx.LOGICAL_SECTOR_SIZE, vhdx.PHYSICAL_SECTOR_SIZE):
            out += layout('vhdx ' + name, struct.Struct('<I'), item,
                          ['size'])
    return out


def _vhd_fields(img):
    out = []
    ends = [len(img) - vhd.FOOTER_SIZE]
    if img[:8] == vhd.FOOTER_COOKIE:
        ends.insert(0, 0)
    for at in ends:
        for fix in (None, _vhd_footer_at(at)):
            out += layout('vhd footer@%d%s' % (at, '+checksum' if fix else ''),
                          vhd.VHD_FOOTER, at, vhd.Footer._fields, fix)
    if img[:8] == vhd.FOOTER_COOKIE:
        data_offset = struct.unpack_from('>Q', img, 16)[0]
        if data_offset + vhd.DYNAMIC_HEADER_SIZE <= len(img):
            out += layout('vhd dynamic header', vhd.VHD_DYNAMIC_HEADER,
                          data_offset, vhd.DynamicHeader._fields)
    return out


def _vmdk_fields(img):
    out = layout('vmdk header', vmdk.SPARSE_EXTENT_HEADER, 0,
                 vmdk.SparseHeader._fields)
    gd = struct.unpack_from('<Q', img, 56)[0]
    if gd == vmdk.GD_AT_END:
        at = len(img) - 1024
        out += layout('vmdk footer', vmdk.SPARSE_EXTENT_HEADER, at,
                      vmdk.SparseHeader._fields)
        out += layout('vmdk footer marker', vmdk.MARKER, at - 512,
                      ['val', 'size', 'type'])
        out += layout('vmdk eos marker', vmdk.MARKER, at + 512,
                      ['val', 'size', 'type'])
    return out


def _qcow2_fields(img):
    out = layout('qcow2 header', qcow2.QCOW2_HEADER_V2, 0, QCOW2_NAMES)
    if struct.unpack_from('>I', img, 4)[0] >= 3:
        out += layout('qcow2 header v3', qcow2.QCOW2_HEADER_V3, 72,
                      QCOW2_V3_NAMES)
        out += layout('qcow2 header v3', struct.Struct('>B'), 104,
                      ['compression_type'])
    # Header extensions: type and length of the first few.
    offset = 104 if struct.unpack_from('>I', img, 4)[0] >= 3 else 72
    if offset == 104:
        offset = struct.unpack_from('>I', img, 100)[0]
    for i in range(4):
        if offset + 8 > min(len(img), 4096):
            break
        ext_type, length = struct.unpack_from('>II', img, offset)
        out += layout('qcow2 extension %d' % i, struct.Struct('>II'), offset,
                      ['type', 'length'])
        if ext_type == 0:
            break
        offset += 8 + (length + 7) // 8 * 8
    return out


def _luks_fields(img):
    out = layout('luks header', luks.LUKS1_PHDR, 0, LUKS_NAMES)
    for i in range(luks.LUKS1_NUM_KEYS):
        out += layout('luks slot %d' % i, luks.LUKS1_KEY_SLOT,
                      luks.LUKS1_PHDR.size + i * luks.LUKS1_KEY_SLOT.size,
                      SLOT_NAMES)
    return out


def _raw_fields(img):
    out = []
    if img[512:520] == gpt.GPT_SIGNATURE:
        for fix in (None, _gpt_crc_at(512)):
            out += layout('gpt header%s' % ('+crc' if fix else ''),
                          gpt.GPT_HEADER, 512, None, fix)
    if img[510:512] == gpt.MBR_SIGNATURE:
        for i in range(4):
            out += layout('mbr record %d' % i, gpt.MBR_PARTITION_RECORD,
                          446 + 16 * i)
    return out


FIELDS = {
    'qcow2': _qcow2_fields,
    'qed': lambda img: layout('qed header', qed.QED_HEADER, 0, QED_NAMES),
    'vmdk': _vmdk_fields,
    'vhd': _vhd_fields,
    'vhdx': _vhdx_fields,
    'vdi': lambda img: layout('vdi header', vdi.VDI_HEADER, 0,
                              [n for n, _ in vdi._LAYOUT]),
    'ploop': lambda img: layout('ploop header', ploop.PARALLELS_HEADER, 0,
                                [n for n, _ in ploop._LAYOUT]),
    'luks': _luks_fields,
    'raw': _raw_fields,
    'iso': _raw_fields,
}


def fields_of(fmt, img):
    """The mutable fields of an image of format ``fmt`` (its bytes)."""
    return [f for f in FIELDS[fmt](img) if f.offset + f.size <= len(img)]


def mutate(img, field, value):
    """A copy of ``img`` (bytes) with ``field`` set to ``value``."""
    out = bytearray(img)
    out[field.offset:field.offset + field.size] = field.encode(value)
    if field.checksum is not None:
        field.checksum(out)
    return out


def changed(img, mutated, field):
    """The ``(offset, length)`` ranges where ``mutated`` differs from
    ``img`` (the field, and the checksum it may have changed).
    """
    ranges = [(field.offset, field.size)]
    if field.checksum is not None:
        ranges.append(field.checksum.field)
    return [(at, n) for at, n in ranges
            if img[at:at + n] != mutated[at:at + n]]


def mutations(fmt, img, seed, randoms=1):
    """``(field, value)`` for every field of the image: 0, 1, max, random
    (seeded), skipping values the field already has.
    """
    rnd = random.Random(seed)
    for field in fields_of(fmt, img):
        current = bytes(img[field.offset:field.offset + field.size])
        for value in field.values(rnd, randoms):
            if field.encode(value) != current:
                yield field, value
