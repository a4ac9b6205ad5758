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

"""The OVF descriptor: which files an OVF package holds, and its disks.

DMTF DSP0243 (Open Virtualization Format Specification, 1.1 to 2.1):

* ``Envelope/References/File`` (DSP0243 7.1 "File references"): one per
  file of the package, ``ovf:id`` and ``ovf:href``; ``ovf:href`` is a URI
  reference (RFC 3986), relative to the descriptor for a file of the
  package.  ``ovf:compression="gzip"`` says the file is stored gzip
  compressed; ``ovf:chunkSize`` that it is split into several files.
* ``Envelope/DiskSection/Disk`` (DSP0243 9.1 "DiskSection"): the virtual
  disks, ``ovf:diskId``, ``ovf:fileRef`` (the ``ovf:id`` of the file
  holding the disk image; none for a blank disk to create), ``ovf:capacity``
  in ``ovf:capacityAllocationUnits`` (DSP0004 programmatic units, e.g.
  ``byte * 2^30``) and ``ovf:format``.

Elements and attributes are matched by local name, so that the OVF 1.x
and 2.x namespaces (and descriptors written without the ``ovf:`` prefix)
read alike.

The XML is parsed with expat directly, with the caution of defusedxml: a
DOCTYPE, an entity declaration or an external entity reference is
refused (``ova_descriptor``) before any entity is expanded, so neither an
entity bomb nor an external entity can be used; the descriptor itself is
at most :data:`MAX_DESCRIPTOR` bytes.  What the parser accepts is built
into a :mod:`xml.etree.ElementTree` tree.
"""

import posixpath
import re
from typing import Any
from typing import NamedTuple
import urllib.parse
from xml.etree import ElementTree
from xml.parsers import expat

from glance_vsize.containers import base

#: The largest descriptor read (VMware and VirtualBox write a few KiB).
MAX_DESCRIPTOR = 1 << 20


class File(NamedTuple):
    id: str
    href: str
    member: str | None
    compression: str | None
    chunked: bool


File.__doc__ = ('A ``References/File``: ``member`` is the archive member '
                'its ``href`` names (``None`` when it names none).')


class Disk(NamedTuple):
    disk_id: str | None
    file_ref: str | None
    capacity: int | None
    format: str | None


class Descriptor(NamedTuple):
    files: dict[str, File]
    disks: list[Disk]
    problems: list[tuple[str, str]]


Descriptor.__doc__ = ('``files``: ``ovf:id`` -> :class:`File`, in document '
                      'order; ``disks``: :class:`Disk` list in document '
                      'order; ``problems``: ``(check, reason)`` list.')

_UNITS = re.compile(r'^\s*byte\s*(?:\*\s*(\d+)\s*\^\s*(\d+)\s*)?$')


def _local(name: str) -> str:
    return name.rsplit('}', 1)[-1]


def _attr(elem: ElementTree.Element, name: str) -> str | None:
    for key, value in elem.attrib.items():
        if _local(key) == name:
            return value
    return None


def parse_xml(data: bytes | bytearray) -> ElementTree.Element:
    """Parse ``data`` with expat into an ElementTree root, refusing DTDs
    and entities.  Raises :class:`~base.ContainerError`.
    """
    builder = ElementTree.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator='}')

    def qname(name: str) -> str:
        return '{' + name if '}' in name else name

    def refuse(what: str) -> Any:
        def handler(*args: Any) -> None:
            raise base.ContainerError(
                'ova_descriptor', 'the OVF descriptor has %s (line %d); '
                'DTDs and entities are refused' % (what,
                                                   parser.CurrentLineNumber))
        return handler

    parser.StartElementHandler = lambda tag, attrs: builder.start(
        qname(tag), {qname(k): v for k, v in attrs.items()})
    parser.EndElementHandler = lambda tag: builder.end(qname(tag))
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = refuse('a DOCTYPE declaration')
    parser.EntityDeclHandler = refuse('an entity declaration')
    parser.UnparsedEntityDeclHandler = refuse('an unparsed entity')
    parser.ExternalEntityRefHandler = refuse('an external entity reference')
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True
    try:
        parser.Parse(bytes(data), True)
        return builder.close()
    except expat.ExpatError as exc:
        raise base.ContainerError(
            'ova_descriptor', 'the OVF descriptor is not well-formed XML: '
            '%s' % exc) from None


def member_name(href: str) -> str | None:
    """The archive member an ``ovf:href`` names, or ``None`` when it names
    something outside the package: a URL, an absolute path, a path that
    climbs with ``..``.
    """
    parts = urllib.parse.urlsplit(href)
    if parts.scheme or parts.netloc or parts.query or parts.fragment:
        return None
    path = urllib.parse.unquote(parts.path)
    if not path or path.startswith(('/', '\\')) or '\0' in path or \
            '..' in re.split(r'[/\\]', path):
        return None
    path = posixpath.normpath(path)
    while path.startswith('./'):
        path = path[2:]
    return path


def capacity_bytes(capacity: str | None, units: str | None) -> int | None:
    """``ovf:capacity`` in bytes, or ``None`` when it is not a plain
    number (it may reference a property) or the unit is not bytes.
    """
    if capacity is None or not capacity.strip().isdigit():
        return None
    match = _UNITS.match(units or 'byte')
    if match is None:
        return None
    factor = 1
    if match.group(1):
        factor = int(match.group(1)) ** int(match.group(2))
    return int(capacity) * factor


def parse(data: bytes | bytearray) -> Descriptor:
    """Parse a descriptor.  Raises :class:`~base.ContainerError`
    ``ova_descriptor`` when it cannot be used at all; reports files it
    names outside the package as ``ova_reference`` problems.
    """
    if len(data) > MAX_DESCRIPTOR:
        raise base.ContainerError(
            'ova_descriptor', 'the OVF descriptor is more than %d bytes'
            % MAX_DESCRIPTOR)
    root = parse_xml(data)
    if _local(root.tag) != 'Envelope':
        raise base.ContainerError(
            'ova_descriptor', 'the OVF descriptor\'s root element is %s, '
            'not Envelope' % _local(root.tag))
    files: dict[str, File] = {}
    disks: list[Disk] = []
    problems: list[tuple[str, str]] = []
    for elem in root.iter():
        tag = _local(elem.tag)
        if tag == 'File':
            file_id, href = _attr(elem, 'id'), _attr(elem, 'href')
            if file_id is None or href is None:
                raise base.ContainerError(
                    'ova_descriptor', 'a References/File element has no '
                    'ovf:id or no ovf:href')
            member = member_name(href)
            if member is None:
                problems.append((
                    'ova_reference', 'file %r has ovf:href %r, which names '
                    'something outside the archive' % (file_id, href)))
            files[file_id] = File(file_id, href, member,
                                  _attr(elem, 'compression'),
                                  _attr(elem, 'chunkSize') is not None)
        elif tag == 'Disk':
            disks.append(Disk(
                _attr(elem, 'diskId'), _attr(elem, 'fileRef'),
                capacity_bytes(_attr(elem, 'capacity'),
                               _attr(elem, 'capacityAllocationUnits')),
                _attr(elem, 'format')))
    for disk in disks:
        if disk.file_ref is not None and disk.file_ref not in files:
            problems.append((
                'ova_reference', 'disk %r has ovf:fileRef %r, which no '
                'References/File has' % (disk.disk_id, disk.file_ref)))
    return Descriptor(files, disks, problems)
