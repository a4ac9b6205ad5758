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

"""Streaming mode: inspect an image as its bytes pass, in one pass.

:class:`StreamInspector` is the push interface (``feed``/``finish``) that
container layers build on; :class:`InspectingReader` wraps a file-like
object or an iterable of chunks and hands every chunk on unchanged.

Memory is bounded by design: the only bytes copied are the regions the
probes asked for (each at most ``MAX_REGION``), plus references to the
chunks that hold the stream's last ``MAX_TAIL`` bytes.  Once every probe
has what it needs from the head of the stream, :meth:`feed` does nothing
but count bytes and keep that tail reference.
"""

import collections

from glance_vsize import engine
from glance_vsize.formats import base
from glance_vsize import inspection
from glance_vsize import registry

#: Chunk size used when iterating over a file-like source.
CHUNK_SIZE = 65536
#: "No region wanted": beyond any stream position.
_NOTHING = float('inf')


class StreamInspector:
    """Feed an image's bytes in order; get the verdict at the end.

    :param disk_format: the declared Glance ``disk_format``, or ``None``.
    :param policy: a :class:`~glance_vsize.inspection.Policy`.
    :param inspectors: the format inspectors to run (default: all
        registered ones).
    """

    def __init__(self, disk_format=None, policy=None, inspectors=None):
        self.disk_format = disk_format
        self.policy = policy or inspection.DEFAULT_POLICY
        if inspectors is None:
            inspectors = registry.inspectors()
        self.position = 0
        self.result = None
        self._pending = []          # [probe, offset, length, bytearray]
        self._wanted = _NOTHING     # the lowest offset a pending Read wants
        self._at_end = []           # (probe, Tail or LENGTH)
        self._tail = collections.deque()
        self._tail_len = 0
        self._eof = False
        self._refusal = None
        started = engine.start(inspectors, self.policy)
        self.probes = [probe for probe, _ in started]
        for probe, request in started:
            self._dispatch(probe, request, 0)
        self._check_early()

    @property
    def refusal(self):
        """An :class:`Inspection` as soon as the image is certain to be
        refused, before the stream ends; else ``None``."""
        return self._refusal

    def feed(self, chunk):
        """Account for the next ``chunk`` of the stream (bytes-like)."""
        size = len(chunk)
        if not size:
            return
        if self._wanted < self.position + size:
            self._fill(chunk, self.position, size)
        self.position += size
        # Keep references to the chunks that hold the last MAX_TAIL bytes
        # (copies of mutable buffers, which the caller may reuse: only
        # their last MAX_TAIL bytes, so count what is kept).
        if type(chunk) is not bytes:
            chunk = bytes(chunk[-base.MAX_TAIL:])
        kept = len(chunk)
        tail = self._tail
        if kept >= base.MAX_TAIL:
            tail.clear()
            self._tail_len = kept
        else:
            self._tail_len += kept
            while tail and self._tail_len - len(tail[0]) >= base.MAX_TAIL:
                self._tail_len -= len(tail.popleft())
        tail.append(chunk)

    def finish(self):
        """The stream has ended: answer what is left and decide."""
        if self.result is not None:
            return self.result
        self._eof = True
        while self._pending:
            probe, offset, _length, buf = self._pending.pop(0)
            self._dispatch(probe, engine.step(probe, bytes(buf)),
                           self.position)
        while self._at_end:
            probe, request = self._at_end.pop(0)
            self._dispatch(probe, engine.step(probe, self._answer(request)),
                           self.position)
        self.result = engine.decide(self.probes, self.disk_format,
                                    self.policy, self.position)
        return self.result

    # Internals -----------------------------------------------------------

    def _answer(self, request):
        if request is base.LENGTH:
            return self.position
        if not self._tail:
            return b''
        data = b''.join(self._tail)
        return data[-request.length:]

    def _dispatch(self, probe, request, floor):
        """Route a probe's request; ``floor`` is the lowest offset still
        available (the start of the chunk being processed)."""
        while request is not None:
            if isinstance(request, base.Read):
                if request.offset < floor:
                    engine.stream_order(probe, request, floor)
                    return
                if self._eof:
                    request = engine.step(probe, b'')
                    continue
                self._pending.append(
                    [probe, request.offset, request.length, bytearray()])
                self._wanted = min(self._wanted, request.offset)
                if not request.length:
                    self._pending.pop()
                    request = engine.step(probe, b'')
                    continue
                return
            if self._eof:
                request = engine.step(probe, self._answer(request))
                continue
            self._at_end.append((probe, request))
            return

    def _fill(self, chunk, start, size):
        end = start + size
        progress, delivered = True, False
        while progress:
            progress = False
            for entry in list(self._pending):
                probe, offset, length, buf = entry
                want = offset + len(buf)
                if want >= end:
                    continue
                stop = min(end, offset + length)
                # No temporary slice; the region's buffer is freed before
                # the probe runs, so one copy of it is held while it does.
                buf += memoryview(chunk)[want - start:stop - start]
                if len(buf) == length:
                    self._pending.remove(entry)
                    data = bytes(buf)
                    del buf[:]
                    self._dispatch(probe, engine.step(probe, data), start)
                    progress = delivered = True
        self._wanted = min((offset + len(buf)
                            for _, offset, _, buf in self._pending),
                           default=_NOTHING)
        if delivered:
            self._check_early()

    def _check_early(self):
        if self._refusal is None:
            verdict = engine.decide(self.probes, self.disk_format,
                                    self.policy, None, final=False)
            if verdict.failures:
                self._refusal = verdict


