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

"""Streaming mode's push interface: feed an image's bytes in order, get
the verdict at the end.

:class:`StreamInspector` runs every format probe over one pass of the
bytes.  :class:`~glance_vsize.stream.InspectingReader` and the container
layers (:mod:`glance_vsize.containers`) feed it.

Memory is bounded by design: the only bytes copied are the regions the
probes asked for (each at most ``MAX_REGION``), plus references to the
chunks that hold the stream's last ``MAX_TAIL`` bytes.  Once every probe
has what it needs from the head of the stream, :meth:`feed` does nothing
but count bytes and keep that tail reference.
"""

import collections
from collections.abc import Sequence
import dataclasses
from typing import Protocol
from typing import TypeAlias

from glance_vsize import engine
from glance_vsize.formats import base
from glance_vsize import inspection
from glance_vsize import registry

#: "No region wanted": beyond any stream position.
_NOTHING = float('inf')

#: A piece of the stream, as the drivers receive it.
Chunk: TypeAlias = bytes | bytearray | memoryview


class PushInspector(Protocol):
    """What a push inspector provides: :class:`StreamInspector`, and every
    container layer
    (:class:`~glance_vsize.containers.base.ContainerInspector`).  The
    stream drivers need nothing else.
    """

    #: Bytes fed so far.
    position: int
    #: The verdict, once :meth:`finish` has run.
    result: inspection.Inspection | None

    @property
    def refusal(self) -> inspection.Inspection | None:
        """A verdict as soon as the image is certain to be refused."""

    def feed(self, chunk: Chunk) -> None:
        """Account for the next ``chunk`` of the stream."""

    def finish(self) -> inspection.Inspection:
        """The stream has ended: decide."""


@dataclasses.dataclass(eq=False)
class _PendingRead:
    """A probe's :class:`~glance_vsize.formats.base.Read` being filled."""

    probe: base.Probe
    offset: int
    length: int
    #: The bytes of the region that have passed so far.
    buf: bytearray = dataclasses.field(default_factory=bytearray)

    @property
    def want(self) -> int:
        """The offset of the next byte the region needs."""
        return self.offset + len(self.buf)


class StreamInspector:
    """Feed an image's bytes in order; get the verdict at the end.

    :param disk_format: the declared Glance ``disk_format``, or ``None``.
    :param policy: a :class:`~glance_vsize.inspection.Policy`.
    :param inspectors: the format inspectors to run (default: all
        registered ones).
    """

    def __init__(self, disk_format: str | None = None,
                 policy: inspection.Policy | None = None,
                 inspectors: Sequence[base.FormatInspector] | None = None,
                 ) -> None:
        self.disk_format = disk_format
        self.policy = policy or inspection.DEFAULT_POLICY
        if inspectors is None:
            inspectors = registry.inspectors()
        self.position = 0
        self.result: inspection.Inspection | None = None
        #: The Reads being filled, in request order.
        self._pending: list[_PendingRead] = []
        #: The lowest offset a pending Read wants.
        self._wanted: float = _NOTHING
        #: The requests answered at the end: a Tail, or LENGTH.
        self._at_end: list[tuple[base.Probe, base.Tail | base.Length]] = []
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_len = 0
        self._eof = False
        self._refusal: inspection.Inspection | None = None
        started = engine.start(inspectors, self.policy)
        self.probes = [probe for probe, _ in started]
        for probe, request in started:
            self._dispatch(probe, request, 0)
        self._check_early()

    @property
    def refusal(self) -> inspection.Inspection | None:
        """An :class:`Inspection` as soon as the image is certain to be
        refused, before the stream ends; else ``None``.
        """
        return self._refusal

    def feed(self, chunk: Chunk) -> None:
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
        if type(chunk) is bytes:
            piece = chunk
        else:
            piece = bytes(chunk[-base.MAX_TAIL:])
        kept = len(piece)
        tail = self._tail
        if kept >= base.MAX_TAIL:
            tail.clear()
            self._tail_len = kept
        else:
            self._tail_len += kept
            while tail and self._tail_len - len(tail[0]) >= base.MAX_TAIL:
                self._tail_len -= len(tail.popleft())
        tail.append(piece)

    def finish(self) -> inspection.Inspection:
        """The stream has ended: answer what is left and decide."""
        if self.result is not None:
            return self.result
        self._eof = True
        while self._pending:
            read = self._pending.pop(0)
            data = bytes(read.buf)
            self._dispatch(read.probe, engine.step(read.probe, data),
                           self.position)
        while self._at_end:
            probe, request = self._at_end.pop(0)
            self._dispatch(probe, engine.step(probe, self._answer(request)),
                           self.position)
        self.result = engine.decide(self.probes, self.disk_format,
                                    self.policy, self.position)
        return self.result

    # Internals -----------------------------------------------------------

    def _answer(self, request: base.Tail | base.Length) -> bytes | int:
        if isinstance(request, base.Length):
            return self.position
        if not self._tail:
            return b''
        data = b''.join(self._tail)
        return data[-request.length:]

    def _dispatch(self, probe: base.Probe, request: base.Request | None,
                  floor: int) -> None:
        """Route a probe's request; ``floor`` is the lowest offset still
        available (the start of the chunk being processed).
        """
        while request is not None:
            if isinstance(request, base.Read):
                if request.offset < floor:
                    engine.stream_order(probe, request, floor)
                    return
                if self._eof:
                    request = engine.step(probe, b'')
                    continue
                self._pending.append(
                    _PendingRead(probe, request.offset, request.length))
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

    def _fill(self, chunk: Chunk, start: int, size: int) -> None:
        """Hand the bytes of ``chunk`` (at offset ``start``) to the pending
        reads; a probe whose region is complete runs at once, and its next
        request is served from the same chunk when it can be.
        """
        end = start + size
        pending = self._pending
        delivered = False
        index = 0
        while index < len(pending):
            read = pending[index]
            want = read.want
            if want >= end:
                index += 1
                continue
            stop = min(end, read.offset + read.length)
            # No temporary slice; the region's buffer is freed before
            # the probe runs, so one copy of it is held while it does.
            read.buf += memoryview(chunk)[want - start:stop - start]
            if len(read.buf) < read.length:
                index += 1
                continue
            del pending[index]
            data = bytes(read.buf)
            del read.buf[:]
            self._dispatch(read.probe, engine.step(read.probe, data), start)
            delivered = True
        self._wanted = min((read.want for read in pending), default=_NOTHING)
        if delivered:
            self._check_early()

    def _check_early(self) -> None:
        if self._refusal is None:
            verdict = engine.decide(self.probes, self.disk_format,
                                    self.policy, None, final=False)
            if verdict.failures:
                self._refusal = verdict
