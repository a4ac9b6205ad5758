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

"""The streams of figures 1 and 2: a :class:`SyntheticStream` of an image's
:class:`~bench.images.Layout` (never all in memory), and the readers the
figures compare: glance_vsize's as the paste filter builds it, oslo.utils'
as Glance builds it.
"""

import random

from oslo_utils.imageutils import format_inspector

import glance_vsize


class SyntheticStream:
    """A file-like object: ``layout.total`` bytes in ``chunk``-sized reads.

    Only the head, the trailer and one chunk of filler exist in memory;
    every chunk that holds nothing but filler is that one buffer.
    """

    def __init__(self, layout, chunk, filler):
        self.layout = layout
        self.chunk = chunk
        self.filler = filler
        self._it = self._chunks()

    def _piece(self, start, end):
        lay = self.layout
        head_end = len(lay.head)
        trail = lay.total - len(lay.trailer)
        parts = []
        pos = start
        while pos < end:
            if pos < head_end:
                stop = min(end, head_end)
                parts.append(lay.head[pos:stop])
            elif pos < trail:
                stop = min(end, trail)
                parts.append(self.filler[:stop - pos])
            else:
                stop = end
                parts.append(lay.trailer[pos - trail:stop - trail])
            pos = stop
        return b''.join(parts)

    def _chunks(self):
        lay, c = self.layout, self.chunk
        first = -(-len(lay.head) // c)                  # first pure-filler
        last = (lay.total - len(lay.trailer)) // c      # one past the last
        for i in range(first):
            yield self._piece(i * c, min((i + 1) * c, lay.total))
        filler = self.filler
        for _ in range(max(0, last - first)):
            yield filler
        pos = max(first, last) * c
        while pos < lay.total:
            yield self._piece(pos, min(pos + c, lay.total))
            pos += c

    def read(self, size=-1):
        return next(self._it, b'')

    def header_chunks(self):
        return -(-len(self.layout.head) // self.chunk)

    def middle_chunks(self):
        return max(0, (self.layout.total - len(self.layout.trailer))
                   // self.chunk - self.header_chunks())


class Source:
    """What the wrappers read from: a synthetic stream's chunks, through
    the cheapest ``read`` (one lambda; the bare loop pays it too).
    """

    def __init__(self, stream):
        it = stream._it
        self.read = lambda size=-1: next(it, b'')


def filler_bytes(chunk, seed=5):
    return random.Random(seed).randbytes(chunk)


def glance_vsize_reader(src, layout, container_format=None):
    """An InspectingReader as the paste filter builds it."""
    kwargs = {}
    if container_format:
        kwargs['container_format'] = container_format
    return glance_vsize.InspectingReader(
        src, layout.disk_format if layout else None, fail_fast=True,
        expected_size=layout.total if layout else None, **kwargs)


def oslo_reader(src, layout):
    """oslo.utils' InspectWrapper as Glance builds it (location.py)."""
    return format_inspector.InspectWrapper(src)
