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

"""The verdict of an inspection, the policy that shapes it, and its errors.

This module is part of the pure core: it imports nothing outside the
standard library, so that the CLI, the Glance hooks and third-party tools
share one definition of what "safe" means.
"""

import dataclasses
from typing import Any

#: The VMDK create types accepted by default: the two single-file,
#: self-contained subformats.  Every other type names extent files.
DEFAULT_VMDK_CREATE_TYPES = frozenset({'monolithicSparse', 'streamOptimized'})

#: How the virtual size of a VHD is derived.  ``qemu7`` follows
#: block/vpc.c of qemu 7.2 (Debian bookworm): CHS geometry unless the
#: creator application is one known to use Current Size (``win ``,
#: ``qem2``, ``d2v ``, ``CTXS``, ``tap\0``).  ``qemu10`` follows qemu >= 10
#: ("vpc: Read images exported from Azure correctly"), which inverts the
#: list: CHS geometry only for the ``vpc `` and ``qemu`` creators.  Both use
#: Current Size when the geometry is the maximum (65535/16/255).
VHD_SIZE_RULES = ('qemu7', 'qemu10')

#: Glance container_format names whose payload is the disk image itself
#: (``None``: not given).  Others go through :mod:`glance_vsize.containers`.
BARE_CONTAINERS = frozenset({None, 'bare', 'ami', 'aki', 'ari'})

#: Glance disk_format names whose content is a plain byte-for-byte disk.
RAW_LIKE = frozenset({'raw', 'ami', 'aki', 'ari'})

#: Glance's own disk formats (Glance 33 defaults).  A format outside this
#: set is recognised and measured, but refused with ``unsupported_format``.
GLANCE_DISK_FORMATS = frozenset({
    'ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', 'iso',
    'ploop'})

#: The most bytes a compressed image may expand to: 1 TiB, Glance's default
#: ``image_size_cap``.  An image too large to be uploaded uncompressed is
#: too large to arrive compressed.
DEFAULT_MAX_EXPANDED_SIZE = 1 << 40

#: The largest expansion ratio (expanded bytes per compressed byte read)
#: accepted once :data:`DEFAULT_RATIO_EXEMPT_SIZE` has been expanded.
#: Operating system images compress 2:1 to 10:1 and mostly empty raw disks
#: a few hundred to one; deflate cannot exceed 1032:1, so an all-zero gzip
#: bomb reaches this ratio.  The ratio bounds the work an upload can cause
#: per byte sent.
DEFAULT_MAX_COMPRESSION_RATIO = 1000

#: Images that expand to no more than this are never refused for their
#: ratio: sparse images compress enormously (a fresh 3 TiB qcow2, 240 KiB,
#: compresses 500:1 to 1100:1; an empty raw disk up to millions to one
#: with bzip2) and cost little to inspect.  4 GiB.
DEFAULT_RATIO_EXEMPT_SIZE = 4 << 30


