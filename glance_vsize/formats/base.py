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

"""The protocol between format inspectors and the engine's two drivers.

A format inspector never touches a file or a stream.  Its :meth:`inspect`
is a generator that *yields requests* for the bytes it needs and receives
them back::

    def inspect(self, probe, policy):
        head = yield Read(0, 512)            # may come back short
        if head[:4] != MAGIC:
            return                           # not this format
        probe.match('magic %r at offset 0' % MAGIC)
        desc = yield from read_exact(512, 1024, 'descriptor')
        probe.virtual_size = ...

The streaming driver (:mod:`glance_vsize.stream`) answers the requests as
the bytes pass, copying only the requested regions; the seekable driver
(:mod:`glance_vsize.seekable`) answers them with ``pread``.  So both modes
run the same format code.

Rules for inspectors, so that one pass is enough:

* :class:`Read` offsets must not go backwards: in streaming mode, bytes
  before the current position are gone (check ``stream_order``).
* :class:`Tail` (the last N bytes) and :class:`Length` (the stream's
  length) are answered only at the end of the stream.
* A region is at most :data:`MAX_REGION` bytes; an inspector checks a
  header's lengths against its own, tighter bounds first.
* Return (or fall off the end) before :meth:`Probe.match` to say "not
  mine"; after it, report problems with :meth:`Probe.fail` (and go on) or
  by raising :class:`FormatError` (and stop).
"""

from collections.abc import Generator
from collections.abc import Mapping
from typing import Any
from typing import ClassVar
from typing import NamedTuple
from typing import overload
from typing import TYPE_CHECKING
from typing import TypeAlias
from typing import TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from glance_vsize import inspection

#: The largest region one request may ask for.  Formats bound their own
#: header lengths well below this; it is the engine's last line of defence.
MAX_REGION = 1 << 20

#: The longest :class:`Tail` a request may ask for.
MAX_TAIL = 4096

SECTOR = 512


class Read(NamedTuple):
    """Request: ``length`` bytes at absolute ``offset``."""

    offset: int
    length: int


class Tail(NamedTuple):
    """Request: the last ``length`` bytes of the image."""

    length: int


