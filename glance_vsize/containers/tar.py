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

"""A streaming tar reader: member headers and data as the bytes pass.

Formats read (what ``tar``, Python's tarfile, VirtualBox and VMware write):

* POSIX ustar (IEEE Std 1003.1, "pax" utility, ustar Interchange Format):
  512-byte headers, octal numeric fields, ``prefix`` + ``name``; magic
  ``"ustar\\0"`` version ``"00"``.
* POSIX pax extended headers (same standard, pax Interchange Format):
  typeflag ``x`` (for the next member) and ``g`` (global) hold
  ``"LEN KEY=VALUE\\n"`` records; ``path`` and ``size`` override the
  ustar fields (a member of 8 GiB or more needs ``size``).
* GNU tar (GNU tar manual, "Basic Tar Format"): magic ``"ustar "``
  version ``" \\0"``, typeflag ``L``/``K`` members holding the next
  member's long name/link name, and base-256 numeric fields (first byte
  0x80) for sizes of 8 GiB or more.

The archive ends with a zero block (POSIX writes two; Python's tarfile
stops at the first); anything but zeros after it is refused, as is an
archive that ends without one (it was cut).  Only regular files and
directories are accepted: links, devices, FIFOs and sparse members
(GNU ``S``, pax ``GNU.sparse.*``, whose stored bytes are not the file's
bytes) are refused with ``unsafe_member``, as are names that are absolute
or climb with ``..``.

Memory: one 512-byte header, and the data of pax/long-name members (at
most :data:`MAX_META` bytes).  Member data is handed to the sink that
``on_member`` returns, as slices of the chunks fed, never copied here.
"""

from collections.abc import Callable
import posixpath
from typing import NamedTuple
from typing import Protocol

from glance_vsize.containers import base
from glance_vsize import push

BLOCK = 512

#: The largest pax extended header or GNU long name accepted.
MAX_META = 1 << 20

ZERO_BLOCK = bytes(BLOCK)

REGULAR = (b'0', b'\0', b'7')
DIRECTORY = b'5'
PAX_TYPES = (b'x', b'g')
GNU_LONG_TYPES = (b'L', b'K')
_TYPE_NAMES = {b'1': 'hard link', b'2': 'symbolic link',
               b'3': 'character device', b'4': 'block device',
               b'6': 'FIFO', b'S': 'GNU sparse file',
               b'M': 'GNU multi-volume continuation', b'V': 'volume label',
               b'D': 'GNU dump directory', b'N': 'GNU long-name (old)'}


class Member(NamedTuple):
    name: str
    type: str
    size: int
    offset: int


Member.__doc__ = ('A member: normalised ``name``, ``type`` (``file`` or '
                  '``directory``), data ``size``, and the archive ``offset`` '
                  'of its data.')


def _cstring(raw: bytes | bytearray) -> str:
    return raw.split(b'\0', 1)[0].decode('utf-8', 'surrogateescape')


def number(field: bytes, what: str, offset: int) -> int:
    """A numeric header field: octal digits, or GNU base-256 (first byte
    0x80) for values that do not fit.
    """
    if field[:1] == b'\x80':
        return int.from_bytes(field[1:], 'big')
    if field[:1] == b'\xff':
        raise base.ContainerError(
            'tar_header', 'negative %s in the header at offset %d'
            % (what, offset))
    text = field.split(b'\0', 1)[0].strip(b' ')
    try:
        return int(text or b'0', 8)
    except ValueError:
        raise base.ContainerError(
            'tar_header', 'the %s field %r of the header at offset %d is not '
            'an octal number' % (what, bytes(field), offset)) from None


def checksum_ok(block: bytes) -> bool:
    """POSIX: the unsigned sum of the header bytes with the chksum field
    taken as spaces; historic writers summed signed bytes.
    """
    stored = number(block[148:156], 'chksum', 0)
    rest = block[:148] + b' ' * 8 + block[156:]
    unsigned = sum(rest)
    signed = unsigned - 256 * sum(1 for b in rest if b > 127)
    return stored in (unsigned, signed)


