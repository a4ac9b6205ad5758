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

"""Seekable mode: inspect a file by reading only the regions probes need.

The same format code as streaming mode answers, so a 1 TiB staged file
costs a handful of pread calls.
"""

from collections.abc import Sequence
import os

from glance_vsize import containers
from glance_vsize import engine
from glance_vsize.formats import base
from glance_vsize import inspection
from glance_vsize import registry


#: Read size when a container is streamed through.
STREAM_CHUNK = 1 << 20


def _pread(fd: int, length: int, offset: int) -> bytes:
    parts = []
    while length > 0:
        data = os.pread(fd, length, offset)
        if not data:
            break
        parts.append(data)
        length -= len(data)
        offset += len(data)
    return b''.join(parts)


def inspect_fd(fd: int, disk_format: str | None = None,
               policy: inspection.Policy | None = None,
               inspectors: Sequence[base.FormatInspector] | None = None,
               ) -> inspection.Inspection:
    """Inspect the image behind an open file descriptor."""
    policy = policy or inspection.DEFAULT_POLICY
    if inspectors is None:
        inspectors = registry.inspectors()
    length = os.lseek(fd, 0, os.SEEK_END)
    started = engine.start(inspectors, policy)
    for probe, request in started:
        while request is not None:
            data: bytes | int
            if isinstance(request, base.Read):
                data = _pread(fd, request.length, request.offset)
            elif isinstance(request, base.Length):
                data = length
            else:
                start = max(0, length - request.length)
                data = _pread(fd, length - start, start)
            request = engine.step(probe, data)
    return engine.decide([probe for probe, _ in started], disk_format,
                         policy, length)


def inspect_file(path: str | os.PathLike[str], disk_format: str | None = None,
                 policy: inspection.Policy | None = None,
                 container_format: str | None = None,
                 ) -> inspection.Inspection:
    """Inspect the image at ``path`` (a file or a block device).

    :param container_format: as for
        :class:`~glance_vsize.stream.InspectingReader`.  A non-bare
        container is read from start to end in one pass (streaming mode):
        the image inside a compressed file has no offsets to seek to.
    :returns: an :class:`~glance_vsize.inspection.Inspection`.
    :raises OSError: when the file cannot be opened or read.
    :raises ValueError: for a container format that is not inspected.
    """
    if container_format not in inspection.BARE_CONTAINERS:
        return _stream_file(path, disk_format, policy, container_format)
    fd = os.open(path, os.O_RDONLY)
    try:
        return inspect_fd(fd, disk_format, policy)
    finally:
        os.close(fd)


def _stream_file(path: str | os.PathLike[str], disk_format: str | None,
                 policy: inspection.Policy | None,
                 container_format: str | None) -> inspection.Inspection:
    inspector = containers.stream_inspector(container_format, disk_format,
                                            policy)
    with open(path, 'rb') as f:
        while inspector.refusal is None:
            chunk = f.read(STREAM_CHUNK)
            if not chunk:
                break
            inspector.feed(chunk)
    return inspector.finish()