class Length:
    """Request: the image's total length in bytes (an ``int``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return 'LENGTH'


LENGTH = Length()

#: What an inspector may yield.
Request: TypeAlias = Read | Tail | Length

#: What an inspector receives back: ``bytes`` for a :class:`Read` (maybe
#: short) or a :class:`Tail`, an ``int`` for :data:`LENGTH`.  The type
#: depends on the request, which Python's types cannot say, hence ``Any``.
Answer: TypeAlias = Any

T = TypeVar('T')

#: The generator of a format inspector, or of a helper it delegates to
#: with ``yield from``, that returns ``T``: ``Reads[bytes]``.
Reads: TypeAlias = Generator[Request, Answer, T]


class FormatError(Exception):
    """A check failed and the inspector cannot go on.

    :param check: the stable check name (``truncated``, ``header_length``).
    :param reason: what was found and where, for a human.
    """

    def __init__(self, check: str, reason: str) -> None:
        self.check = check
        self.reason = reason
        super().__init__('%s: %s' % (check, reason))


def read_exact(offset: int, length: int, what: str) -> Reads[bytes]:
    """Generator helper: ``data = yield from read_exact(off, n, 'header')``.

    Raises :class:`FormatError` ``truncated`` when the image ends first.
    """
    data: bytes = yield Read(offset, length)
    if len(data) < length:
        raise FormatError(
            'truncated', '%s needs %d bytes at offset %d but the image ends '
            'at offset %d' % (what, length, offset, offset + len(data)))
    return data


class Reader:
    """Forward reads of an image as qemu sees them: bytes past the end of
    the image read as zeros (``bdrv_aligned_preadv`` zero-fills beyond the
    end of the file).  Every format that reads more than its first request
    reads through one, so streaming mode can serve it: a request never
    starts before bytes already asked for.

    Bytes already read are served again from what the reader retains:

    * ``retain='window'``: one window, which a read that has to ask for more
      moves to start at its own offset (a read before the window returns
      ``None``, or fails ``stream_order`` when ``what`` is given).  Once the
      end of the image is known, nothing more is asked for.
    * ``retain='all'``: every chunk read with ``keep=True``; a read that
      needs bytes read with ``keep=False`` fails ``stream_order``.

    :param head: the bytes already read at offset 0 (the first request's
        answer), or ``b''``.
    :param asked: how many bytes were asked for ``head``: a shorter
        ``head`` means the image ends there.  Default ``len(head)``.
    :param position: the end of the bytes already asked for, when ``head``
        is not kept (``retain='all'``); default ``len(head)``.
    :param limit: the end of any file qemu reads; a read beyond it fails
        ``table_bounds``.
    """

    def __init__(self, head: bytes = b'', asked: int | None = None, *,
                 position: int | None = None, retain: str = 'window',
                 limit: int | None = None) -> None:
        if retain not in ('window', 'all'):
            raise ValueError('retain must be window or all, not %r'
                             % (retain,))
        self.retain = retain
        self.limit = limit
        #: Retained (offset, bytes), in offset order.
        self.chunks: list[tuple[int, bytes]] = [(0, head)] if head else []
        #: The end of the bytes asked for so far.
        self.position = len(head) if position is None else position
        #: Where the image ends, once a read came back short.
        self.image_end: int | None = None
        if asked is not None and len(head) < asked:
            self.image_end = len(head)

    def _retained(self, offset: int, end: int) -> bytes | None:
        for start, chunk in self.chunks:
            if start <= offset < start + len(chunk):
                return chunk[offset - start:end - start]
        return None

    @overload
    def read(self, offset: int, length: int, what: str, *,
             ahead: int = 0, keep: bool = True) -> Reads[bytes]:
        ...

    @overload
    def read(self, offset: int, length: int, what: None = None, *,
             ahead: int = 0, keep: bool = True) -> Reads[bytes | None]:
        ...

    def read(self, offset: int, length: int, what: str | None = None, *,
             ahead: int = 0, keep: bool = True) -> Reads[bytes | None]:
        """Generator: ``length`` bytes at ``offset``, zeros past the end of
        the image; asking for at least ``ahead`` bytes when it must ask.

        :returns: the bytes, or ``None`` for bytes no longer retained when
            ``what`` is ``None``.
        :raises FormatError: ``stream_order`` for bytes no longer retained
            (when ``what`` names them), ``table_bounds`` beyond ``limit``.
        """
        end = offset + length
        if self.limit is not None and end > self.limit:
            raise FormatError('table_bounds', '%s: %d bytes at offset %d, '
                              'beyond any file' % (what, length, offset))
        data = b''
        at = offset
        while at < min(end, self.position) or (
                self.retain == 'window' and self.chunks
                and at < self.chunks[0][0]):
            part = self._retained(at, end)
            if part is None:
                if what is None:
                    return None
                raise FormatError('stream_order', '%s at offset %d lies '
                                  'before data already read' % (what, at))
            data += part
            at += len(part)
        if self.retain == 'window':
            if end <= self.position or self.image_end is not None:
                return data.ljust(length, b'\0')
            # The window now starts at this read's offset.
            kept = (self._retained(offset, self.position) or b'') \
                if offset < self.position else b''
            self.chunks = []
        elif at == end:
            return data
        want = max(end, offset + ahead) - at
        more: bytes = yield Read(at, want)
        if len(more) < want:
            self.image_end = at + len(more)
            more = more.ljust(want, b'\0')
        if self.retain == 'window':
            self.chunks = [(offset, kept + more)]
        elif keep:
            self.chunks.append((at, more))
        self.position = at + want
        data += more[:end - at]
        return data.ljust(length, b'\0')


def round_up(value: int, align: int = SECTOR) -> int:
    return -(-value // align) * align


def round_down(value: int, align: int = SECTOR) -> int:
    return value // align * align


def cstring(raw: bytes) -> str:
    """Bytes up to the first NUL, decoded leniently for messages."""
    return raw.split(b'\0', 1)[0].decode('ascii', 'replace')


class Probe:
    """One inspector's findings on one image; what ``inspect`` writes to.

    :ivar matched: the inspector recognised its format.
    :ivar evidence: why, for error messages ("magic 'QFI\\xfb' at 0").
    :ivar virtual_size: the size qemu would report, once known.
    :ivar variant: format detail (``fixed``, ``streamOptimized``...).
    :ivar raw_data: the guest-visible bytes are the image's own bytes
        from offset 0 (a fixed VHD), so content signatures inside it
        (ISO, GPT, MBR) are expected rather than suspicious.
    :ivar failures: check name -> reason.
    :ivar details: extra facts reported in ``Inspection.details``.
    """

    def __init__(self, inspector: 'FormatInspector') -> None:
        self.inspector = inspector
        self.matched = False
        self.evidence: str | None = None
        self.virtual_size: int | None = None
        self.variant: str | None = None
        self.raw_data = False
        self.failures: dict[str, str] = {}
        self.details: dict[str, Any] = {}
        self.done = False
        #: The running :meth:`FormatInspector.inspect` (set by the engine).
        self.gen: Reads[None]

    @property
    def name(self) -> str:
        return self.inspector.name

    def match(self, evidence: str, variant: str | None = None) -> None:
        self.matched = True
        self.evidence = evidence
        if variant is not None:
            self.variant = variant

    def fail(self, check: str, reason: str) -> None:
        """Record a failed check; the first reason for a check wins."""
        self.failures.setdefault(check, reason)


class FormatInspector:
    """Base class of every format module's inspector.

    Subclasses set :attr:`name` and implement :meth:`inspect`.  They are
    registered under the ``glance_vsize.inspectors`` entry point group.
    """

    #: The Glance ``disk_format`` name of the format.
    name: ClassVar[str] = ''
    #: qemu's driver name, when it differs (``vpc``, ``parallels``).
    qemu_name: ClassVar[str | None] = None
    #: A content signature (ISO 9660, GPT, MBR) that describes the
    #: guest-visible bytes of a raw disk rather than an image container.
    content: ClassVar[bool] = False
    #: The checks this inspector can fail (name -> what it means); see
    #: :mod:`glance_vsize.checks`.
    CHECKS: ClassVar[Mapping[str, str]] = {}
    #: Where the inspector runs among the others (lower first; the
    #: built-in ones take 10 to 92): when two image formats match, the
    #: first is the one reported, beside the ``multiple_formats`` failure.
    order: ClassVar[int] = 100
    #: Declared ``raw``, the image is inspected as raw, with the warning
    #: :meth:`raw_warning` gives (a LUKS volume): see
    #: :func:`glance_vsize.engine.raw_view`.
    raw_when_declared: ClassVar[bool] = False

    @staticmethod
    def raw_warning(probe: Probe) -> str:
        """The warning of an image of this format accepted as raw."""
        raise NotImplementedError()

    def inspect(self, probe: Probe,
                policy: 'inspection.Policy') -> Reads[None]:
        """Generator: yield requests, receive bytes, write to ``probe``."""
        raise NotImplementedError()
        yield  # pragma: no cover

    def __repr__(self) -> str:
        return '<%s %s>' % (type(self).__name__, self.name)
