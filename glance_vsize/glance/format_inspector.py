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


"""oslo.utils' ``format_inspector`` API, answered by glance_vsize's engine.

Glance decides an image's format and virtual size with
``oslo_utils.imageutils.format_inspector`` (``InspectWrapper`` in
``glance/location.py`` ``ImageProxy.set_data``, ``detect_file_format`` in
image_conversion, ``InspectWrapper`` in the parallel import of Glance 33).
:mod:`glance_vsize.glance.install` puts this module in place of that name
in those Glance modules, so that Glance's own code gets glance_vsize's
verdict, which is what ``qemu-img info`` says.

The public names are the ones Glance uses: :class:`InspectWrapper`,
:func:`detect_file_format`, :func:`get_inspector`, :data:`ALL_FORMATS`,
and oslo.utils' own exception classes (:exc:`ImageFormatError`,
:exc:`SafetyCheckFailed`, :exc:`SafetyViolation`), so that Glance's
``except`` clauses match.  An inspector has ``NAME``, ``str()``,
``virtual_size``, ``actual_size``, ``complete``, ``format_match``,
``context_info`` and ``safety_check()``.

One inspection per pass: inside a request whose body the paste filter
inspects (:func:`inspected_pass`), :class:`InspectWrapper` does not inspect
the bytes again; it hands them on, counts them, and answers with the
filter's verdict.  Elsewhere (the store upload of an import, copy-image,
the parallel import) it inspects them with the engine's streaming driver
as they pass.  The content is judged on its own there (Glance passes no
disk_format): Glance compares the format it is given with disk_format
itself, under ``[image_format] require_image_format_match``.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from typing import Any, Callable, cast, Iterator, Optional

from oslo_utils.imageutils import format_inspector as _oslo

from glance_vsize import conf as vsize_conf
from glance_vsize.formats import base
from glance_vsize.formats import luks
from glance_vsize import inspection as insp_mod
from glance_vsize import seekable
from glance_vsize import stream

LOG = logging.getLogger(__name__)

# oslo.utils' own classes: Glance catches these.
ImageFormatError = _oslo.ImageFormatError
SafetyCheckFailed = _oslo.SafetyCheckFailed
SafetyViolation = _oslo.SafetyViolation

#: The filter's verdict for the request being handled in this thread.
_PASS: contextvars.ContextVar = contextvars.ContextVar(
    'glance_vsize_inspected_pass', default=None)


class InspectedPass:
    """A pass over image bytes that the paste filter inspects.

    :param bytes_read: how many bytes the filter's reader has read so far.
    :param verdict: returns the filter's
        :class:`~glance_vsize.inspection.Inspection` of what it read.
    """

    def __init__(self, bytes_read: Callable[[], int],
                 verdict: Callable[[], insp_mod.Inspection]) -> None:
        self.bytes_read = bytes_read
        self.verdict = verdict


@contextlib.contextmanager
def inspected_pass(current: InspectedPass) -> Iterator[None]:
    """Around a request whose body the filter inspects: an
    :class:`InspectWrapper` made meanwhile (in this thread) answers with
    the filter's verdict instead of inspecting the bytes again.
    """
    token = _PASS.set(current)
    try:
        yield
    finally:
        _PASS.reset(token)


def _policy() -> insp_mod.Policy:
    try:
        return vsize_conf.policy()
    except Exception as exc:    # options not registered, bad values...
        LOG.warning('glance_vsize options unusable (%s); inspecting with '
                    'the default policy', exc)
        return insp_mod.DEFAULT_POLICY


#: Checks that do not apply to a LUKS volume stored as raw bytes (Cinder's
#: encrypted volumes): what the bytes are declared as, and the LUKS
#: header's own checks, since qemu's raw driver reads the volume without
#: opening its header.  Glance reaches ``safety_check()`` of LUKS content
#: only when it treats the data as raw (disk_format raw: "Image claims raw
#: disk_format but is actually luks"), and records its byte size, as the
#: engine's verdict for LUKS declared raw does (engine.raw_view).  Checks
#: of the engine itself (multiple_formats...) still refuse.
_LUKS_AS_RAW = frozenset({'unsupported_format'}) | frozenset(
    luks.LuksInspector.CHECKS)


class EngineInspector:
    """One verdict, shaped as oslo.utils' ``FileInspector``."""

    NAME = ''

    def __init__(self, verdict: insp_mod.Inspection | None = None,
                 length: int = 0) -> None:
        self._verdict = verdict or insp_mod.Inspection(format=self.NAME)
        self._length = length

    @classmethod
    def from_verdict(cls, verdict: insp_mod.Inspection,
                     length: int) -> 'EngineInspector':
        fmt = cast(str, verdict.format)
        kind = ALL_FORMATS.get(fmt) or _kind(fmt)
        return kind(verdict, length)

    @classmethod
    def from_file(cls, filename: str) -> 'EngineInspector':
        """oslo.utils' ``FileInspector.from_file``: the file's verdict if
        it is of this class's format, else :exc:`ImageFormatError`.
        """
        inspector = detect_file_format(filename)
        if cls.NAME and inspector.NAME != cls.NAME:
            raise ImageFormatError('File is not in requested format')
        return inspector

    @property
    def verdict(self) -> insp_mod.Inspection:
        """glance_vsize's :class:`~glance_vsize.inspection.Inspection`."""
        return self._verdict

    @property
    def virtual_size(self) -> int:
        """What ``qemu-img info`` says (0 when unknown, as oslo.utils)."""
        return self._verdict.virtual_size or 0

    @property
    def actual_size(self) -> int:
        """The size of these bytes as a raw disk, as ``qemu-img info -f raw``
        says: the byte count rounded up to 512.  Glance records it as the
        virtual size of data declared ``raw`` whose content is another
        format.
        """
        return base.round_up(self._length)

    @property
    def format_match(self) -> bool:
        return True

    @property
    def complete(self) -> bool:
        return True

    @property
    def context_info(self) -> dict[str, int]:
        return {}

    def __str__(self) -> str:
        return self.NAME

    def __repr__(self) -> str:
        return '<%s %s>' % (type(self).__name__, self._verdict.describe())

    def safety_check(self) -> None:
        """:raises SafetyCheckFailed: naming every fatal check that failed,
        each a :exc:`SafetyViolation` saying what was found and where.
        """
        failures = dict(self._verdict.failures)
        if self.NAME == 'luks':
            failures = {k: v for k, v in failures.items()
                        if k not in _LUKS_AS_RAW}
        if failures:
            raise SafetyCheckFailed({name: SafetyViolation(reason)
                                     for name, reason in failures.items()})


