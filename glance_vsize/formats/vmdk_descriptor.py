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

"""The text side of VMDK: the descriptor, as qemu and VMware read it.

VMware "Virtual Disk Format 5.0", "The Descriptor File": a text of
``key=value`` header lines (``CID``, ``parentCID``, ``createType``,
``parentFileNameHint``), extent lines (``RW 2048 SPARSE "disk.vmdk"``) and
the disk database (``ddb.*``).  A descriptor is either embedded in a
sparse extent (``descriptorOffset``) or a file of its own, whose extents
are other files.

qemu (block/vmdk.c) reads it with C string functions, so its text ends at
the first NUL byte, and finds keys with ``strstr`` anywhere in the text,
comments included (``vmdk_parse_description``, ``vmdk_read_cid``,
``vmdk_parent_open``); extent lines are parsed by ``vmdk_parse_extents``.
VMware reads line by line.  Checks here look at every occurrence, so that
both readers are covered.  Texts are ``str`` decoded as latin-1, so that
an index in the text is an offset in the bytes.
"""

from collections.abc import Iterator
from collections.abc import Sequence
import re
from typing import cast

from glance_vsize.formats import base
from glance_vsize import inspection

#: block/vmdk.c vmdk_read_desc: a descriptor file is read up to this size.
MAX_TEXT = (1 << 20) - 1

#: block/vmdk.c vmdk_open_desc_file: the create types qemu opens from a
#: descriptor file, all of which keep the guest data in other files.
QEMU_DESCRIPTOR_TYPES = frozenset({
    'monolithicFlat', 'vmfs', 'vmfsSparse', 'seSparse',
    'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat'})

#: block/vmdk.c vmdk_parse_extents: extent types qemu opens.
QEMU_EXTENT_TYPES = frozenset({'FLAT', 'SPARSE', 'VMFS', 'VMFSSPARSE',
                               'SESPARSE'})

#: Virtual Disk Format 5.0, "Extent Descriptions": access, size in
#: sectors, type, "file name", and (flat extents) an offset.
EXTENT_ACCESS = ('RW', 'RDONLY', 'NOACCESS')
_EXTENT_START = re.compile(r'[ \t]*(?:RW|RDONLY|NOACCESS)(?=\s)')
_EXTENT = re.compile(
    r'[ \t]*(?P<access>RW|RDONLY|NOACCESS)[ \t]+(?P<sectors>[+-]?\d+)'
    r'[ \t]+(?P<type>[^\s"]+)[ \t]+"(?P<file>[^"\r\n]*)"'
    r'(?:[ \t]+(?P<offset>[+-]?\d+))?[ \t]*\r?$')
_HEX = re.compile(r'\s*([+-]?)(?:0[xX])?([0-9a-fA-F]+)')

NO_PARENT_CID = 0xffffffff


class Extent:
    """One extent line: where it is and what it names."""

    def __init__(self, offset: int, line: str,
                 match: re.Match[str] | None) -> None:
        self.offset = offset
        self.line = line
        self.valid = match is not None
        self.access: str | None
        self.type: str | None
        self.file: str | None
        self.sectors: int | None
        self.flat_offset: int | None
        if match is None:
            self.access = self.type = self.file = None
            self.sectors = self.flat_offset = None
            return
        self.access = match.group('access')
        self.sectors = int(match.group('sectors'))
        self.type = match.group('type')
        self.file = match.group('file')
        flat = match.group('offset')
        self.flat_offset = None if flat is None else int(flat)

    @property
    def opened_by_qemu(self) -> bool:
        """Whether vmdk_parse_extents would open this extent's file."""
        if not self.valid or self.access != 'RW' or \
                cast(int, self.sectors) <= 0:
            return False
        return self.type in QEMU_EXTENT_TYPES

    def describe(self, base: int = 0) -> str:
        """For messages; ``base`` is the offset of the text's start."""
        if self.valid:
            return '%s extent %r at offset %d' % (self.type, self.file,
                                                  base + self.offset)
        return 'extent line %r at offset %d' % (self.line[:80],
                                                base + self.offset)


def text_of(raw: bytes) -> str:
    """The descriptor text of ``raw`` bytes, as qemu's C strings see it."""
    return raw.split(b'\0', 1)[0].decode('latin-1')


def qemu_probes(head: bytes) -> bool:
    """block/vmdk.c vmdk_probe, text branch, on the first probe buffer.

    Comment lines and lines of blanks may come before a ``version=N``
    line; anything else first means "not a descriptor".
    """
    end = len(head)
    pos = 0
    while pos < end:
        char = head[pos:pos + 1]
        if char == b'#':
            newline = head.find(b'\n', pos)
            pos = end if newline < 0 else newline + 1
            continue
        if char == b' ':
            while pos < end and head[pos:pos + 1] == b' ':
                pos += 1
            if head[pos:pos + 1] == b'\r':
                pos += 1
            if head[pos:pos + 1] != b'\n':
                return False
            pos += 1
            continue
        return any(head.startswith(b'version=%d%s' % (v, nl), pos)
                   for v in (1, 2, 3) for nl in (b'\n', b'\r\n'))
    return False


def values(text: str, key: str) -> Iterator[tuple[str | None, int]]:
    """Every ``key="value"`` as qemu's vmdk_parse_description reads one.

    qemu finds ``key`` anywhere (``strstr``), skips two characters (``="``)
    and takes the text up to the next ``"``; the search here is
    case-insensitive, as VMware's is, so that it finds what either reads.
    Yields ``(value or None when unterminated, offset)``.
    """
    lowered = text.lower()
    needle = key.lower()
    pos = lowered.find(needle)
    while pos >= 0:
        start = pos + len(key) + 2
        end = text.find('"', start)
        yield (None if end < 0 or start >= len(text)
               else text[start:end]), pos
        pos = lowered.find(needle, pos + 1)