def parse_pax(data: bytes | bytearray, offset: int) -> dict[str, str]:
    """``"LEN KEY=VALUE\\n"`` records -> dict (an empty value unsets)."""
    records: dict[str, str] = {}
    pos = 0
    data = bytes(data)
    while pos < len(data):
        if not data[pos:].strip(b'\0'):
            break
        space = data.find(b' ', pos)
        try:
            length = int(data[pos:space]) if space > pos else 0
        except ValueError:
            length = 0
        record = data[space + 1:pos + length]
        if length <= 0 or pos + length > len(data) or \
                not record.endswith(b'\n') or b'=' not in record:
            raise base.ContainerError(
                'tar_header', 'malformed pax extended header record at '
                'offset %d' % (offset + pos))
        raw_key, _, value = record[:-1].partition(b'=')
        key = raw_key.decode('utf-8', 'replace')
        records[key] = value.decode('utf-8', 'surrogateescape')
        pos += length
    return records


def safe_name(name: str, offset: int) -> str:
    """Normalise a member name; refuse absolute names and ``..``."""
    if not name or '\0' in name:
        raise base.ContainerError(
            'tar_header', 'empty member name in the header at offset %d'
            % offset)
    if name.startswith('/') or '..' in name.split('/'):
        raise base.ContainerError(
            'unsafe_member', 'member %r (header at offset %d) names a path '
            'outside the archive' % (name, offset))
    norm = posixpath.normpath(name)
    while norm.startswith('./'):
        norm = norm[2:]
    if norm in ('.', ''):
        raise base.ContainerError(
            'tar_header', 'member name %r (header at offset %d) names no '
            'file' % (name, offset))
    return norm


class Sink(Protocol):
    """Where a member's data goes, piece by piece."""

    def feed(self, piece: memoryview) -> None:
        """The next piece of the member's data."""

    def end(self) -> None:
        """The member's data has ended."""


