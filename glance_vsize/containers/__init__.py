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

"""Non-bare containers: the disk image inside an OVA or a compressed file.

A container inspector has the push interface of
:class:`~glance_vsize.push.StreamInspector` (``feed``, ``finish``,
``refusal``, ``result``, ``position``) and returns the same
:class:`~glance_vsize.inspection.Inspection`, whose format and virtual
size are the inner image's.  Glance's bare-like container formats (see
:data:`~glance_vsize.inspection.BARE_CONTAINERS`) need none: their
payload is the image.
"""

from glance_vsize.containers import base
from glance_vsize.containers import compressed
from glance_vsize.containers import ova
from glance_vsize import inspection
from glance_vsize import push

#: Glance container_format -> its inspector class.
INSPECTORS: dict[str, type[base.ContainerInspector]] = {
    'ova': ova.OvaInspector,
    'compressed': compressed.CompressedInspector,
}

#: Every container_format the engine reads.
CONTAINER_FORMATS = tuple(sorted(
    {name for name in inspection.BARE_CONTAINERS if name is not None}
    | set(INSPECTORS)))


def stream_inspector(container_format: str | None,
                     disk_format: str | None = None,
                     policy: inspection.Policy | None = None,
                     ) -> push.PushInspector:
    """The push inspector for ``container_format``: a
    :class:`~glance_vsize.push.StreamInspector` for a bare-like one.

    :raises ValueError: for a container format the engine does not read
        (``ovf``, a descriptor alone; ``docker``, a tar of layers).
    """
    if container_format is None or \
            container_format in inspection.BARE_CONTAINERS:
        return push.StreamInspector(disk_format, policy)
    cls = INSPECTORS.get(container_format)
    if cls is None:
        raise ValueError('container_format %r is not inspected (known: %s)'
                         % (container_format, ', '.join(CONTAINER_FORMATS)))
    return cls(disk_format, policy)
