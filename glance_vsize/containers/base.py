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

"""What every container inspector shares: the push interface of
:class:`~glance_vsize.push.StreamInspector` and how a verdict is built.

A container inspector is fed the bytes of the container (the request body,
the staged file) in order, hands the bytes of the disk image inside to a
:class:`~glance_vsize.push.StreamInspector` as they pass, and at the end
returns one :class:`~glance_vsize.inspection.Inspection`: the inner
image's format and virtual size, the container's own failures beside the
inner image's, and what the container held in ``details``.
"""

from collections.abc import Mapping
from typing import Any
from typing import ClassVar

from glance_vsize import engine
from glance_vsize.formats import base as formats_base
from glance_vsize import inspection
from glance_vsize import push


class ContainerError(formats_base.FormatError):
    """A container structure check failed; the container cannot be read on.

    :param check: the stable check name (``tar_header``, ``compression``).
    :param reason: what was found and where, for a human.
    """


class ContainerInspector:
    """Base class: ``feed(chunk)``, ``finish()``, ``refusal``, ``result``,
    ``position``, as :class:`~glance_vsize.push.StreamInspector` has.

    Subclasses implement :meth:`_feed` (which may raise
    :class:`ContainerError`) and :meth:`_verdict`.  Once a fatal failure is
    known the container is not read any further: its remaining bytes are
    only counted, so that a refused decompression bomb costs nothing more.
    """

    #: The Glance container_format name.
    name: ClassVar[str] = ''
    #: The checks this container can fail (name -> what it means); see
    #: :mod:`glance_vsize.checks`.
    CHECKS: ClassVar[Mapping[str, str]] = {}

    def __init__(self, disk_format: str | None = None,
                 policy: inspection.Policy | None = None) -> None:
        self.disk_format = disk_format
        self.policy = policy or inspection.DEFAULT_POLICY
        self.position = 0
        self.result: inspection.Inspection | None = None
        self.failures: dict[str, str] = {}
        self.details: dict[str, Any] = {'container': self.name}
        self._refusal: inspection.Inspection | None = None
        self._stopped = False

    @property
    def refusal(self) -> inspection.Inspection | None:
        """An :class:`Inspection` as soon as the container is certain to be
        refused, before it ends; else ``None``.
        """
        return self._refusal

    def fail(self, check: str, reason: str) -> None:
        """Record a container failure; the first reason for a check wins.
        A fatal one stops the reading and makes the refusal known.
        """
        self.failures.setdefault(check, reason)
        if self.policy.is_fatal(check):
            self.stop()

    def stop(self) -> None:
        """Read no further: count the remaining bytes only."""
        self._stopped = True
        self._check_early()

    def _check_early(self) -> None:
        """Make the refusal known once the verdict has a failure."""
        if self._refusal is None:
            verdict = self._verdict(final=False)
            if verdict.failures:
                self._refusal = verdict

    def feed(self, chunk: push.Chunk) -> None:
        """Account for the next ``chunk`` of the container (bytes-like)."""
        size = len(chunk)
        if not size:
            return
        self.position += size
        if self._stopped:
            return
        try:
            self._feed(chunk)
        except ContainerError as exc:
            # The structure cannot be followed any further, whether or not
            # the policy makes the check fatal.
            self.failures.setdefault(exc.check, exc.reason)
            self.stop()

    def finish(self) -> inspection.Inspection:
        """The container has ended: decide."""
        if self.result is None:
            try:
                self._finish()
            except ContainerError as exc:
                self.failures.setdefault(exc.check, exc.reason)
            self.result = self._verdict(final=True)
        return self.result

    # Subclass interface --------------------------------------------------

    def _feed(self, chunk: push.Chunk) -> None:
        raise NotImplementedError()

    def _finish(self) -> None:
        """The end of the container (also after :meth:`stop`)."""
        raise NotImplementedError()

    def _verdict(self, final: bool) -> inspection.Inspection:
        raise NotImplementedError()

    # Helpers -------------------------------------------------------------

    def build(self, inner: inspection.Inspection | None, where: str,
              final: bool, extra: Mapping[str, str] | None = None,
              ) -> inspection.Inspection:
        """The verdict: ``inner`` (an :class:`Inspection` of the disk image,
        or ``None`` when there is none) with the container's failures (and
        the ``extra`` ones found while deciding) and details.  Inner
        reasons are prefixed with ``where``.
        """
        result = inspection.Inspection()
        if inner is not None:
            result.format = inner.format
            result.variant = inner.variant
            result.virtual_size = inner.virtual_size
            result.details.update(inner.details)
            merge(result, inner, where)
        result.details.update(self.details)
        for check, reason in list(self.failures.items()) + list(
                (extra or {}).items()):
            self.add(result, check, reason)
        if final and inner is None and not result.failures:
            result.failures['virtual_size'] = (
                'the %s container holds no disk image' % self.name)
        return result

    def add(self, result: inspection.Inspection, check: str,
            reason: str) -> None:
        """Record a container check in ``result`` as the policy says."""
        result.record(check, reason, self.policy)

    def check_format(self, result: inspection.Inspection,
                     found: str) -> None:
        """Add ``format_mismatch`` when the inner image is not of the
        declared ``disk_format`` (as :func:`engine.decide` does for a bare
        image).
        """
        if result.format is None or engine.compatible(self.disk_format,
                                                      result.format):
            return
        result.record('format_mismatch', 'disk_format is %s but %s is %s'
                      % (self.disk_format, found, result.format),
                      self.policy)


def merge(result: inspection.Inspection, inner: inspection.Inspection,
          where: str) -> None:
    """Copy ``inner``'s failures and warnings into ``result``, naming where
    they were found.  The first reason for a check wins.
    """
    for check, reason in inner.failures.items():
        result.failures.setdefault(check, '%s: %s' % (where, reason))
    for check, reason in inner.warnings.items():
        result.warnings.setdefault(check, '%s: %s' % (where, reason))
