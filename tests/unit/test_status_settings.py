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


"""``glance-vsize-status upgrade check`` on the import plugin's place,
each Glance setting glance_vsize relies on, glance_vsize's own options,
and the Glance release (tests/unit/status_cli.py makes the directories).
"""

import pytest

from glance_vsize.glance import plugin_wiring
from glance_vsize.glance import release_check
from glance_vsize.glance import releases
from glance_vsize.glance import wiring
from tests.unit import status_cli
from tests.unit.status_cli import assert_edit
from tests.unit.status_cli import checks
from tests.unit.status_cli import config_dir
from tests.unit.status_cli import GOOD_API
from tests.unit.status_cli import OPTIONS
from tests.unit.status_cli import OWN_DRIVER
from tests.unit.status_cli import PLUGIN
from tests.unit.status_cli import setting_lines
from tests.unit.status_cli import status

pytestmark = status_cli.NEEDS_WHEEL


@pytest.mark.parametrize('plugins, fixed, why', [
    ('image_conversion, glance_vsize',
     'glance_vsize, image_conversion', 'qemu-img convert'),
    ('glance_vsize, image_decompression',
     'image_decompression, glance_vsize', 'runs before image_decompression'),
    ('image_decompression, image_conversion, glance_vsize',
     'image_decompression, glance_vsize, image_conversion',
     'qemu-img convert'),
])
def test_plugin_misordered_fails(tmp_path, plugins, fixed, why):
    etc = config_dir(tmp_path, plugins=plugins)
    proc = status(etc)
    assert proc.returncode == 2
    code, details = checks(proc)[PLUGIN]
    assert code == 2
    assert why in details
    assert_edit(details, etc / 'glance-image-import.conf',
                'image_import_opts', 'image_import_plugins = [%s]' % fixed)


def test_plugin_missing_warns_when_imports_run_plugins(tmp_path):
    etc = config_dir(tmp_path, plugins='image_conversion')
    proc = status(etc)
    assert proc.returncode == 1
    code, details = checks(proc)[PLUGIN]
    assert code == 1
    assert 'not inspected' in details
    assert_edit(details, etc / 'glance-image-import.conf',
                'image_import_opts',
                'image_import_plugins = [glance_vsize, image_conversion]')


def test_plugin_not_needed_without_staging_import_methods(tmp_path):
    etc = config_dir(tmp_path, api=GOOD_API + (
        ('DEFAULT', 'enabled_import_methods = [copy-image]'),),
        plugins=None)
    proc = status(etc)
    assert proc.returncode == 0, proc.stdout
    assert 'no enabled import method runs plugins' in checks(proc)[PLUGIN][1]


def setting_variants():
    """Each row of wiring.SETTINGS set wrong, and left unset where Glance's
    default is wrong.
    """
    for setting in wiring.SETTINGS:
        label = '%s.%s' % (setting.group, setting.opt.name)
        yield pytest.param(setting, 'set', id=label + '-set')
        if not setting.expect.ok(setting.opt.default):
            yield pytest.param(setting, 'unset', id=label + '-unset')


@pytest.mark.parametrize('setting, variant', list(setting_variants()))
def test_glance_setting_wrong(tmp_path, setting, variant):
    """Set wrong: the edit replaces the lines (keeping the deployer's own
    notification driver); unset: the edit adds them.
    """
    others = [line for s in wiring.SETTINGS if s is not setting
              for line in setting_lines(s)]
    api = [GOOD_API[0], *others]
    if variant == 'set':
        api += [OWN_DRIVER, *setting_lines(setting, right=False)]
    etc = config_dir(tmp_path, api=api)
    proc = status(etc)
    assert proc.returncode == setting.level
    found = checks(proc)
    name = 'Glance setting [%s] %s' % (setting.group, setting.opt.name)
    assert [check for check, (code, _) in found.items() if code] == [name]
    code, details = found[name]
    assert code == setting.level
    expect, option = setting.expect, setting.opt.name
    if isinstance(expect, wiring.Equals):
        lines = ['%s = %s' % (option, expect.value)]
    elif isinstance(expect, wiring.Includes):
        lines = ['%s = %s' % (option, expect.item)]
    else:
        lines = [OWN_DRIVER[1]]
    if variant == 'set' and (setting.group, option) == (OWN_DRIVER[0],
                                                        'driver'):
        lines.append(OWN_DRIVER[1])  # the deployer's driver is kept
    assert_edit(details, etc / 'glance-api.conf', setting.group, *lines)
    action = 'add' if variant == 'unset' else 'replace the %s lines with' \
        % option
    assert 'Edit: in [%s] of %s, %s:' % (
        setting.group, etc / 'glance-api.conf', action) in details