def _kind(name: str) -> type:
    return type('%sInspector' % name.capitalize(), (EngineInspector,),
                {'NAME': name, '__doc__': 'The engine\'s verdict on %s '
                 'content.' % name})


#: Every format the engine detects, by Glance's disk_format name (oslo.utils
#: has no ploop).  Glance treats a disk_format missing here as "not
#: inspectable" (ami, aki, ari) and lets raw-looking data through for it.
ALL_FORMATS: dict[str, type] = {name: _kind(name) for name in (
    'raw', 'qcow2', 'vhd', 'vhdx', 'vmdk', 'vdi', 'qed', 'iso', 'gpt',
    'luks', 'ploop')}


def get_inspector(format_name: str) -> Optional[type]:
    """oslo.utils' ``get_inspector``: the class for a format name."""
    return ALL_FORMATS.get(format_name)


class InspectWrapper:
    """oslo.utils' ``InspectWrapper``: hands a stream on, decides its format.

    :param source: an iterator of chunks, or an object with ``read(n)``.
    :param expected_format: when given, the content is judged as that
        disk_format, and a stream that is not of it is interrupted with
        :exc:`ImageFormatError` as soon as the engine is sure.
    :param allowed_formats: limits the formats that may be returned; any
        other detected format is returned as raw when raw is allowed, else
        :attr:`format` raises :exc:`ImageFormatError`.
    """

    def __init__(self, source: Any, expected_format: str | None = None,
                 allowed_formats: list[str] | None = None,
                 tracing: bool = False,
                 params: dict[str, str] | None = None) -> None:
        self._source = source
        self._expected = expected_format
        self._allowed = allowed_formats
        self._pass = _PASS.get()
        self._stream = None
        if self._pass is None:
            self._stream = stream.StreamInspector(expected_format, _policy())
        self._count = 0
        self._ended = False
        self._verdict: insp_mod.Inspection | None = None

    def __iter__(self) -> 'InspectWrapper':
        return self

    def __next__(self) -> bytes:
        try:
            chunk = next(self._source)
        except StopIteration:
            self._finish()
            raise
        self._process_chunk(chunk)
        return chunk

    def read(self, size: int) -> bytes:
        chunk = self._source.read(size)
        self._process_chunk(chunk)
        return chunk

    def _process_chunk(self, chunk: bytes) -> None:
        self._count += len(chunk)
        if self._stream is None:
            return
        self._stream.feed(chunk)
        refusal = self._stream.refusal
        if self._expected and refusal is not None and \
                'format_mismatch' in refusal.failures:
            raise ImageFormatError('Content does not match expected format '
                                   '%r: %s' % (self._expected,
                                               refusal.describe()))

    def _finish(self) -> None:
        self._ended = True

    def _decide(self) -> insp_mod.Inspection:
        if self._verdict is not None:
            return self._verdict
        if self._stream is not None:
            self._verdict = self._stream.finish()
            return self._verdict
        read = self._pass.bytes_read()
        if read != self._count:
            # Not the body the filter read: no verdict for these bytes.
            LOG.error('glance_vsize: Glance stored %d bytes but the filter '
                      'inspected %d; no verdict', self._count, read)
            self._verdict = insp_mod.Inspection(failures={
                'inspection': 'the bytes stored (%d) are not the bytes '
                              'inspected (%d)' % (self._count, read)})
        else:
            self._verdict = self._pass.verdict()
        return self._verdict

    def close(self) -> None:
        if hasattr(self._source, 'close'):
            self._source.close()
        self._finish()

    @property
    def formats(self) -> list[EngineInspector] | None:
        """The format determined (a list of one), or ``None`` before the
        stream has ended.
        """
        if not self._ended:
            return None
        verdict = self._decide()
        if verdict.format is None:
            raise ImageFormatError('Content could not be inspected: %s'
                                   % verdict.describe())
        if self._allowed and verdict.format not in self._allowed:
            if 'raw' not in self._allowed:
                raise ImageFormatError(
                    'Content does not match any allowed format')
            verdict = insp_mod.Inspection(
                format='raw', virtual_size=base.round_up(self._count))
        return [EngineInspector.from_verdict(verdict, self._count)]

    @property
    def format(self) -> EngineInspector | None:
        """The format determined; :exc:`ImageFormatError` when the content
        matches more than one, as oslo.utils.
        """
        matches = self.formats
        if matches is None:
            return None
        if 'multiple_formats' in self._decide().failures:
            raise ImageFormatError('Multiple formats detected: %s'
                                   % self._decide().failures[
                                       'multiple_formats'])
        return matches[0]


def detect_file_format(filename: str, tracing: bool = False,
                       params: dict[str, str] | None = None
                       ) -> EngineInspector:
    """oslo.utils' ``detect_file_format``: the file's format and verdict,
    read with ``pread`` (the regions the engine needs, not the file).

    :raises ImageFormatError: when the content matches several formats.
    """
    verdict = seekable.inspect_file(filename, None, _policy())
    if 'multiple_formats' in verdict.failures:
        raise ImageFormatError('Multiple formats detected: %s'
                               % verdict.failures['multiple_formats'])
    if verdict.format is None:
        raise ImageFormatError('Content could not be inspected: %s'
                               % verdict.describe())
    return EngineInspector.from_verdict(verdict, os.path.getsize(filename))
