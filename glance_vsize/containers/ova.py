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

"""``container_format=ova``: an OVF package in one tar archive.

DMTF DSP0243 ("OVF package", "Distribution as a single file"): an OVA is
a ustar archive holding the OVF descriptor (``*.ovf``, first), optionally
a manifest (``*.mf``) and a certificate (``*.cert``), then the files the
descriptor's ``References`` name, disk images among them.  The archive is
read as it passes (:mod:`~glance_vsize.containers.tar`), and so is every
member: each file other than the descriptor, manifest and certificate is
inspected by its own :class:`~glance_vsize.push.StreamInspector` as its
bytes pass (through gzip when the descriptor says ``ovf:compression=
"gzip"``), one member at a time.

The verdict is the boot disk's: the disk of the descriptor's first
``DiskSection/Disk`` that has a file, or, without a descriptor that names
one, the first member whose name ends in a disk image extension.  The
other disks are named in ``details['other_disks']``.  The OVA is refused
when any member is unsafe (its failures are reported, naming the member),
when the descriptor names a file outside the archive (``ova_reference``),
when it cannot be read safely (``ova_descriptor``), when it holds no disk
(``ova_disk``), and for the archive checks of the tar reader
(``tar_header``, ``unsafe_member``, ``duplicate_member``,
``trailing_data``, ``truncated``).  A descriptor placed after the disks
(DSP0243 puts it first) is still used, except to decompress a member that
has already passed (``stream_order``).
"""

import logging

from glance_vsize.containers import base
from glance_vsize.containers import compressed
from glance_vsize.containers import ovf
from glance_vsize.containers import tar
from glance_vsize import inspection
from glance_vsize import push

LOG = logging.getLogger(__name__)

#: Member names taken for disk images when no descriptor names one.
DISK_EXTENSIONS = ('.vmdk', '.qcow2', '.qcow', '.vhd', '.vhdx', '.vdi',
                   '.img', '.raw', '.iso', '.hds', '.ploop')

#: The descriptor, and the members that are not inspected: the manifest
#: and the certificate (DSP0243, "OVF package").
DESCRIPTOR_EXTENSION = '.ovf'
SKIPPED_EXTENSIONS = ('.mf', '.cert')

#: The most members an OVA may have (a handful is usual).
MAX_MEMBERS = 1000


class _DescriptorSink:
    def __init__(self, ova: 'OvaInspector') -> None:
        self.ova = ova
        self.data = bytearray()

    def feed(self, piece: memoryview) -> None:
        if len(self.data) + len(piece) > ovf.MAX_DESCRIPTOR:
            raise base.ContainerError(
                'ova_descriptor', 'the OVF descriptor is more than %d bytes'
                % ovf.MAX_DESCRIPTOR)
        self.data += piece

    def end(self) -> None:
        self.ova.descriptor_read(bytes(self.data))


class _MemberSink:
    def __init__(self, ova: 'OvaInspector', name: str,
                 inspector: push.PushInspector) -> None:
        self.ova, self.name, self.inspector = ova, name, inspector

    def feed(self, piece: memoryview) -> None:
        self.inspector.feed(piece)
        if self.inspector.refusal is not None:
            self.ova.member_done(self.name, self.inspector.refusal)

    def end(self) -> None:
        self.ova.member_done(self.name, self.inspector.finish())