def test_invalid_option_fails_naming_its_file(tmp_path):
    etc = config_dir(tmp_path, import_extra=[
        ('glance_vsize', 'vhd_size_rule = qemu9')])
    proc = status(etc)
    assert proc.returncode == 2
    code, details = checks(proc)[OPTIONS]
    assert code == 2
    assert details.startswith('%s [glance_vsize]: invalid value of '
                              'vhd_size_rule' % (etc /
                                                 'glance-image-import.conf'))
    assert 'qemu9' in details


def test_unknown_nonfatal_check_fails_naming_it(tmp_path):
    etc = config_dir(tmp_path, api=GOOD_API + (
        ('glance_vsize', 'nonfatal_checks = backing_fle'),))
    proc = status(etc)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert 'Traceback' not in proc.stdout + proc.stderr
    code, details = checks(proc)[OPTIONS]
    assert code == 2
    assert details.startswith('%s [glance_vsize]:' % (etc / 'glance-api.conf'))
    assert 'backing_fle' in details and 'backing_file' in details


def test_unknown_allowed_format_warns(tmp_path):
    etc = config_dir(tmp_path, api=GOOD_API + (
        ('glance_vsize', 'allowed_formats = qcow2,qcow,raw'),))
    proc = status(etc)
    assert proc.returncode == 1
    code, details = checks(proc)[OPTIONS]
    assert code == 1
    assert_edit(details, etc / 'glance-api.conf', 'glance_vsize',
                'allowed_formats = qcow2,raw')


@pytest.mark.parametrize('plugins, expected', [
    ([], ['glance_vsize']),
    (['image_conversion', 'glance_vsize'],
     ['glance_vsize', 'image_conversion']),
    (['no_op', 'image_decompression', 'inject_image_metadata'],
     ['no_op', 'image_decompression', 'inject_image_metadata',
      'glance_vsize']),
    (['image_decompression', 'no_op', 'image_conversion'],
     ['image_decompression', 'no_op', 'glance_vsize', 'image_conversion']),
])
def test_plugin_order(plugins, expected):
    assert plugin_wiring.plugin_order(plugins) == expected


@pytest.mark.parametrize('release', releases.RELEASES,
                         ids=[r.name for r in releases.RELEASES])
def test_release_check_names_plugins_the_release_breaks(tmp_path, release):
    """On the installed wheel's files, as each release's Glance: a plugin
    that release's Glance breaks (Glance 30/31's image_decompression) is a
    warning with the edit that leaves it out; other releases are fine.
    """
    etc = config_dir(tmp_path, plugins='image_decompression, glance_vsize')
    version = '%d.0.0' % release.glance
    found = release_check.check_release(wiring.GlanceConfig(str(etc)),
                                        version)
    if not release.broken_plugins:
        assert [f.level for f in found] == [wiring.Level.OK], found
        assert release.label in found[0].problem
        return
    assert [f.level for f in found] == [wiring.Level.WARNING], found
    details = found[0].render()
    assert 'image_decompression' in details and 'fixed in Glance 32' in \
        details, details
    assert_edit(details, etc / 'glance-image-import.conf',
                'image_import_opts', 'image_import_plugins = [glance_vsize]')


def test_release_check_warns_on_an_untested_glance(tmp_path):
    etc = config_dir(tmp_path)
    found = release_check.check_release(wiring.GlanceConfig(str(etc)),
                                        '29.1.0')
    assert [f.level for f in found] == [wiring.Level.WARNING]
    assert 'Glance 29.1.0 is not a release' in found[0].problem
