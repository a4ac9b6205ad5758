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

"""Incremental zstd decompression with bounded output (RFC 8878).

The ``zstandard`` package (python-zstandard, optional: without it zstd
data is refused as ``compression``) has no ``max_length``: one call to
``ZstdDecompressionObj.decompress`` returns everything its input holds,
and 4 bytes of input (an RLE block) hold 128 KiB.  So this module walks
the frame structure itself and hands the decompressor the input in
segments that end on block boundaries and hold at most :data:`PIECE`
bytes of output, as the stdlib decoders' ``max_length`` would:

* RFC 8878 3.1.1, Zstandard frames: ``Magic_Number`` ``28 b5 2f fd``,
  ``Frame_Header`` (``Frame_Header_Descriptor``, optional
  ``Window_Descriptor``, ``Dictionary_ID`` and ``Frame_Content_Size``),
  data blocks, optional 4-byte ``Content_Checksum``.
* RFC 8878 3.1.1.2, blocks: a 3-byte little-endian ``Block_Header``
  (``Last_Block``, ``Block_Type``, ``Block_Size``); a Raw block carries
  ``Block_Size`` bytes, an RLE block 1 byte regenerated ``Block_Size``
  times, a Compressed block ``Block_Size`` bytes regenerating at most
  ``Block_Maximum_Size`` (128 KiB) bytes; type 3 is reserved (corrupt).
* RFC 8878 3.1.2, skippable frames: magic ``0x184D2A5?``, a 4-byte
  ``Frame_Size``, user data (skipped).

Frames follow each other as ``zstd -d`` decodes them.  Nothing else may
follow a frame (RFC 8878 3.1, "one or more frames"): ``zstd -t`` refuses
zero bytes after a frame as it refuses any bytes that start no frame, so
both are refused as ``trailing_data``.  Skippable frames between and after
frames are skipped, as ``zstd`` does.  A frame of another format after a
zstd frame, which ``zstd -d`` may read too (gzip, xz, lz4), is refused as
``trailing_data``; data that starts with a skippable frame is not
recognised as zstd (``compression``).  The decoder's
window is limited to :data:`MAX_WINDOW` (libzstd's own default limit,
which ``zstd -d`` applies too): a frame that needs more is refused.
"""

from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

from glance_vsize.containers import base
from glance_vsize.containers import decoders
from glance_vsize import push

try:
    import zstandard
except ImportError:  # pragma: no cover - exercised where it is missing
    zstandard = None  # type: ignore[assignment]

MAGIC = b'\x28\xb5\x2f\xfd'
SKIPPABLE_MASK = 0xFFFFFFF0
SKIPPABLE_MAGIC = 0x184D2A50
_SKIPPABLE = SKIPPABLE_MAGIC.to_bytes(4, 'little')[1:]   # after 0x5?
BLOCK_MAX = 128 << 10

#: The largest window a frame may need: 128 MiB (libzstd's default).
MAX_WINDOW = 128 << 20

PIECE = decoders.PIECE

# Parser states: what the next bytes are.
_MAGIC, _HEADER, _BLOCK_HEADER, _BLOCK, _CHECKSUM, _SKIP_SIZE, _SKIP = \
    range(7)
#: States whose bytes belong to a zstd frame (and go to the decompressor).
_FRAME = (_HEADER, _BLOCK_HEADER, _BLOCK, _CHECKSUM)


def _magic_prefix(field: bytes) -> bool:
    """Whether ``field`` (1-3 bytes) may start a frame or skippable frame:
    if so, data ending there is cut short, else it is trailing data.
    """
    return MAGIC.startswith(field) or (
        field[0] & 0xF0 == 0x50 and _SKIPPABLE.startswith(field[1:]))