class TarParser:
    """Feed an archive's bytes in order; members are announced as they come.

    :param on_member: called with a :class:`Member` for every file and
        directory; returns a sink (``feed(data)``, ``end()``) for the
        member's data, or ``None`` to skip it.
    """

    def __init__(self,
                 on_member: Callable[[Member], Sink | None]) -> None:
        self.on_member = on_member
        self.offset = 0
        self.ended = False
        self._header = bytearray()
        self._left = 0          # data bytes of the current member to come
        self._pad = 0           # padding bytes after them
        self._sink: Sink | None = None
        #: Data of a pax / GNU long-name member.
        self._meta: bytearray | None = None
        self._meta_type: bytes | None = None
        self._meta_offset = 0
        self._member: Member | None = None
        self._pax: dict[str, str] = {}
        self._global: dict[str, str] = {}
        self._long: dict[bytes | None, str] = {}

    def feed(self, data: push.Chunk) -> None:
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast('B')
        pos, end = 0, len(view)
        while pos < end:
            if self.ended:
                self._trailing(view[pos:])
                self.offset += end - pos
                return
            if self._left:
                take = min(self._left, end - pos)
                piece = view[pos:pos + take]
                if self._sink is not None:
                    self._sink.feed(piece)
                elif self._meta is not None:
                    self._meta += piece
                self._left -= take
            elif self._pad:
                take = min(self._pad, end - pos)
                self._pad -= take
            else:
                take = min(BLOCK - len(self._header), end - pos)
                self._header += view[pos:pos + take]
            pos += take
            self.offset += take
            if not self._left and (self._sink is not None or
                                   self._meta is not None or
                                   self._member is not None):
                self._member_end()
            if len(self._header) == BLOCK:
                block = bytes(self._header)
                self._header.clear()
                self._parse(block, self.offset - BLOCK)

    def finish(self) -> None:
        """The archive has ended: raise ``truncated`` if it was cut."""
        if self._left or self._pad or self._header:
            where = ('inside the data of member %r' % self._member.name
                     if self._left and self._member is not None else
                     'inside a header or its padding')
            raise base.ContainerError(
                'truncated', 'the archive ends at offset %d, %s'
                % (self.offset, where))
        if not self.ended:
            raise base.ContainerError(
                'truncated', 'the archive ends at offset %d without its '
                'end-of-archive marker (zero blocks)' % self.offset)

    # Internals -----------------------------------------------------------

    def _trailing(self, view: memoryview) -> None:
        data = bytes(view)
        rest = data.lstrip(b'\0')
        if rest:
            raise base.ContainerError(
                'trailing_data', 'non-zero bytes at offset %d, after the '
                'end-of-archive marker' % (self.offset + len(data) -
                                           len(rest)))

    def _expect(self, size: int) -> None:
        self._left = size
        self._pad = -size % BLOCK

    def _parse(self, block: bytes, offset: int) -> None:
        if block == ZERO_BLOCK:
            if self._pax or self._long:
                raise base.ContainerError(
                    'tar_header', 'the archive ends at offset %d after an '
                    'extended header, before its member' % offset)
            self.ended = True
            return
        if not checksum_ok(block):
            raise base.ContainerError(
                'tar_header', 'bad header checksum at offset %d' % offset)
        magic = block[257:265]
        posix = magic == b'ustar\x0000'
        if not posix and magic != b'ustar  \x00':
            raise base.ContainerError(
                'tar_header', 'the header at offset %d has no ustar magic '
                '(%r)' % (offset, magic))
        typeflag = block[156:157]
        size = number(block[124:136], 'size', offset)
        if typeflag in PAX_TYPES or typeflag in GNU_LONG_TYPES:
            if size > MAX_META:
                raise base.ContainerError(
                    'tar_header', 'the extended header at offset %d is %d '
                    'bytes long, more than %d' % (offset, size, MAX_META))
            self._meta = bytearray()
            self._meta_type = typeflag
            self._meta_offset = offset + BLOCK
            self._expect(size)
            if not size:
                self._member_end()
            return

        pax = dict(self._global, **self._pax)
        name = _cstring(block[0:100])
        if posix and block[345]:
            name = _cstring(block[345:500]) + '/' + name
        name = pax.get('path') or self._long.get(b'L') or name
        if 'size' in pax:
            if not pax['size'].isdigit():
                raise base.ContainerError(
                    'tar_header', 'pax size %r for member %r is not a number'
                    % (pax['size'], name))
            size = int(pax['size'])
        self._pax, self._long = {}, {}
        sparse = [k for k in pax if k.startswith('GNU.sparse.')]
        if typeflag not in REGULAR + (DIRECTORY,) or sparse:
            kind = _TYPE_NAMES.get(typeflag, 'type %r' % typeflag)
            if sparse:
                kind = 'GNU sparse file (pax %s)' % sparse[0]
            raise base.ContainerError(
                'unsafe_member', 'member %r (header at offset %d) is a %s; '
                'only regular files and directories are accepted'
                % (name, offset, kind))
        name = safe_name(name.rstrip('/') if typeflag == DIRECTORY else name,
                         offset)
        member = Member(name, 'directory' if typeflag == DIRECTORY else
                        'file', size, offset + BLOCK)
        self._member = member
        self._sink = self.on_member(member)
        self._expect(size)
        if not size:
            self._member_end()

    def _member_end(self) -> None:
        if self._meta is not None:
            meta, kind = self._meta, self._meta_type
            self._meta = self._meta_type = None
            if kind == b'x':
                self._pax.update(parse_pax(meta, self._meta_offset))
            elif kind == b'g':
                self._global.update(parse_pax(meta, self._meta_offset))
            else:
                self._long[kind] = _cstring(meta)
            # An empty value unsets a global keyword; for the next member
            # it makes the ustar field count again.
            self._global = {k: v for k, v in self._global.items() if v}
            return
        sink, self._sink, self._member = self._sink, None, None
        if sink is not None:
            sink.end()