class InspectingReader:
    """Wrap a file-like object or an iterable of chunks; inspect in passing.

    Every chunk is handed on unchanged.  Once the source is exhausted,
    :attr:`result` holds the :class:`~glance_vsize.inspection.Inspection`.

    :param source: an object with ``read(n)``, or an iterable of bytes.
    :param disk_format: the declared Glance ``disk_format``, or ``None``.
    :param policy: a :class:`~glance_vsize.inspection.Policy`.
    :param fail_fast: raise :class:`~glance_vsize.inspection.ImageRejected`
        from ``read``/iteration as soon as the image is certain to be
        refused, and again at the end of an unsafe stream.
    :param expected_size: the stream's length when known (an HTTP
        Content-Length): the verdict is then reached, and a fail-fast
        refusal raised, with the last byte, even if the consumer never
        reads on to the end of the stream.
    :param container_format: the Glance ``container_format``.  ``None``,
        ``bare``, ``ami``, ``aki`` and ``ari``: the stream is the image.
        ``ova`` and ``compressed``: the image inside is inspected
        (:mod:`glance_vsize.containers`); the stream is handed on as it is.
    :raises ValueError: for another container format.
    """

    def __init__(self, source, disk_format=None, policy=None,
                 fail_fast=False, expected_size=None, container_format=None):
        if container_format in inspection.BARE_CONTAINERS:
            self._inspector = StreamInspector(disk_format, policy)
        else:
            from glance_vsize import containers
            self._inspector = containers.stream_inspector(
                container_format, disk_format, policy)
        self._fail_fast = fail_fast
        self._expected = expected_size
        self._read = getattr(source, 'read', None)
        self._chunks = None if self._read else iter(source)
        self._leftover = b''

    @property
    def result(self):
        """The verdict once the stream has ended, else ``None``."""
        return self._inspector.result

    @property
    def bytes_read(self):
        return self._inspector.position

    def _pull(self, size):
        if self._read is not None:
            return self._read(size)
        for chunk in self._chunks:
            if chunk:
                return chunk
        return b''

    def _account(self, chunk):
        if chunk:
            inspector = self._inspector
            inspector.feed(chunk)
            if self._fail_fast and inspector.refusal is not None:
                raise inspection.ImageRejected(inspector.refusal)
            if inspector.position != self._expected:
                return
        self.finish()

    def finish(self, check=True):
        """Decide now: the consumer has read all it will read.

        :param check: in fail-fast mode, raise for an unsafe image.
        :returns: the :class:`~glance_vsize.inspection.Inspection`.
        :raises ImageRejected: for an unsafe image, in fail-fast mode.
        """
        result = self._inspector.finish()
        if check and self._fail_fast and not result.safe:
            raise inspection.ImageRejected(result)
        return result

    def read(self, size=-1):
        if size is None or size < 0:
            parts = [self._leftover]
            self._leftover = b''
            while True:
                chunk = self._pull(CHUNK_SIZE)
                self._account(chunk)
                if not chunk:
                    return b''.join(parts)
                parts.append(chunk)
        if self._leftover:
            data, self._leftover = (self._leftover[:size],
                                    self._leftover[size:])
            return data
        chunk = self._pull(size)
        self._account(chunk)
        if self._read is None and len(chunk) > size:
            chunk, self._leftover = chunk[:size], chunk[size:]
        return chunk

    def __iter__(self):
        if self._leftover:
            chunk, self._leftover = self._leftover, b''
            yield chunk
        while True:
            chunk = self._pull(CHUNK_SIZE)
            self._account(chunk)
            if not chunk:
                return
            yield chunk
