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


"""Put :mod:`glance_vsize.glance.format_inspector` in place in Glance.

Glance's modules import oslo.utils' inspector as a module global::

    from oslo_utils.imageutils import format_inspector

and look it up on every call.  When the paste filter or the import plugin
loads, :func:`install` rebinds that global, in Glance's process only, in
each module of :data:`TARGETS` that this Glance has; no file is changed on
disk and oslo.utils itself is left alone (Nova or Cinder in the same
interpreter, if any, keep it).

Where Glance uses it (``git grep format_inspector`` on each branch):

=====================================================  ==================
Module                                                 Releases
=====================================================  ==================
glance.location (ImageProxy.set_data: create-image,    2025.1, 2025.2,
every import's store upload, copy-image)               2026.1, 2026.2
glance.async_.flows.plugins.image_conversion           2025.1, 2025.2,
(detect_file_format before qemu-img convert)           2026.1, 2026.2
glance.async_.flows.parallel_api_image_import          2026.2 (Glance 33)
(InspectWrapper in the multi-store parallel import)
=====================================================  ==================
"""

from __future__ import annotations

import importlib
import logging
import threading

from glance_vsize.glance import format_inspector
from glance_vsize.glance import releases

LOG = logging.getLogger(__name__)

#: Glance modules holding ``format_inspector``, and whether every supported
#: release has them (a missing optional one is skipped quietly); the
#: per-release table is glance_vsize.glance.releases.
TARGETS: tuple[tuple[str, bool], ...] = tuple(
    (name, True) for name in releases.INSPECTOR_MODULES) + tuple(
    (name, False) for name in dict.fromkeys(
        m for r in releases.RELEASES for m in r.more_inspector_modules))

_LOCK = threading.Lock()
_INSTALLED: list[str] = []


def install() -> list[str]:
    """Rebind ``format_inspector`` in every Glance module of
    :data:`TARGETS` present; idempotent.  Returns the modules done.
    """
    with _LOCK:
        if _INSTALLED:
            return list(_INSTALLED)
        done = []
        for name, required in TARGETS:
            try:
                module = importlib.import_module(name)
            except ImportError as exc:
                if required:
                    LOG.error('glance_vsize: cannot import %s (%s): Glance '
                              'keeps oslo.utils\' inspector there', name, exc)
                continue
            if not hasattr(module, 'format_inspector'):
                LOG.error('glance_vsize: %s has no format_inspector; this '
                          'Glance is not one glance_vsize knows', name)
                continue
            setattr(module, 'format_inspector', format_inspector)
            done.append(name)
        _INSTALLED.extend(done)
        LOG.info('glance_vsize answers format inspection in %s',
                 ', '.join(done) or 'no Glance module')
        return list(done)


def installed(module: str = 'glance.location') -> bool:
    """Whether ``module`` (default: where set_data decides) answers with
    glance_vsize's verdict.
    """
    try:
        return importlib.import_module(module).format_inspector \
            is format_inspector
    except Exception:
        return False
