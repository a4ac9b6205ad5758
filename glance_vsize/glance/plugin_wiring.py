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

"""Where glance_vsize's import plugin belongs in glance-image-import.conf:
listed when an import method runs plugins, once, after the plugins that
must run before it and before those that must run after it.

Like :mod:`glance_vsize.glance.wiring`, this module does not import Glance.
"""

from glance_vsize.glance.wiring import Finding
from glance_vsize.glance.wiring import GlanceConfig
from glance_vsize.glance.wiring import Level

IMPORT_PLUGIN = 'glance_vsize'
PLUGIN_ENTRY_POINTS = 'glance.image_import.plugins'
#: Plugins that must run before glance_vsize: image_decompression replaces
#: zip and LHA archives by the image inside, which glance_vsize inspects.
RUN_BEFORE = ('image_decompression',)
#: Plugins that must run after it: image_conversion runs qemu-img convert
#: on the staged data, so an unsafe image must be refused first.
RUN_AFTER = ('image_conversion',)
#: Import methods whose flow runs the plugins (all but copy-image).
PLUGIN_METHODS = ('glance-direct', 'web-download', 'glance-download')


def plugin_order(plugins: list[str]) -> list[str]:
    """``plugins`` with glance_vsize where it must run: right after the
    RUN_BEFORE plugins, before the RUN_AFTER ones.
    """
    others = [p for p in plugins if p != IMPORT_PLUGIN]
    pos = len(others)
    after = [i for i, p in enumerate(others) if p in RUN_AFTER]
    before = [i for i, p in enumerate(others) if p in RUN_BEFORE]
    if after:
        pos = min(after)
    if before and max(before) >= pos:
        pos = max(before) + 1
    return others[:pos] + [IMPORT_PLUGIN] + others[pos:]


def check_import_plugin(glance: GlanceConfig,
                        registered: bool = True) -> list[Finding]:
    """The import plugin is listed when an import method runs plugins,
    once, after RUN_BEFORE and before RUN_AFTER.  ``registered``: whether
    its entry point is installed where this runs.
    """
    methods = glance.value(None, 'enabled_import_methods')
    plugins = glance.value('image_import_opts', 'image_import_plugins')
    group, name = 'image_import_opts', 'image_import_plugins'
    path = glance.where(group, name) or glance.import_conf
    running = [m for m in methods if m in PLUGIN_METHODS]
    listed = 'image_import_plugins = [%s]' % ', '.join(plugins)
    fixed = ('image_import_plugins = [%s]'
             % ', '.join(plugin_order(plugins)),)
    action = 'in [%s] of %s, %s' % (
        group, path, 'replace the image_import_plugins line with'
        if glance.where(group, name) else 'add')
    if not running:
        return [Finding(Level.OK, glance.where('DEFAULT', 'enabled_import_'
                                               'methods') or glance.api_conf,
                        'DEFAULT', 'no enabled import method runs plugins '
                        '(enabled_import_methods = [%s])'
                        % ', '.join(methods))]
    if IMPORT_PLUGIN not in plugins:
        return [Finding(Level.WARNING, path, group,
                        '%s lacks %s: images imported with %s are not '
                        'inspected' % (listed, IMPORT_PLUGIN,
                                       ', '.join(running)), action, fixed)]
    findings = []
    if not registered:
        findings.append(Finding(
            Level.FAILURE, path, group,
            '%s lists %s, but no %s entry point %s is installed: Glance '
            'skips it ("Could not load")' % (listed, IMPORT_PLUGIN,
                                             PLUGIN_ENTRY_POINTS,
                                             IMPORT_PLUGIN)))
    index = plugins.index(IMPORT_PLUGIN)
    for other in RUN_BEFORE:
        if other in plugins[index:]:
            findings.append(Finding(
                Level.FAILURE, path, group,
                '%s: %s runs before %s, so zip and LHA archives are refused '
                'instead of inspected after extraction'
                % (listed, IMPORT_PLUGIN, other), action, fixed))
    for other in RUN_AFTER:
        if other in plugins[:index]:
            findings.append(Finding(
                Level.FAILURE, path, group,
                '%s: %s runs qemu-img convert on the staged data before %s '
                'inspects it: an unsafe image must be refused first'
                % (listed, other, IMPORT_PLUGIN), action, fixed))
    if plugins.count(IMPORT_PLUGIN) > 1:
        findings.append(Finding(
            Level.WARNING, path, group, '%s lists %s twice: every import is '
            'inspected twice' % (listed, IMPORT_PLUGIN), action, fixed))
    return findings or [Finding(Level.OK, path, group, listed)]