@dataclasses.dataclass(frozen=True)
class Policy:
    """What the engine refuses.  The defaults are the safe choice.

    :param nonfatal_checks: check names that are reported as warnings
        instead of refusing the image.
    :param refuse_mismatch: refuse content that contradicts the declared
        ``disk_format`` (check ``format_mismatch``).
    :param vmdk_create_types: VMDK ``createType`` values accepted.
    :param vhd_size_rule: one of :data:`VHD_SIZE_RULES`.
    :param allowed_formats: detected formats accepted at all; anything else
        is refused with ``unsupported_format``.
    :param max_expanded_size: the most bytes a compressed container (or a
        compressed OVA member) may expand to (check ``expanded_size``);
        0 for no limit.
    :param max_compression_ratio: the largest ratio of expanded to
        compressed bytes (check ``compression_ratio``), applied once more
        than ``ratio_exempt_size`` bytes were expanded; 0 for no limit.
    :param ratio_exempt_size: expanded bytes never refused for their ratio.
    """

    nonfatal_checks: frozenset[str] = frozenset()
    refuse_mismatch: bool = True
    vmdk_create_types: frozenset[str] = DEFAULT_VMDK_CREATE_TYPES
    vhd_size_rule: str = 'qemu7'
    allowed_formats: frozenset[str] = GLANCE_DISK_FORMATS
    max_expanded_size: int = DEFAULT_MAX_EXPANDED_SIZE
    max_compression_ratio: int = DEFAULT_MAX_COMPRESSION_RATIO
    ratio_exempt_size: int = DEFAULT_RATIO_EXEMPT_SIZE

    def __post_init__(self) -> None:
        if self.vhd_size_rule not in VHD_SIZE_RULES:
            raise ValueError('vhd_size_rule must be one of %s, not %r'
                             % (', '.join(VHD_SIZE_RULES), self.vhd_size_rule))
        for name in ('max_expanded_size', 'max_compression_ratio',
                     'ratio_exempt_size'):
            if getattr(self, name) < 0:
                raise ValueError('%s must not be negative' % name)

    def is_fatal(self, check: str) -> bool:
        """Whether a failed ``check`` refuses the image; else it is only a
        warning.  The one place of this rule: ``nonfatal_checks``, and
        ``refuse_mismatch`` for ``format_mismatch``.
        """
        if check == 'format_mismatch' and not self.refuse_mismatch:
            return False
        return check not in self.nonfatal_checks


DEFAULT_POLICY = Policy()


@dataclasses.dataclass
class Inspection:
    """What the engine concluded about one image.

    :ivar format: the detected format, by its Glance ``disk_format`` name
        (``vhd``, not ``vpc``; ``ploop``, not ``parallels``), or ``raw``
        when no format signature was found.  ``None`` when undecided.
    :ivar virtual_size: the size of the disk the guest sees, in bytes,
        exactly as ``qemu-img info`` reports it; ``None`` when unknown.
    :ivar failures: stable check name -> reason (what was found, and at
        which offset).  Any entry makes the image unsafe.
    :ivar warnings: checks that failed but that the policy made non-fatal.
    :ivar variant: a detail of the format: ``fixed``/``dynamic`` for VHD,
        the VMDK create type, ``gpt``/``mbr`` for a partitioned raw disk.
    :ivar details: further facts for logs and containers (e.g. the other
        disks of an OVA).
    """

    format: str | None = None
    virtual_size: int | None = None
    failures: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: dict[str, str] = dataclasses.field(default_factory=dict)
    variant: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def safe(self) -> bool:
        """True when a format was recognised, sized, and no check failed."""
        return (not self.failures and self.format is not None
                and self.virtual_size is not None)

    def record(self, check: str, reason: str, policy: Policy) -> None:
        """Record a failed ``check``: a failure, or a warning when
        ``policy`` makes it non-fatal.  The first reason for a check
        wins.
        """
        if policy.is_fatal(check):
            self.failures.setdefault(check, reason)
        else:
            self.warnings.setdefault(check, reason)

    def describe(self) -> str:
        """One line for an operator or an API error message."""
        if self.failures:
            return '; '.join('%s: %s' % item
                             for item in sorted(self.failures.items()))
        what = self.format or 'unknown format'
        if self.variant:
            what += ' (%s)' % self.variant
        line = '%s, virtual size %s' % (what, self.virtual_size)
        if self.warnings:
            line += '; warning %s' % '; '.join(
                '%s: %s' % item for item in sorted(self.warnings.items()))
        return line

    def as_dict(self) -> dict[str, Any]:
        return {'format': self.format, 'virtual_size': self.virtual_size,
                'safe': self.safe, 'failures': dict(self.failures),
                'warnings': dict(self.warnings), 'variant': self.variant}


class ImageRejected(Exception):
    """Raised by a fail-fast :class:`InspectingReader` on a refused image."""

    def __init__(self, inspection: Inspection) -> None:
        self.inspection = inspection
        super().__init__('image refused: %s' % inspection.describe())
