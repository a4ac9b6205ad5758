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

"""``container_format=compressed``: a disk image compressed as a whole.

The compression is recognised by its magic bytes, never by a name:
gzip (RFC 1952), bzip2, xz and zstd (RFC 8878); see
:mod:`~glance_vsize.containers.decoders` and
:mod:`~glance_vsize.containers.zstd`.  The data is decompressed as it
passes, in pieces of at most 256 KiB, and the pieces are fed to a
:class:`~glance_vsize.push.StreamInspector`, which detects and checks
the inner image as it would a bare one (and against ``disk_format``).

Decompression bombs: before each piece is handed on, the expanded size is
checked against the policy's ``max_expanded_size`` (check
``expanded_size``) and, once more than ``ratio_exempt_size`` bytes were
expanded, the ratio of expanded to compressed bytes against
``max_compression_ratio`` (check ``compression_ratio``).  A refused
stream is not decompressed any further: it costs at most one piece more
than the cap.  Sparse images are why the ratio spares small expansions: a
fresh 3 TiB qcow2 is a few hundred KiB that compress to a few KiB.

zip (PKWARE APPNOTE) is refused (``compression``): its authoritative
index, the central directory, is at the end of the archive, and a member
written to a pipe (general purpose bit 3, a data descriptor after the
data) has no length in its local header, so a stored member's end cannot
be found in one pass.  A one-pass reader would follow the local headers,
which may disagree with the central directory that ``unzip`` and
Python's zipfile (Glance's ``image_decompression``) obey: the image
inspected would not be the image extracted.
"""

from collections.abc import Sequence
import logging
from typing import cast

from glance_vsize.containers import base
from glance_vsize.containers import decoders
from glance_vsize.containers import zstd
from glance_vsize import inspection
from glance_vsize import push

LOG = logging.getLogger(__name__)

DECODERS = (decoders.GzipDecoder, decoders.Bzip2Decoder,
            decoders.XzDecoder, zstd.ZstdDecoder)

#: Magic bytes of formats that are recognised only to be refused.
REFUSED = {b'PK\x03\x04': 'a zip archive', b'PK\x05\x06': 'a zip archive',
           b'\x04\x22\x4d\x18': 'lz4 data'}

#: Enough bytes to recognise every format above.
MAGIC_SIZE = max(len(cls.magic) for cls in DECODERS)


def recognise(head: bytes) -> type[decoders.Decoder] | None:
    """The decoder class for data starting with ``head``, or ``None``."""
    for cls in DECODERS:
        if head.startswith(cls.magic):
            return cls
    return None


class CompressedInspector(base.ContainerInspector):
    """Decompress as the bytes pass; inspect the image inside.

    :param only: the decoder names accepted (default: all), e.g.
        ``('gzip',)`` for an OVA member with ``ovf:compression="gzip"``.
    """

    name = 'compressed'

    #: The checks this container can fail, and what each means.
    CHECKS = {
        'compression':
            'not gzip, bzip2, xz or zstd data, data of another compressor '
            'than expected, or corrupt data',
        'truncated': 'the compressed data is empty or ends inside a stream',
        'trailing_data':
            'bytes after the compressed data other than the padding the tool '
            'accepts',
        'expanded_size': 'the data expands to more than max_expanded_size',
        'compression_ratio':
            'the data expands by more than max_compression_ratio (a '
            'decompression bomb)',
    }

    def __init__(self, disk_format: str | None = None,
                 policy: inspection.Policy | None = None,
                 only: Sequence[str] | None = None) -> None:
        super().__init__(disk_format, policy)
        self.inner = push.StreamInspector(disk_format, self.policy)
        self.only = only
        self.decoder: decoders.Decoder | None = None
        self._head = b''

    @property
    def expanded(self) -> int:
        return self.inner.position

    @property
    def _running(self) -> decoders.Decoder:
        """The decoder, once the data was recognised."""
        return cast(decoders.Decoder, self.decoder)

    def _feed(self, chunk: push.Chunk) -> None:
        if self.decoder is None:
            need = MAGIC_SIZE - len(self._head)
            self._head += bytes(chunk[:need])
            if len(self._head) < MAGIC_SIZE:
                return
            self._start()
            chunk = self._head + bytes(chunk[need:])
        self._decode(chunk)

    def _start(self) -> None:
        head = self._head
        cls = recognise(head)
        if cls is None:
            what = next((v for k, v in REFUSED.items()
                         if head.startswith(k)), None)
            raise base.ContainerError(
                'compression', 'the data is %s, not gzip, bzip2, xz or zstd '
                '(first bytes %r)' % (what or 'no known compression', head))
        if self.only and cls.name not in self.only:
            raise base.ContainerError(
                'compression', 'the data is %s, not %s'
                % (cls.name, ' or '.join(self.only)))
        self.details['compression'] = cls.name
        self.decoder = cls()

    def _decode(self, data: push.Chunk) -> None:
        decoder = self._running
        for piece in decoder.decode(data):
            self._expand(piece)
            if self._stopped:
                return
        self._check_trailing()

    def _check_trailing(self) -> None:
        """Refuse what follows the compressed data (or padding that the
        tool refuses), as the decoder found it.
        """
        if self._running.trailing is not None:
            self.fail('trailing_data',
                      cast(str, self._running.trailing_reason))

    def _expand(self, piece: bytes) -> None:
        """Check the caps, then inspect ``piece``."""
        policy = self.policy
        expanded = self.inner.position + len(piece)
        consumed = max(self._running.offset, 1)
        if policy.max_expanded_size and expanded > policy.max_expanded_size:
            self.fail('expanded_size', 'the %s data expands to more than '
                      '%d bytes (max_expanded_size) by its byte %d'
                      % (self._running.name, policy.max_expanded_size,
                         consumed))
        elif policy.max_compression_ratio and \
                expanded > policy.ratio_exempt_size and \
                expanded > policy.max_compression_ratio * consumed:
            self.fail('compression_ratio', '%d bytes of %s data expand to '
                      '%d bytes, more than %d:1 (max_compression_ratio)'
                      % (consumed, self._running.name, expanded,
                         policy.max_compression_ratio))
        if self._stopped:
            return
        self.inner.feed(piece)
        if self.inner.refusal is not None:
            self.stop()

    def _finish(self) -> None:
        if self._stopped:
            return
        try:
            if self.decoder is None:
                if not self._head:
                    raise base.ContainerError(
                        'truncated', 'the compressed data is empty')
                self._start()
                self._decode(self._head)
            if not self._stopped:
                self._running.finish()
                self._check_trailing()
        finally:
            if not self._stopped:
                self.inner.finish()
                self.details['expanded_size'] = self.inner.position

    def _verdict(self, final: bool) -> inspection.Inspection:
        inner = self.inner.result or self.inner.refusal
        name = self.decoder.name if self.decoder else 'compressed'
        return self.build(inner, 'in the %s data' % name, final)
