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

"""Ranged mode: inspect an image in a store by reading only what probes need.

The third driver beside streaming (:mod:`glance_vsize.stream`) and seekable
(:mod:`glance_vsize.seekable`), for images that are already stored: each
region a probe asks for is answered by a ranged read through a callable
``read_at(offset, length) -> bytes`` (an HTTP Range request, an RBD read,
an object store GET with an offset), given the image's length.

Probes run in rounds: every probe's next request is collected, the
missing byte ranges are widened to :data:`GRANULE` boundaries, ranges
closer than :data:`MERGE_GAP` are merged, and each merged range is read
once.  A sparse image of any virtual size costs a few small reads (a
900 GiB qcow2: one 64 KiB read of its head and one of its tail).  The
only reads that grow with the disk are the block allocation tables that
qemu reads whole when it opens a VHD or a VHDX.

A container (``ova``, ``compressed``) has no offsets to seek to: it is
read from start to end and streamed through
:mod:`glance_vsize.containers`, as is any image when the store cannot
seek (``chunks`` given without ``read_at``).

Pure: no Glance or glance_store import.
"""

import dataclasses
import typing

from glance_vsize import engine
from glance_vsize.formats import base
from glance_vsize import inspection
from glance_vsize import push
from glance_vsize import registry

#: ``read_at(offset, length) -> bytes``: the bytes of the image at
#: ``offset``; fewer than ``length`` only at the end of the image.
ReadAt = typing.Callable[[int, int], bytes]

#: Every read starts and ends on a multiple of this (or at the end of the
#: image): neighbouring small requests then share one read.
GRANULE = 64 << 10
#: Missing ranges closer than this are read as one.
MERGE_GAP = 256 << 10
#: The most bytes one read asks for.
MAX_READ = 4 << 20
#: A read that continues this many reads in a row, each starting where
#: the one before ended (a table scan: a large VHDX BAT), reads ahead.
READ_AHEAD_AFTER = 8
#: Bytes kept from earlier reads for later requests, at most.
CACHE_LIMIT = 8 << 20
#: Read size when an image is streamed through.
STREAM_CHUNK = 1 << 20


class RangedReadError(IOError):
    """The store returned fewer bytes than the image's length promised."""


@dataclasses.dataclass
class RangedInspection:
    """The verdict and what it cost.

    :ivar inspection: the :class:`~glance_vsize.inspection.Inspection`.
    :ivar bytes_read: bytes read from the store.
    :ivar reads: read calls made (ranged reads, or streamed chunks).
    :ivar mode: ``ranged`` or ``streamed`` (a container, or a store that
        cannot seek).
    """

    inspection: inspection.Inspection
    bytes_read: int = 0
    reads: int = 0
    mode: str = 'ranged'


class _Cache:
    """The bytes already read, as disjoint ``(start, data)`` in the order
    they were read (the oldest is dropped first).
    """

    def __init__(self, read_at: ReadAt, length: int) -> None:
        self.read_at = read_at
        self.length = length
        self.chunks: typing.List[typing.Tuple[int, bytes]] = []
        self.held = 0
        self.bytes_read = 0
        self.reads = 0
        self._last = (0, 0)         # (end, size) of the last read
        self._streak = 0            # reads in a row that continued

    def _find(self, offset: int) -> typing.Optional[typing.Tuple[int, bytes]]:
        for start, data in self.chunks:
            if start <= offset < start + len(data):
                return start, data
        return None

    def missing(self, offset: int, length: int
                ) -> typing.List[typing.Tuple[int, int]]:
        """The parts of ``[offset, offset + length)`` (clamped to the
        image) not held, as ``(start, end)``.
        """
        end = min(offset + length, self.length)
        gaps = []
        while offset < end:
            found = self._find(offset)
            if found is not None:
                offset = found[0] + len(found[1])
                continue
            nxt = min((s for s, _ in self.chunks if offset < s < end),
                      default=end)
            gaps.append((offset, nxt))
            offset = nxt
        return gaps

    def get(self, offset: int, length: int) -> bytes:
        """Held bytes of ``[offset, offset + length)``, clamped to the
        image; call after :meth:`fetch` made them present.
        """
        end = min(offset + length, self.length)
        parts = []
        while offset < end:
            found = self._find(offset)
            if found is None:
                # Evicted since it was fetched (a round asked for more
                # than the cache holds): read it again.
                self._read(offset, min(end, base.round_up(offset + 1,
                                                          GRANULE)))
                continue
            start, data = found
            part = data[offset - start:end - start]
            parts.append(part)
            offset += len(part)
        return b''.join(parts)

    def fetch(self, ranges: typing.Iterable[typing.Tuple[int, int]]) -> None:
        """Read the ranges ``(start, end)`` not yet held: widened to
        granules, merged when close, each read at most once.
        """
        wanted = []
        for start, end in ranges:
            for lo, hi in self.missing(start, end - start):
                lo = base.round_down(lo, GRANULE)
                hi = min(base.round_up(hi, GRANULE), self.length)
                wanted.append((lo, hi))
        merged: typing.List[typing.List[int]] = []
        for lo, hi in sorted(wanted):
            if merged and lo <= merged[-1][1] + MERGE_GAP and \
                    hi - merged[-1][0] <= MAX_READ:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        for lo, hi in merged:
            for a, b in self.missing(lo, hi - lo):
                if a == self._last[0] and \
                        self._streak + 1 >= READ_AHEAD_AFTER:
                    b = min(max(b, a + 2 * self._last[1]), a + MAX_READ,
                            self.length)
                self._read(a, b)

    def _read(self, start: int, end: int) -> None:
        self._streak = self._streak + 1 if start == self._last[0] else 0
        self._last = (end, end - start)
        data = self.read_at(start, end - start)
        self.reads += 1
        self.bytes_read += len(data)
        if len(data) != end - start:
            raise RangedReadError(
                'the store returned %d bytes for the %d at offset %d of an '
                'image of %d bytes' % (len(data), end - start, start,
                                       self.length))
        self.chunks.append((start, bytes(data)))
        self.held += len(data)
        while self.held > CACHE_LIMIT and len(self.chunks) > 1:
            # Drop the oldest region read (chunks are in reading order).
            self.held -= len(self.chunks.pop(0)[1])


