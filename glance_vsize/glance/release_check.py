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

"""``glance-vsize-status``'s release check: the installed Glance is a
release glance_vsize supports, and nothing this release's Glance itself
breaks is enabled (the table: :mod:`glance_vsize.glance.releases`).
"""

from glance_vsize.glance import releases
from glance_vsize.glance.wiring import Finding
from glance_vsize.glance.wiring import GlanceConfig
from glance_vsize.glance.wiring import Level


def check_release(glance: GlanceConfig,
                  version: str | None) -> list[Finding]:
    """The installed Glance (``version``) is a supported release, and no
    import plugin that this release's Glance itself breaks is enabled
    (the table: glance_vsize.glance.releases).
    """
    supported = ', '.join(r.label for r in releases.RELEASES)
    if version is None:
        return [Finding(Level.WARNING, glance.config_dir, None,
                        'glance is not installed where this check runs: '
                        'the release checks are skipped (supported: %s)'
                        % supported)]
    release = releases.by_glance_version(version)
    if release is None:
        return [Finding(Level.WARNING, glance.config_dir, None,
                        'Glance %s is not a release glance_vsize is tested '
                        'with (supported: %s)' % (version, supported))]
    methods = glance.value(None, 'enabled_import_methods')
    plugins = glance.value('image_import_opts', 'image_import_plugins')
    group, name = 'image_import_opts', 'image_import_plugins'
    findings = []
    for broken in release.broken_plugins:
        running = [m for m in methods if m in broken.methods]
        if broken.name in plugins and running:
            path = glance.where(group, name) or glance.import_conf
            findings.append(Finding(
                Level.WARNING, path, group,
                'Glance %s (%s) lists %s, broken in this release with or '
                'without glance_vsize for %s: %s' % (
                    version, release.name, broken.name, ', '.join(running),
                    broken.why),
                'in [%s] of %s, replace the image_import_plugins line with'
                % (group, path), ('image_import_plugins = [%s]' % ', '.join(
                    p for p in plugins if p != broken.name),)))
    return findings or [Finding(Level.OK, glance.config_dir, None,
                                'Glance %s: %s' % (version, release.label))]