def qemu_cid(text: str, key: str) -> tuple[int, int] | None:
    """block/vmdk.c vmdk_read_cid: the first ``key`` (``CID`` or
    ``parentCID``), one character skipped, then ``sscanf("%x")``.

    Returns ``(value, offset)``, or ``None`` when qemu fails to open.
    """
    pos = text.find(key)
    if pos < 0:
        return None
    match = _HEX.match(text, pos + len(key) + 1)
    if match is None:
        return None
    value = min(int(match.group(2), 16), (1 << 64) - 1)
    if match.group(1) == '-':
        value = -value % (1 << 64)
    return value & 0xffffffff, pos


def extents(text: str) -> list[Extent]:
    """Every extent line of ``text``: lines starting with an access mode.

    A line that starts like an extent but does not parse is returned too
    (``valid`` False): some reader may still make sense of it.
    """
    found = []
    pos = 0
    for line in text.split('\n'):
        if _EXTENT_START.match(line):
            found.append(Extent(pos, line, _EXTENT.match(line)))
        pos += len(line) + 1
    return found


def is_plain_name(name: str | None) -> bool:
    """A file name without any directory part: the image's own file."""
    if not name:
        return False
    return name not in ('.', '..') and not any(
        sep in name for sep in ('/', '\\', ':'))


def qemu_create_type(text: str) -> str | None:
    """block/vmdk.c vmdk_open_desc_file: the createType qemu uses (the
    first, case-sensitive occurrence, at most 127 characters), or None
    when qemu finds none ("invalid VMDK image descriptor").
    """
    pos = text.find('createType')
    if pos < 0:
        return None
    start = pos + len('createType') + 2
    end = text.find('"', start)
    if start >= len(text) or end < 0 or end - start >= 128:
        return None
    return text[start:end]


def cid_values(text: str, key: str) -> Iterator[tuple[int | None, int]]:
    """Every ``key=<hex>`` value, found case-insensitively, as
    ``(value or None, offset)``: the VMware reader's view of a CID.
    """
    lowered = text.lower()
    pos = lowered.find(key.lower())
    while pos >= 0:
        match = _HEX.match(text, pos + len(key) + 1)
        yield (int(match.group(2), 16) if match else None), pos
        pos = lowered.find(key.lower(), pos + 1)


def _listing(items: Sequence[str], limit: int = 3) -> str:
    text = ', '.join(items[:limit])
    if len(items) > limit:
        text += ' and %d more' % (len(items) - limit)
    return text


def check_create_types(probe: base.Probe, policy: inspection.Policy,
                       types: Sequence[tuple[str | None, int]],
                       offset: int) -> None:
    """Every createType must be one the policy accepts."""
    allowed = {t.lower() for t in policy.vmdk_create_types}
    for value, where in types:
        if value is None or value.lower() not in allowed:
            probe.fail('create_type', 'createType %r at offset %d is not one '
                       'of %s' % (value, offset + where,
                                  ', '.join(sorted(policy.vmdk_create_types))))


def check_parent(probe: base.Probe, text: str, offset: int) -> None:
    """A parent file name, or a parent content ID: a delta image."""
    for value, where in values(text, 'parentFileNameHint'):
        probe.fail('parent', 'parent file %r named at offset %d'
                   % (value, offset + where))
    for cid, where in cid_values(text, 'parentCID'):
        if cid != NO_PARENT_CID:
            probe.fail('parent', 'parentCID at offset %d is not ffffffff: '
                       'the image is a delta of a parent' % (offset + where))


def check_own_extent(probe: base.Probe, text: str, offset: int,
                     capacity: int) -> None:
    """The extent lines of a descriptor embedded in a sparse extent.

    qemu ignores them, VMware does not: there must be at most one, a
    SPARSE extent naming a file without a directory (the image itself),
    of the header's capacity.
    """
    found = extents(text)
    foreign = [e for e in found
               if not (e.valid and e.type == 'SPARSE' and
                       e.access in ('RW', 'RDONLY') and
                       e.flat_offset is None and is_plain_name(e.file))]
    if len(found) > 1 or foreign:
        probe.fail('extent_file', 'the descriptor names %s; a '
                   'self-contained image has one SPARSE extent, its own '
                   'file' % _listing([e.describe(offset) for e in found]))
    elif found and found[0].sectors != capacity:
        probe.fail('extent_size', '%s has %d sectors but the header says %d'
                   % (found[0].describe(offset), cast(int, found[0].sectors),
                      capacity))


def check_descriptor_file(probe: base.Probe, policy: inspection.Policy,
                          text: str, offset: int) -> None:
    """A descriptor qemu opens as a descriptor file (vmdk_open_desc_file):
    its extents are host files, so it is always refused.
    """
    create_type = qemu_create_type(text)
    probe.variant = create_type
    if create_type is None:
        probe.fail('descriptor', 'no createType qemu can read in the '
                   'descriptor at offset %d' % offset)
    check_create_types(probe, policy, list(values(text, 'createType')),
                       offset)
    check_parent(probe, text, offset)
    found = extents(text)
    probe.virtual_size = base.SECTOR * sum(
        cast(int, e.sectors) for e in found if e.opened_by_qemu)
    if found:
        reason = 'the descriptor at offset %d names %s' % (
            offset, _listing([e.describe(offset) for e in found]))
    else:
        reason = ('the descriptor at offset %d names no extent in this file'
                  % offset)
    probe.fail('extent_file', reason + ': a descriptor-only VMDK has qemu '
               'read its data from other files')
