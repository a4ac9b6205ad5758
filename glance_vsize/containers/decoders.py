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

"""Incremental decompressors with bounded output: gzip, bzip2 and xz.

Each decoder is fed compressed bytes in order, and its :meth:`decode`
generator yields the decompressed bytes in pieces of at most
:data:`PIECE` bytes, decompressing the next piece only when the consumer
asks for it.  So the consumer can count what was expanded and stop before
expanding more than it allows, and memory holds one piece, whatever the
ratio (``max_length`` of :meth:`zlib.Decompress.decompress`,
:meth:`bz2.BZ2Decompressor.decompress` and
:meth:`lzma.LZMADecompressor.decompress`).

Formats, recognised by their magic bytes:

* gzip (RFC 1952): a series of members, each ``1f 8b 08`` (ID1, ID2,
  CM=deflate) + header + deflate data (RFC 1951) + CRC32 + ISIZE.
* bzip2 (the bzip2 file format of bzip2 1.0, "BZh" + block size digit
  ``1``-``9``); streams may be concatenated, as ``bzip2`` writes them.
* xz (The .xz File Format 1.2.1, ``fd 37 7a 58 5a 00``); streams may be
  concatenated and followed by stream padding.

As ``gzip -d``, ``bzip2 -d`` and ``xz -d`` do, every member or stream in
the data is decompressed, one after the other.  What may follow a member
is what ``gzip -t``, ``bzip2 -t`` and ``xz -t`` accept without a word:

* gzip: another member, or zero bytes up to the end of the data (block
  device padding).  ``gzip`` stops at zero bytes: anything after them,
  even a member, is "trailing garbage ignored" (exit status 2).
* bzip2: another stream only.  ``bzip2`` reports any other byte, zero or
  not, as "trailing garbage after EOF ignored" and reads no further.
* xz: another stream, or Stream Padding: zero bytes, a multiple of four
  of them (The .xz File Format 1.2.1, section 2.2 "Stream Padding"; any
  other count is an error).

Anything else sets :attr:`Decoder.trailing` (refused as
``trailing_data``) and ends the decoding: what follows is not read.  A
stream cut short is ``truncated``; corrupt data is refused as
``compression``.

zstd (RFC 8878) is in :mod:`glance_vsize.containers.zstd`.
"""

import bz2
from collections.abc import Iterator
import lzma
from typing import Any
from typing import ClassVar
import zlib

from glance_vsize.containers import base
from glance_vsize import push

#: The most bytes one decompression step produces.
PIECE = 256 << 10

#: The most memory an xz stream may need to be decompressed (its
#: dictionary): 128 MiB, above what ``xz -9`` (64 MiB) and ``xz -9e``
#: need.  A stream that needs more is refused (``compression``).
XZ_MEMLIMIT = 128 << 20