class ZstdDecoder(decoders.Decoder):
    name = 'zstd'
    magic = MAGIC

    def __init__(self) -> None:
        super().__init__()
        if zstandard is None:
            raise base.ContainerError(
                'compression', 'zstd data needs the zstandard Python '
                'package, which is not installed')
        self._state, self._need = _MAGIC, 4
        self._acc = bytearray()  # a header field being gathered
        self._field_offset = 0
        self._header = b''
        #: Frame bytes not yet decompressed.
        self._segment: list[bytes | memoryview] = []
        self._budget = 0        # the most output they can produce
        #: The frame's ZstdDecompressionObj.
        self._frame: Any = None
        #: The Last_Block bit of the current block.
        self._last: int = False
        self._checksum = False
        self._fcs = 0
        self.frame_content_size: int | None = None
        self._on: dict[int, Callable[[bytes], None]] = {
            _MAGIC: self._on_magic, _HEADER: self._on_header,
            _BLOCK_HEADER: self._on_block_header,
            _CHECKSUM: self._to_magic, _SKIP_SIZE: self._on_skip}

    def decode(self, chunk: push.Chunk) -> Iterator[bytes]:
        view = memoryview(bytes(chunk))
        pos, end = 0, len(view)
        while pos < end and self.trailing is None:
            state = self._state
            take = self._walk(view, pos, end)
            if state in _FRAME:
                self._segment.append(view[pos:pos + take])
            pos += take
            self.offset += take
            if self._budget >= PIECE or (self._frame is not None and
                                         self._state == _MAGIC):
                yield from self._flush()
        if self._segment:
            yield from self._flush()

    def _flush(self) -> Iterator[bytes]:
        data = b''.join(self._segment)
        self._segment, self._budget = [], 0
        frame = self._frame
        try:
            out = frame.decompress(data)
        except zstandard.ZstdError as exc:
            raise base.ContainerError(
                'compression', 'the zstd data is corrupt (frame at offset '
                '%d): %s' % (self._member_offset, exc)) from None
        if self._state == _MAGIC:           # the frame has ended
            if not frame.eof:
                raise base.ContainerError(
                    'compression', 'the zstd frame at offset %d did not end '
                    'where its last block does' % self._member_offset)
            self._frame = None
            self.members += 1
        if out:
            yield out

    def _walk(self, view: memoryview, pos: int, end: int) -> int:
        """Consume bytes of the current structure; return how many."""
        state = self._state
        if state in (_BLOCK, _SKIP):
            take = min(self._need, end - pos)
            self._need -= take
            if not self._need:
                if state == _BLOCK:
                    self._next_block()
                else:
                    self._to_magic()
            return take
        if not self._acc:
            self._field_offset = self.offset
        take = min(self._need - len(self._acc), end - pos)
        self._acc += view[pos:pos + take]
        if len(self._acc) == self._need:
            field, self._acc = bytes(self._acc), bytearray()
            self._on[state](field)
        return take

    def _to_magic(self, _field: bytes | None = None) -> None:
        self._state, self._need = _MAGIC, 4

    def _on_magic(self, field: bytes) -> None:
        self._member_offset = self._field_offset
        if field == MAGIC:
            self._frame = zstandard.ZstdDecompressor(
                max_window_size=MAX_WINDOW).decompressobj()
            self._segment.append(field)
            self._state, self._need = _HEADER, 1
            self._header = b''
            return
        value = int.from_bytes(field, 'little')
        if value & SKIPPABLE_MASK == SKIPPABLE_MAGIC:
            self._state, self._need = _SKIP_SIZE, 4
            return
        if not self.members:
            raise base.ContainerError(
                'compression', 'bytes that are not a zstd frame at offset '
                '%d' % self._member_offset)
        self._trail_at(self._member_offset, field)

    def _on_skip(self, field: bytes) -> None:
        self._state, self._need = _SKIP, int.from_bytes(field, 'little')
        if not self._need:
            self._to_magic()

    def _on_header(self, field: bytes) -> None:
        """Frame_Header_Descriptor first, then the fields it announces."""
        self._header += field
        if len(self._header) == 1:
            fhd = field[0]
            if fhd & 0x08:
                raise base.ContainerError(
                    'compression', 'the zstd frame at offset %d sets the '
                    'reserved bit of its header' % self._member_offset)
            single = fhd & 0x20
            self._fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
            self._checksum = bool(fhd & 0x04)
            rest = (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + self._fcs
            if rest:
                self._need = rest
                return
        elif self._fcs:
            size = int.from_bytes(self._header[-self._fcs:], 'little')
            self.frame_content_size = size + (256 if self._fcs == 2 else 0)
        self._state, self._need = _BLOCK_HEADER, 3

    def _on_block_header(self, field: bytes) -> None:
        header = int.from_bytes(field, 'little')
        self._last = header & 1
        kind, size = (header >> 1) & 3, header >> 3
        if kind == 3 or size > BLOCK_MAX:
            raise base.ContainerError(
                'compression', 'corrupt zstd block header at offset %d'
                % self._field_offset)
        self._budget += BLOCK_MAX if kind == 2 else size
        self._state, self._need = _BLOCK, (1 if kind == 1 else size)
        if not self._need:
            self._next_block()

    def _next_block(self) -> None:
        if not self._last:
            self._state, self._need = _BLOCK_HEADER, 3
        elif self._checksum:
            self._state, self._need = _CHECKSUM, 4
        else:
            self._to_magic()

    def _trail_at(self, offset: int, field: bytes) -> None:
        """``field``, at ``offset`` after a frame, starts no frame."""
        if field.strip(b'\0'):
            self._trail(offset)
        else:
            self._trail(offset, 'zero bytes at offset %d, after the end of '
                        'a frame: zstd has no padding, only skippable frames '
                        '(RFC 8878 3.1.2)' % offset)

    def finish(self) -> None:
        if self.trailing is not None:
            return
        acc = bytes(self._acc)
        if self._state == _MAGIC and acc and self.members and \
                not _magic_prefix(acc):
            self._trail_at(self._field_offset, acc)
            return
        if self._state != _MAGIC or acc:
            raise base.ContainerError(
                'truncated', 'the zstd data ends at offset %d inside the '
                'frame that starts at offset %d'
                % (self.offset, self._member_offset))
        if not self.members:
            raise base.ContainerError(
                'truncated', 'the zstd data ends at offset %d before its '
                'first frame' % self.offset)