class OvaInspector(base.ContainerInspector):
    """Read an OVA as it passes; inspect its members; pick the boot disk."""

    name = 'ova'

    #: The checks this container can fail, and what each means.
    CHECKS = {
        'tar_header': 'a malformed tar header',
        'unsafe_member':
            'a member that is a link or device, or whose path leaves the '
            'archive',
        'truncated':
            'the archive ends inside a member or without its end marker',
        'trailing_data': 'non-zero bytes after the end of the archive',
        'duplicate_member': 'two members with the same name',
        'ova_members': 'more members than are inspected',
        'ova_descriptor':
            'no, two, or a malformed or oversized OVF descriptor',
        'ova_reference':
            'a file reference that is split, compressed other than by gzip, '
            'or missing',
        'ova_disk':
            'no disk image, or a disk image the descriptor does not name',
        'stream_order':
            'the descriptor comes after a member it says is compressed',
        'compression': 'corrupt gzip data in a compressed member',
        'expanded_size':
            'a compressed member expands to more than max_expanded_size',
        'compression_ratio':
            'a compressed member expands by more than max_compression_ratio',
    }

    def __init__(self, disk_format: str | None = None,
                 policy: inspection.Policy | None = None) -> None:
        super().__init__(disk_format, policy)
        self.tar = tar.TarParser(self._on_member)
        #: Every member, files and directories.
        self.names: set[str] = set()
        #: The inspected file members, in order.
        self.inspected: list[str] = []
        #: Inspected member -> its Inspection.
        self.results: dict[str, inspection.Inspection] = {}
        self.descriptor: ovf.Descriptor | None = None
        self.descriptor_name: str | None = None

    def _feed(self, chunk: push.Chunk) -> None:
        self.tar.feed(chunk)

    def _finish(self) -> None:
        if not self._stopped:
            self.tar.finish()

    # Members -------------------------------------------------------------

    def _on_member(self, member: tar.Member) -> tar.Sink | None:
        name = member.name
        if len(self.names) >= MAX_MEMBERS:
            raise base.ContainerError(
                'ova_members', 'the archive has more than %d members'
                % MAX_MEMBERS)
        if name in self.names:
            self.fail('duplicate_member', 'the archive holds %r twice (again '
                      'at offset %d): extractors keep the last one'
                      % (name, member.offset - tar.BLOCK))
            return None
        self.names.add(name)
        lower = name.lower()
        if member.type != 'file' or lower.endswith(SKIPPED_EXTENSIONS):
            return None
        if lower.endswith(DESCRIPTOR_EXTENSION):
            if self.descriptor_name is not None:
                self.fail('ova_descriptor', 'the archive holds two OVF '
                          'descriptors, %r and %r'
                          % (self.descriptor_name, name))
                return None
            self.descriptor_name = name
            return _DescriptorSink(self)
        ref = self._reference(name)
        if ref is not None and ref.chunked:
            self.fail('ova_reference', 'file %r is split in chunks '
                      '(ovf:chunkSize), which is not supported' % ref.id)
            return None
        if ref is not None and ref.compression not in (None, 'identity'):
            if ref.compression != 'gzip':
                self.fail('ova_reference', 'file %r has ovf:compression %r; '
                          'DSP0243 defines only gzip' % (ref.id,
                                                         ref.compression))
                return None
            inspector: push.PushInspector = compressed.CompressedInspector(
                None, self.policy, only=('gzip',))
        else:
            inspector = push.StreamInspector(None, self.policy)
        self.inspected.append(name)
        return _MemberSink(self, name, inspector)

    def _reference(self, name: str) -> ovf.File | None:
        if self.descriptor is None:
            return None
        return next((f for f in self.descriptor.files.values()
                     if f.member == name), None)

    def member_done(self, name: str,
                    result: inspection.Inspection) -> None:
        self.results[name] = result
        if result.failures:
            self.stop()

    def descriptor_read(self, data: bytes) -> None:
        try:
            self.descriptor = ovf.parse(data)
        except base.ContainerError as exc:
            self.fail(exc.check, exc.reason)
            return
        for check, reason in self.descriptor.problems:
            self.fail(check, reason)
        for ref in self.descriptor.files.values():
            if ref.member in self.names and (
                    ref.chunked or ref.compression not in (None, 'identity')):
                self.fail('stream_order', 'the OVF descriptor, which comes '
                          'after member %r, says it is compressed or '
                          'chunked: DSP0243 puts the descriptor first'
                          % ref.member)

    # Verdict -------------------------------------------------------------

    def _choose(self, final: bool) -> tuple[
            str | None, ovf.Disk | None, list[str], dict[str, str]]:
        """``(boot disk member, Disk or None, other disks, failures)``."""
        failures: dict[str, str] = {}
        boot: str | None = None
        disk: ovf.Disk | None = None
        others: list[str] = []
        desc = self.descriptor
        if desc is not None:
            pairs = [(d, desc.files[d.file_ref]) for d in desc.disks
                     if d.file_ref is not None and d.file_ref in desc.files]
            disks = [d for d, _ref in pairs]
            names = [ref.member or ref.href for _disk, ref in pairs]
            if disks:
                disk, boot, others = disks[0], names[0], names[1:]
            if final:
                for ref in desc.files.values():
                    if ref.member is not None and ref.member not in \
                            self.names:
                        failures.setdefault('ova_reference', (
                            'file %r (ovf:href %r) is not in the archive'
                            % (ref.id, ref.href)))
        if boot is None:
            found = [n for n in self.inspected
                     if n.lower().endswith(DISK_EXTENSIONS)]
            if found:
                boot, others = found[0], found[1:]
        if final and boot is None:
            failures['ova_disk'] = (
                'the archive holds no disk image: no DiskSection/Disk with a '
                'file in the OVF descriptor, no member named *%s'
                % ', *'.join(DISK_EXTENSIONS))
        return boot, disk, others, failures

    def _verdict(self, final: bool) -> inspection.Inspection:
        boot, disk, others, failures = self._choose(final)
        inner = self.results.get(boot) if boot is not None else None
        where = 'member %r' % boot
        result = self.build(inner, where, final, failures)
        for name in self.inspected:
            if name != boot and name in self.results:
                base.merge(result, self.results[name], 'member %r' % name)
        if boot is not None:
            result.details['disk'] = boot
            result.details['other_disks'] = others
            if disk is not None and disk.capacity is not None:
                result.details['ovf_capacity'] = disk.capacity
        if inner is not None and self.disk_format:
            self.check_format(result, where)
        if final and inner is not None and disk is not None and \
                disk.capacity not in (None, result.virtual_size):
            LOG.warning('OVA disk %r: the OVF descriptor says capacity %d, '
                        'the image is %s bytes', boot, disk.capacity,
                        result.virtual_size)
        return result
