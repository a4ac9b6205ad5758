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


"""ISO 9660 and UDF optical disc images.

qemu has no ISO driver: it reads an ISO as raw, so the virtual size of an
ISO is the raw size of the stream (its length rounded up to 512 bytes,
which :func:`glance_vsize.engine.decide` applies to every content
signature).  This inspector only recognises the content, so that
``disk_format=iso`` can be checked and an ISO volume descriptor hiding in
another format's file is noticed.

ECMA-119 (ISO 9660) 6.2 and 8.1: the system area is the first 16 logical
sectors of 2048 bytes (32 KiB, free for an MBR/GPT: "hybrid" ISOs); the
volume descriptor set starts at sector 16, each descriptor being a type
byte, the standard identifier ``CD001`` and version 1.  ECMA-167 (UDF)
2/9.1: the volume recognition sequence at the same place uses the
identifiers ``BEA01``, ``NSR02``/``NSR03`` and ``TEA01``.
"""

import struct

from glance_vsize.formats import base
from glance_vsize import inspection

#: ECMA-119 8.1: Volume Descriptor Type, Standard Identifier, Version.
VOLUME_DESCRIPTOR = struct.Struct('<B5sB')

SYSTEM_AREA = 16 * 2048
ISO9660_ID = b'CD001'
UDF_IDS = (b'BEA01', b'NSR02', b'NSR03', b'TEA01', b'BOOT2')


class IsoInspector(base.FormatInspector):
    name = 'iso'
    order = 90
    content = True

    def inspect(self, probe: base.Probe,
                policy: inspection.Policy) -> base.Reads[None]:
        data = yield base.Read(SYSTEM_AREA, VOLUME_DESCRIPTOR.size)
        if len(data) < VOLUME_DESCRIPTOR.size:
            return
        vd_type, ident, version = VOLUME_DESCRIPTOR.unpack(data)
        if ident == ISO9660_ID and version == 1:
            probe.match('ISO 9660 volume descriptor %r at offset %d'
                        % (ident.decode(), SYSTEM_AREA + 1),
                        variant='iso9660')
        elif ident in UDF_IDS:
            probe.match('UDF volume recognition sequence %r at offset %d'
                        % (ident.decode(), SYSTEM_AREA + 1), variant='udf')
