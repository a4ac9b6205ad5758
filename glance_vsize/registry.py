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

"""Which format inspectors exist: every one registered as an entry point.

Inspectors are looked up with stevedore in the ``glance_vsize.inspectors``
entry point group, where this package registers its own (setup.cfg) and
where plugins add theirs.  They run in the order of their
:attr:`~glance_vsize.formats.base.FormatInspector.order`, then by name.
"""

# Annotations stay strings: stevedore's ExtensionManager is generic
# (subscriptable) from stevedore 5.7 (2026.1) only; 2025.1 and 2025.2
# pin 5.4.1 and 5.5.0.
from __future__ import annotations

from importlib import metadata
import logging
from typing import Any

from stevedore import extension

from glance_vsize.formats import base
from glance_vsize import inspection

LOG = logging.getLogger(__name__)

NAMESPACE = 'glance_vsize.inspectors'

_CACHE: tuple[base.FormatInspector, ...] | None = None


def _failed(manager: extension.ExtensionManager[Any],
            entry_point: metadata.EntryPoint, exc: BaseException) -> None:
    LOG.error('Could not load inspector %s: %s', entry_point.name, exc)


def inspectors() -> tuple[base.FormatInspector, ...]:
    """One instance of every registered inspector, in order."""
    global _CACHE
    if _CACHE is None:
        manager: extension.ExtensionManager[Any] = extension.ExtensionManager(
            NAMESPACE, invoke_on_load=False,
            on_load_failure_callback=_failed)
        classes: list[type[base.FormatInspector]] = sorted(
            (ext.plugin for ext in manager),
            key=lambda cls: (cls.order, cls.name))
        _CACHE = tuple(cls() for cls in classes)
    return _CACHE


def disk_formats() -> list[str]:
    """Every disk_format name the engine can check content against."""
    return sorted(inspection.GLANCE_DISK_FORMATS | {
        i.name for i in inspectors() if not i.content})
