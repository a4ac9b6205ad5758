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


"""Build containers with the real tools: OVAs with ``tar`` and a DSP0243
descriptor, compressed images with ``gzip``, ``bzip2``, ``xz`` and
``zstd``, and decompression bombs made by streaming (never written
uncompressed).
"""

import os
import shutil
import subprocess
import zlib

TOOLS = ('gzip', 'bzip2', 'xz', 'zstd')
EXTENSIONS = {'gzip': 'gz', 'bzip2': 'bz2', 'xz': 'xz', 'zstd': 'zst'}

VMDK_STREAM = ('http://www.vmware.com/interfaces/specifications/'
               'vmdk.html#streamOptimized')
QCOW2_URI = 'http://www.gnome.org/~markmc/qcow-image-format.html'


def have(tool):
    return shutil.which(tool) is not None


def descriptor(disks, name='vm', extra_files=()):
    """An OVF 1.0 envelope (DSP0243) for a virtual system whose disks are
    ``disks``: ``(href, capacity_bytes, format_uri[, compression])``, the
    first one the boot disk.  ``extra_files``: more ``(id, href)``
    references (an ISO, a file outside the package...).
    """
    refs, disk_elems, items = [], [], []
    for i, disk in enumerate(disks, 1):
        href, capacity, fmt = disk[:3]
        compression = disk[3] if len(disk) > 3 else None
        refs.append('    <File ovf:id="file%d" ovf:href="%s"%s/>' % (
            i, href, ' ovf:compression="%s"' % compression
            if compression else ''))
        disk_elems.append(
            '    <Disk ovf:diskId="vmdisk%d" ovf:fileRef="file%d" '
            'ovf:capacity="%d" ovf:capacityAllocationUnits="byte" '
            'ovf:format="%s"/>' % (i, i, capacity, fmt))
        items.append('''      <Item>
        <rasd:AddressOnParent>%d</rasd:AddressOnParent>
        <rasd:ElementName>disk%d</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk%d</rasd:HostResource>
        <rasd:InstanceID>%d</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>''' % (i - 1, i, i, 10 + i))
    for file_id, href in extra_files:
        refs.append('    <File ovf:id="%s" ovf:href="%s"/>' % (file_id, href))
    return '''<?xml version="1.0" encoding="UTF-8"?>
<Envelope vmw:buildId="build-1" xmlns="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
    xmlns:vmw="http://www.vmware.com/schema/ovf"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
%s
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
%s
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The VM Network network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="%s">
    <Info>A virtual machine</Info>
    <Name>%s</Name>
    <OperatingSystemSection ovf:id="94">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>%s</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
%s
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
''' % ('\n'.join(refs), '\n'.join(disk_elems), name, name, name,
       '\n'.join(items))


def tar(path, directory, names, fmt='ustar', extra=()):
    """``tar --format=FMT -cf PATH -C DIRECTORY NAMES...`` (GNU tar)."""
    subprocess.run(['tar', '--format=%s' % fmt, '-cf', str(path), '-C',
                    str(directory)] + list(extra) + list(names), check=True)
    return str(path)


def ova(path, directory, disks, fmt='ustar', descriptor_text=None,
        order=None):
    """Write ``vm.ovf`` for ``disks`` (as for :func:`descriptor`, files
    in ``directory``) and tar it first, then the disks (DSP0243 order),
    or in ``order``.
    """
    text = descriptor_text if descriptor_text is not None else \
        descriptor(disks)
    with open(os.path.join(directory, 'vm.ovf'), 'w') as f:
        f.write(text)
    names = order or ['vm.ovf'] + [d[0] for d in disks]
    return tar(path, directory, names, fmt)


def compress(src, tool, dst=None, args=()):
    """``TOOL -c [ARGS] SRC > DST`` with the real command-line tool."""
    dst = dst or '%s.%s' % (src, EXTENSIONS[tool])
    with open(dst, 'wb') as out:
        subprocess.run([tool, '-c'] + list(args) + [str(src)], stdout=out,
                       check=True)
    return dst


def zeros_through(tool, size, dst, args=()):
    """``size`` zero bytes compressed by ``tool``, streamed through a
    pipe: nothing uncompressed is ever written.
    """
    block = bytes(1 << 20)
    with open(dst, 'wb') as out:
        proc = subprocess.Popen([tool, '-c'] + list(args),
                                stdin=subprocess.PIPE, stdout=out)
        left = size
        while left > 0:
            proc.stdin.write(block[:min(left, len(block))])
            left -= len(block)
        proc.stdin.close()
        assert proc.wait() == 0
    return dst


def gzip_bomb(dst, size):
    """A valid gzip member (RFC 1952) of ``size`` zero bytes (a multiple
    of 1 MiB), made without compressing them all: after a full flush
    deflate restarts from the same state, so 1 MiB of zeros compresses to
    the same bytes every time.  The CRC32 is computed over the zeros.
    """
    block = bytes(1 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    again = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    final = comp.flush(zlib.Z_FINISH)
    crc = 0
    with open(dst, 'wb') as out:
        out.write(b'\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff')
        out.write(first)
        crc = zlib.crc32(block, crc)
        for _ in range(size // len(block) - 1):
            out.write(again)
            crc = zlib.crc32(block, crc)
        out.write(final)
        out.write(crc.to_bytes(4, 'little'))
        out.write((size & 0xFFFFFFFF).to_bytes(4, 'little'))
    return dst
