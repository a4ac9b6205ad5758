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

:class:`InspectingReader` wraps a file-like object or an iterable of chunks
and hands every chunk on unchanged; it feeds them to a
:class:`~glance_vsize.push.StreamInspector` (the push interface,
``feed``/``finish``, that container layers build on too) or to a container
inspector.

Memory is bounded by design: the only bytes copied are the regions the
probes asked for (each at most ``MAX_REGION``), plus references to the
chunks that hold the stream's last ``MAX_TAIL`` bytes.  Once every probe
has what it needs from the head of the stream, :meth:`feed` does nothing
but count bytes and keep that tail reference.
"""

from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

from glance_vsize import containers
from glance_vsize import inspection
from glance_vsize.push import StreamInspector as StreamInspector  # noqa: F401

#: Chunk size used when iterating over a file-like source.
CHUNK_SIZE = 65536


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

    def __init__(self, source: Any, disk_format: str | None = None,
                 policy: inspection.Policy | None = None,
                 fail_fast: bool = False, expected_size: int | None = None,
                 container_format: str | None = None) -> None:
        self._inspector = containers.stream_inspector(
            container_format, disk_format, policy)
        self._fail_fast = fail_fast
        self._expected = expected_size
        self._read: Callable[[int], bytes] | None = getattr(
            source, 'read', None)
        self._chunks: Iterator[bytes] = (
            iter(()) if self._read else iter(source))
        self._leftover = b''

    @property
    def result(self) -> inspection.Inspection | None:
        """The verdict once the stream has ended, else ``None``."""
        return self._inspector.result

    @property
    def bytes_read(self) -> int:
        return self._inspector.position

    def _pull(self, size: int) -> bytes:
        if self._read is not None:
            return self._read(size)
        for chunk in self._chunks:
            if chunk:
                return chunk
        return b''

    def _account(self, chunk: bytes) -> None:
        if chunk:
            inspector = self._inspector
            inspector.feed(chunk)
            if self._fail_fast and inspector.refusal is not None:
                raise inspection.ImageRejected(inspector.refusal)
            if inspector.position != self._expected:
                return
        self.finish()

    def finish(self, check: bool = True) -> inspection.Inspection:
        """Decide now: the consumer has read all it will read.

        :param check: in fail-fast mode, raise for an unsafe image.
        :returns: the :class:`~glance_vsize.inspection.Inspection`.
        :raises ImageRejected: for an unsafe image, in fail-fast mode.
        """
        result = self._inspector.finish()
        if check and self._fail_fast and not result.safe:
            raise inspection.ImageRejected(result)
        return result

    def read(self, size: int | None = -1) -> bytes:
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

    def __iter__(self) -> Iterator[bytes]:
        if self._leftover:
            chunk, self._leftover = self._leftover, b''
            yield chunk
        while True:
            chunk = self._pull(CHUNK_SIZE)
            self._account(chunk)
            if not chunk:
                return
            yield chunk