def _region(request: base.Request, length: int
            ) -> typing.Optional[typing.Tuple[int, int]]:
    """The byte range a request needs, or None for LENGTH."""
    if isinstance(request, base.Read):
        return request.offset, request.offset + request.length
    if isinstance(request, base.Tail):
        return max(0, length - request.length), length
    return None


def _answer(cache: _Cache, request: base.Request,
            length: int) -> typing.Union[int, bytes]:
    if request is base.LENGTH:
        return length
    start, end = typing.cast(typing.Tuple[int, int], _region(request, length))
    return cache.get(start, end - start) if start < length else b''


def inspect_ranged(read_at: ReadAt, length: int,
                   disk_format: typing.Optional[str] = None,
                   policy: typing.Optional[inspection.Policy] = None,
                   inspectors: typing.Optional[
                       typing.Iterable[base.FormatInspector]] = None
                   ) -> RangedInspection:
    """Inspect a bare image of ``length`` bytes through ``read_at``.

    :raises RangedReadError: when the store returns short data.
    :raises: whatever ``read_at`` raises (I/O errors of the store).
    """
    policy = policy or inspection.DEFAULT_POLICY
    if inspectors is None:
        inspectors = registry.inspectors()
    cache = _Cache(read_at, length)
    started = engine.start(inspectors, policy)
    probes = [probe for probe, _ in started]
    pending = [(probe, request) for probe, request in started
               if request is not None]
    while pending:
        cache.fetch(r for r in (_region(req, length) for _, req in pending)
                    if r is not None and r[0] < r[1])
        answered, pending = pending, []
        for probe, request in answered:
            nxt = engine.step(probe, _answer(cache, request, length))
            if nxt is not None:
                pending.append((probe, nxt))
    result = engine.decide(probes, disk_format, policy, length)
    return RangedInspection(result, cache.bytes_read, cache.reads)


def inspect_streamed(chunks: typing.Iterable[bytes],
                     disk_format: typing.Optional[str] = None,
                     policy: typing.Optional[inspection.Policy] = None,
                     container_format: typing.Optional[str] = None
                     ) -> RangedInspection:
    """Inspect an image read from start to end (a container, or a store
    that cannot seek); stops reading as soon as the image is refused.
    """
    inspector: push.PushInspector
    if container_format in inspection.BARE_CONTAINERS:
        from glance_vsize import stream
        inspector = stream.StreamInspector(disk_format, policy)
    else:
        from glance_vsize import containers
        inspector = containers.stream_inspector(container_format,
                                                disk_format, policy)
    bytes_read = reads = 0
    for chunk in chunks:
        if not chunk:
            continue
        reads += 1
        bytes_read += len(chunk)
        inspector.feed(chunk)
        if inspector.refusal is not None:
            break
    return RangedInspection(inspector.finish(), bytes_read, reads,
                            'streamed')


def chunks_of(read_at: ReadAt, length: int,
              size: int = STREAM_CHUNK) -> typing.Iterator[bytes]:
    """The image from start to end in ``size`` pieces, by ranged reads."""
    for offset in range(0, length, size):
        data = read_at(offset, min(size, length - offset))
        if not data:
            raise RangedReadError('the store returned no bytes at offset %d '
                                  'of an image of %d bytes'
                                  % (offset, length))
        yield data


def inspect_image(length: int, read_at: typing.Optional[ReadAt] = None,
                  chunks: typing.Optional[typing.Iterable[bytes]] = None,
                  disk_format: typing.Optional[str] = None,
                  container_format: typing.Optional[str] = None,
                  policy: typing.Optional[inspection.Policy] = None
                  ) -> RangedInspection:
    """Inspect a stored image the cheapest way its store allows.

    :param length: the image's size in bytes.
    :param read_at: ranged reads, when the store can seek.
    :param chunks: the image from start to end, when it cannot (or for
        a container, when given; else containers are read through
        ``read_at`` in :data:`STREAM_CHUNK` pieces).
    :raises ValueError: for a container format that is not inspected, or
        when neither ``read_at`` nor ``chunks`` is given.
    """
    if container_format in inspection.BARE_CONTAINERS and \
            read_at is not None:
        return inspect_ranged(read_at, length, disk_format, policy)
    if chunks is None:
        if read_at is None:
            raise ValueError('inspect_image needs read_at or chunks')
        chunks = chunks_of(read_at, length)
    return inspect_streamed(chunks, disk_format, policy, container_format)
