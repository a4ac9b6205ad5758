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

import collections
from collections.abc import Mapping
from typing import ClassVar

#: The largest region one request may ask for.  Formats bound their own
#: header lengths well below this; it is the engine's last line of defence.
MAX_REGION = 1 << 20

#: The longest :class:`Tail` a request may ask for.
MAX_TAIL = 4096

SECTOR = 512

Read = collections.namedtuple('Read', 'offset length')
Read.__doc__ = 'Request: ``length`` bytes at absolute ``offset``.'

Tail = collections.namedtuple('Tail', 'length')
Tail.__doc__ = 'Request: the last ``length`` bytes of the image.'


class _Length:
    """Request: the image's total length in bytes (an ``int``)."""

    __slots__ = ()

    def __repr__(self):
        return 'LENGTH'


LENGTH = _Length()


class FormatError(Exception):
    """A check failed and the inspector cannot go on.

    :param check: the stable check name (``truncated``, ``header_length``).
    :param reason: what was found and where, for a human.
    """

    def __init__(self, check, reason):
        self.check = check
        self.reason = reason
        super().__init__('%s: %s' % (check, reason))


def read_exact(offset, length, what):
    """Generator helper: ``data = yield from read_exact(off, n, 'header')``.

    Raises :class:`FormatError` ``truncated`` when the image ends first.
    """
    data = yield Read(offset, length)
    if len(data) < length:
        raise FormatError(
            'truncated', '%s needs %d bytes at offset %d but the image ends '
            'at offset %d' % (what, length, offset, offset + len(data)))
    return data


def round_up(value, align=SECTOR):
    return -(-value // align) * align


def round_down(value, align=SECTOR):
    return value // align * align


def cstring(raw):
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

    def __init__(self, inspector):
        self.inspector = inspector
        self.matched = False
        self.evidence = None
        self.virtual_size = None
        self.variant = None
        self.raw_data = False
        self.failures = {}
        self.details = {}
        self.done = False

    @property
    def name(self):
        return self.inspector.name

    def match(self, evidence, variant=None):
        self.matched = True
        self.evidence = evidence
        if variant is not None:
            self.variant = variant

    def fail(self, check, reason):
        """Record a failed check; the first reason for a check wins."""
        self.failures.setdefault(check, reason)


class FormatInspector:
    """Base class of every format module's inspector.

    Subclasses set :attr:`name` and implement :meth:`inspect`.  They are
    registered under the ``glance_vsize.inspectors`` entry point group.
    """

    #: The Glance ``disk_format`` name of the format.
    name = None
    #: qemu's driver name, when it differs (``vpc``, ``parallels``).
    qemu_name = None
    #: A content signature (ISO 9660, GPT, MBR) that describes the
    #: guest-visible bytes of a raw disk rather than an image container.
    content = False
    #: The checks this inspector can fail (name -> what it means); see
    #: :mod:`glance_vsize.checks`.
    CHECKS: ClassVar[Mapping[str, str]] = {}

    def inspect(self, probe, policy):
        """Generator: yield requests, receive bytes, write to ``probe``."""
        raise NotImplementedError()
        yield  # pragma: no cover

    def __repr__(self):
        return '<%s %s>' % (type(self).__name__, self.name)
