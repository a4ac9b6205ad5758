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


"""Configuration options of glance_vsize (group ``[glance_vsize]``).

Both Glance hooks read them from Glance's own configuration, so they can
live in glance-api.conf or glance-image-import.conf.  ``list_opts()`` is
registered under the ``oslo.config.opts`` entry point for
oslo-config-generator (see etc/oslo-config-generator/glance-vsize.conf).
"""

import textwrap

from oslo_config import cfg

from glance_vsize import checks
from glance_vsize import inspection

GROUP = 'glance_vsize'


def _checks_help() -> str:
    """The help of ``nonfatal_checks``, listing the declared check names."""
    listed = textwrap.fill(', '.join(checks.names()) + '.', width=72)
    return """
Safety checks whose failure is logged as a warning instead of refusing the
image. Every check is fatal by default. format_mismatch is also controlled
by refuse_format_mismatch. A name that is not one of the checks below is
refused when the option is loaded, with the list of valid names.

Check names (what each means is in the documentation's check reference):
%s

Loosening a check lets images that qemu would read differently, or that
make qemu open other files on the compute host, reach Nova and Cinder.
Do so only for a check you have understood, and only while you must.
""" % listed


OPTS = [
    cfg.ListOpt('nonfatal_checks', default=[], help=_checks_help()),
    cfg.BoolOpt('refuse_format_mismatch', default=True, help="""
Refuse an upload whose content is not what its disk_format says (check
format_mismatch), e.g. qcow2 data uploaded as raw. When False, the
mismatch is logged, and virtual_size is still set from the detected
format. Glance's own [image_format] require_image_format_match plays the
same role for its built-in inspector.
"""),
    cfg.ListOpt('vmdk_create_types',
                default=sorted(inspection.DEFAULT_VMDK_CREATE_TYPES),
                help="""
VMDK createType values accepted. The default allows only the two
subformats that are a single self-contained file. Other types
(monolithicFlat, twoGbMaxExtentSparse, vmfs, ...) describe extents in
other files, which qemu would open on the compute host.
"""),
    cfg.StrOpt('vhd_size_rule', default='qemu7',
               choices=[('qemu7', 'The rule of qemu 7.2 (Debian bookworm): '
                                  'the CHS geometry gives the size unless '
                                  'the creator application is one known to '
                                  'use Current Size.'),
                        ('qemu10', 'The rule of qemu >= 10, which trusts '
                                   'Current Size in more cases.')],
               help="""
How the virtual size of a VHD image is derived. Match the qemu version of
your compute nodes: a virtual size that differs from what their qemu-img
reports makes Nova resize or refuse the disk.
"""),
    cfg.ListOpt('allowed_formats',
                default=sorted(inspection.GLANCE_DISK_FORMATS),
                help="""
Detected formats that may be uploaded at all. Content of any other format
(e.g. qed, luks) is refused with the unsupported_format check, even when
its disk_format claims something else. Raw content is always allowed.
"""),
    cfg.IntOpt('max_expanded_size', min=0,
               default=inspection.DEFAULT_MAX_EXPANDED_SIZE, help="""
The most bytes the image inside a compressed container (container_format
compressed, or an OVA member with ovf:compression="gzip") may expand to,
in bytes; 0 for no limit. A stream that expands further is refused with
the expanded_size check as soon as it does, and is not decompressed any
further. The default, 1 TiB, is Glance's default image_size_cap: an image
too large to be uploaded as it is should not arrive compressed. Inspecting
a compressed image means decompressing all of it (about 1 GiB/s of CPU),
so this also bounds the work one upload can cause.
"""),
    cfg.IntOpt('max_compression_ratio', min=0,
               default=inspection.DEFAULT_MAX_COMPRESSION_RATIO, help="""
The largest ratio of expanded bytes to compressed bytes read so far, once
more than compression_ratio_exempt_size bytes were expanded; 0 for no
limit. A stream beyond it is refused with the compression_ratio check
(a decompression bomb) and not decompressed further, so the work an upload
causes stays proportional to the bytes it sends. Operating system images
compress 2:1 to 10:1 and mostly empty raw disks a few hundred to one;
deflate (gzip) cannot exceed 1032:1. Raise it for images that are huge and
nearly empty (a 100 GiB raw disk with a fresh file system compressed with
xz or zstd exceeds 1000:1); better, upload those as qcow2.
"""),
    cfg.IntOpt('compression_ratio_exempt_size', min=0,
               default=inspection.DEFAULT_RATIO_EXEMPT_SIZE, help="""
Expanded bytes that are never refused for their compression ratio (4 GiB
by default). Sparse images compress enormously but cost little to
inspect: a fresh 3 TiB qcow2 is 240 KiB of mostly zeros that gzip, bzip2,
xz and zstd compress 500:1 to 1100:1, and an empty raw disk compresses
1000:1 (gzip) to millions to one (bzip2). max_compression_ratio applies
only beyond this size.
"""),
]


def register_opts(conf: cfg.ConfigOpts = cfg.CONF) -> None:
    """Register the options and check ``nonfatal_checks``.

    :raises ValueError: when ``nonfatal_checks`` names a check that does
        not exist (naming it, and the valid ones), so that a typo stops the
        service from loading instead of silently doing nothing.
    """
    conf.register_opts(OPTS, group=GROUP)
    checks.validate(conf[GROUP].nonfatal_checks,
                    '[%s] nonfatal_checks' % GROUP)


def policy(conf: cfg.ConfigOpts = cfg.CONF) -> inspection.Policy:
    """The engine :class:`~glance_vsize.inspection.Policy` the options
    describe.
    """
    register_opts(conf)
    group = conf[GROUP]
    return inspection.Policy(
        nonfatal_checks=frozenset(group.nonfatal_checks),
        refuse_mismatch=group.refuse_format_mismatch,
        vmdk_create_types=frozenset(group.vmdk_create_types),
        vhd_size_rule=group.vhd_size_rule,
        allowed_formats=frozenset(group.allowed_formats),
        max_expanded_size=group.max_expanded_size,
        max_compression_ratio=group.max_compression_ratio,
        ratio_exempt_size=group.compression_ratio_exempt_size)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Options for oslo-config-generator (entry point oslo.config.opts)."""
    return [(GROUP, OPTS)]
