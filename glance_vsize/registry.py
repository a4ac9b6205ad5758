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

"""Which format inspectors exist: the built-in ones and plugins.

Inspectors are looked up with stevedore in the ``glance_vsize.inspectors``
entry point group, where this package registers its own.  When the package
is used from a source tree without its entry points, the built-in list
below stands in, so the engine never depends on installation details.
"""

import importlib
import logging

LOG = logging.getLogger(__name__)

NAMESPACE = 'glance_vsize.inspectors'

#: Entry point name -> "module:Class" of the inspectors this package ships.
BUILTIN = {
    'qcow2': 'glance_vsize.formats.qcow2:QcowInspector',
    'qed': 'glance_vsize.formats.qed:QedInspector',
    'vmdk': 'glance_vsize.formats.vmdk:VmdkInspector',
    'vhd': 'glance_vsize.formats.vhd:VhdInspector',
    'vhdx': 'glance_vsize.formats.vhdx:VhdxInspector',
    'vdi': 'glance_vsize.formats.vdi:VdiInspector',
    'ploop': 'glance_vsize.formats.ploop:PloopInspector',
    'luks': 'glance_vsize.formats.luks:LuksInspector',
    'iso': 'glance_vsize.formats.iso:IsoInspector',
    'gpt': 'glance_vsize.formats.gpt:GptInspector',
    'mbr': 'glance_vsize.formats.gpt:MbrInspector',
}

_CACHE = None


def _load(target):
    module, _, attr = target.partition(':')
    return getattr(importlib.import_module(module), attr)


def _plugins():
    try:
        from stevedore import extension
    except ImportError:  # pragma: no cover - stevedore is a requirement
        return {}
    manager = extension.ExtensionManager(
        NAMESPACE, invoke_on_load=False,
        on_load_failure_callback=lambda mgr, ep, exc: LOG.error(
            'Could not load inspector %s: %s', ep.name, exc))
    return {ext.name: ext.plugin for ext in manager}


def inspectors():
    """One instance of every known inspector, built-ins first."""
    global _CACHE
    if _CACHE is None:
        classes = {}
        for name, target in BUILTIN.items():
            try:
                classes[name] = _load(target)
            except (ImportError, AttributeError):
                LOG.debug('Built-in inspector %s is not available', name)
        classes.update(_plugins())
        _CACHE = tuple(cls() for cls in classes.values())
    return _CACHE


def disk_formats():
    """Every disk_format name the engine can check content against."""
    from glance_vsize import inspection
    return sorted(inspection.GLANCE_DISK_FORMATS | {
        i.name for i in inspectors() if not i.content})
