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

"""The names of the checks the engine can fail, and what each means.

A check name is what an operator sees in a refusal (``backing_file:
backing file 'disk.vhd' named at offset 528``) and what ``[glance_vsize]
nonfatal_checks`` accepts.  Each format inspector and container layer
declares the checks it can fail in its ``CHECKS`` class attribute (name ->
one-line meaning); the arbitration in :mod:`glance_vsize.engine` and
:mod:`glance_vsize.containers.base` adds :data:`ENGINE_CHECKS`.  A test
proves that every check the code can fail is declared.
"""

from collections.abc import Iterable
from collections.abc import Mapping

from glance_vsize import containers
from glance_vsize import registry

#: The checks of the engine's arbitration, common to every format.
ENGINE_CHECKS: Mapping[str, str] = {
    'multiple_formats':
        'the content matches two image formats, or an image format and a '
        'content signature (ISO, GPT, MBR) in its header: readers disagree '
        'on what the bytes mean',
    'format_mismatch':
        'the content is not of the declared disk_format (also governed by '
        'refuse_format_mismatch)',
    'unsupported_format':
        'the content is of a format outside allowed_formats',
    'virtual_size':
        'the image, or the container, gives no virtual size',
    'region_bounds':
        'an inspector asked for a region beyond the engine\'s bounds (a '
        'lying header)',
    'stream_order':
        'the image is laid out in an order that one pass cannot inspect',
    'inspector_error':
        'an inspector failed unexpectedly (a bug, logged with a traceback)',
}


def catalogue() -> dict[str, Mapping[str, str]]:
    """Who declares which checks: ``engine``, then each registered format
    inspector and each container layer, by name.
    """
    found: dict[str, Mapping[str, str]] = {'engine': ENGINE_CHECKS}
    for inspector in registry.inspectors():
        found[inspector.name] = inspector.CHECKS
    for name, cls in sorted(containers.INSPECTORS.items()):
        found[name] = cls.CHECKS
    return found


def names() -> list[str]:
    """Every declared check name, sorted."""
    return sorted({name for checks in catalogue().values()
                   for name in checks})


def validate(checks: Iterable[str], option: str = 'nonfatal_checks') -> None:
    """Refuse check names that no inspector declares.

    :raises ValueError: naming the unknown checks and the valid ones.
    """
    valid = names()
    unknown = sorted(set(checks) - set(valid))
    if unknown:
        raise ValueError('%s names unknown check%s %s; the checks are: %s'
                         % (option, 's' if len(unknown) > 1 else '',
                            ', '.join(unknown), ', '.join(valid)))