class Decoder:
    """Base class: one compression format, possibly several members."""

    #: Name, for messages and ``Inspection.details``.
    name: ClassVar[str] = ''
    #: Magic bytes that start every member.
    magic: ClassVar[bytes] = b''
    #: Whether zero bytes may follow a member (see :meth:`_padding`).
    zero_padding = True

    def __init__(self) -> None:
        #: The current member's decompressor (zlib, bz2, lzma, zstandard).
        self._obj: Any = None
        self._more = False      # it may hold output without new input
        self._gap = b''         # bytes between members, up to len(magic)
        self.offset = 0         # compressed bytes consumed
        self.members = 0        # members completed
        #: The offset of bytes after the last member.
        self.trailing: int | None = None
        self.trailing_reason: str | None = None
        self._zeros = 0         # zero bytes since the last member ended
        self._pad_offset = 0    # where they start
        self._member_offset = 0

    def _new(self) -> Any:
        raise NotImplementedError()

    def _step(self, data: bytes) -> tuple[bytes, bytes, bool]:
        """Decompress up to PIECE bytes from ``data``; returns
        ``(output, unconsumed input, may hold more output)``.
        """
        raise NotImplementedError()

    def decode(self, chunk: push.Chunk) -> Iterator[bytes]:
        """Generator: feed ``chunk``; yield decompressed pieces."""
        data = bytes(chunk)
        while (data or self._more) and self.trailing is None:
            if self._obj is None:
                data = self._between(data)
                if not data:
                    return
                self._obj = self._new()
                self._member_offset = self.offset
            before = len(data)
            try:
                out, data, self._more = self._step(data)
            except (OSError, EOFError, ValueError, zlib.error,
                    lzma.LZMAError) as exc:
                raise base.ContainerError(
                    'compression', 'the %s data is corrupt (member at '
                    'offset %d): %s' % (self.name, self._member_offset,
                                        exc)) from None
            self.offset += before - len(data)
            if self._obj.eof:
                # What follows the member, from this call's input and
                # (bz2, lzma) input buffered by earlier calls.
                self.members += 1
                data = self._obj.unused_data
                self.offset -= len(data)
                self._obj, self._more = None, False
            if out:
                yield out

    def _between(self, data: bytes) -> bytes:
        """Count zero bytes after a member; return the data from the next
        member's magic on.  Padding the tool refuses (:meth:`_padding`),
        or anything else, sets :attr:`trailing` and ends the decoding:
        what follows is not read.
        """
        data = self._gap + data
        self._gap = b''
        stripped = data.lstrip(b'\0')
        if len(stripped) < len(data):
            if not self._zeros:
                self._pad_offset = self.offset
            self._zeros += len(data) - len(stripped)
            self.offset += len(data) - len(stripped)
            if not self.zero_padding:
                self._trail(self._pad_offset, self._padding(end=False))
                return b''
        if not stripped:
            return b''
        if self._zeros:
            reason = self._padding(end=False)
            if reason is not None:
                self._trail(self._pad_offset, reason)
                return b''
            self._zeros = 0
        size = len(self.magic)
        if len(stripped) < size and self.magic.startswith(stripped):
            self._gap = stripped
            return b''
        if not stripped.startswith(self.magic):
            self._trail(self.offset)
            return b''
        return stripped

    def _padding(self, end: bool) -> str | None:
        """``None`` if the tool accepts :attr:`_zeros` zero bytes after a
        member, followed by the end of the data (``end``) or by more;
        else why not.
        """
        raise NotImplementedError()

    def _trail(self, offset: int, reason: str | None = None) -> None:
        """Refuse what follows the last member, from ``offset`` on."""
        self.trailing = offset
        self.trailing_reason = reason or (
            'bytes that are not %s data at offset %d, after the end of the '
            '%s stream' % (self.name, offset, self.name))

    def finish(self) -> None:
        """The data has ended: raise ``truncated`` if a member was cut;
        set :attr:`trailing` if the padding at the end is refused.
        """
        if self.trailing is not None:
            return
        if self._obj is not None or self._gap:
            raise base.ContainerError(
                'truncated', 'the %s data ends at offset %d inside the '
                'member that starts at offset %d'
                % (self.name, self.offset, self._member_offset))
        if not self.members:
            raise base.ContainerError(
                'truncated', 'the %s data ends at offset %d before its '
                'first member' % (self.name, self.offset))
        if self._zeros:
            reason = self._padding(end=True)
            if reason is not None:
                self._trail(self._pad_offset, reason)


class GzipDecoder(Decoder):
    name = 'gzip'
    magic = b'\x1f\x8b\x08'

    def _padding(self, end: bool) -> str | None:
        if end:
            return None
        return ('%d zero bytes at offset %d, after the end of a gzip member, '
                'are followed by more data at offset %d, which gzip ignores'
                % (self._zeros, self._pad_offset, self.offset))

    def _new(self) -> Any:
        return zlib.decompressobj(16 + zlib.MAX_WBITS)   # gzip wrapper

    def _step(self, data: bytes) -> tuple[bytes, bytes, bool]:
        out: bytes = self._obj.decompress(data, PIECE)
        if self._obj.eof:       # the rest is in unused_data
            return out, b'', False
        return out, self._obj.unconsumed_tail, len(out) == PIECE


class _BufferingDecoder(Decoder):
    """bz2 and lzma keep unconsumed input inside the decompressor."""

    def _step(self, data: bytes) -> tuple[bytes, bytes, bool]:
        out: bytes = self._obj.decompress(data, PIECE)
        return out, b'', not self._obj.eof and not self._obj.needs_input


class Bzip2Decoder(_BufferingDecoder):
    name = 'bzip2'
    magic = b'BZh'

    zero_padding = False

    def _new(self) -> Any:
        return bz2.BZ2Decompressor()

    def _padding(self, end: bool) -> str | None:
        return ('zero bytes at offset %d, after the end of the bzip2 '
                'stream: bzip2 has no padding and ignores them (and what '
                'follows) as trailing garbage' % self._pad_offset)


class XzDecoder(_BufferingDecoder):
    name = 'xz'
    magic = b'\xfd7zXZ\x00'

    def _new(self) -> Any:
        return lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT)

    def _padding(self, end: bool) -> str | None:
        """The .xz File Format 1.2.1, 2.2: "the size of Stream Padding
        MUST be a multiple of four bytes".
        """
        if self._zeros % 4 == 0:
            return None
        return ('%d zero bytes of xz Stream Padding at offset %d: not a '
                'multiple of four (The .xz File Format 1.2.1, section 2.2)'
                % (self._zeros, self._pad_offset))
