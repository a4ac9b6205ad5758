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


"""``glance-vsize-status upgrade check``, run as a deployer runs it (the
installed console script, in its own process) on configuration directories
made from the files the glance wheel ships (``<venv>/etc/glance``), with
the documented edits and with each wrong variant.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from glance_vsize.glance import release_check
from glance_vsize.glance import releases
from glance_vsize.glance import wiring

WHEEL_ETC = pathlib.Path(sys.prefix) / 'etc' / 'glance'
SCRIPT = pathlib.Path(sys.executable).parent / 'glance-vsize-status'
KEYSTONE_KEYS = ('keystone', 'keystone+caching', 'keystone+cachemanagement')
FILTER_SECTION = ('\n[filter:vsize]\npaste.filter_factory = '
                  'glance_vsize.glance.middleware:filter_factory\n')

PASTE = 'Paste filter after context'
LOADS = 'Paste file loads'
PLUGIN = 'Import plugin glance_vsize'
FORMAT_MATCH = 'Glance setting [image_format] require_image_format_match'
DRIVER = 'Glance setting [oslo_messaging_notifications] driver'
OPTIONS = 'Options [glance_vsize]'
RELEASE = 'Glance release'

#: The installed Glance (each supported release's venv runs these tests:
#: tools/run-release-tests) and the plugins its documented wiring lists:
#: none that this release's Glance itself breaks.
GLANCE_VERSION = releases.installed_glance() or ''
INSTALLED = releases.by_glance_version(GLANCE_VERSION)
BROKEN = {b.name for b in INSTALLED.broken_plugins} if INSTALLED else set()
PLUGINS = ', '.join(p for p in ('image_decompression', 'glance_vsize',
                                'image_conversion') if p not in BROKEN)

pytestmark = pytest.mark.skipif(
    not (WHEEL_ETC / 'glance-api-paste.ini').is_file(),
    reason='the glance wheel is not installed in %s' % sys.prefix)


def wheel(name):
    return (WHEEL_ETC / name).read_text()


def paste(keys=KEYSTONE_KEYS, before=(), section=True, extra=''):
    """The wheel's glance-api-paste.ini with ` vsize` right after `context`
    in the ``keys`` pipelines of [composite:api] (before it in ``before``),
    and [filter:vsize] when ``section``.
    """
    text = wheel('glance-api-paste.ini')
    for key in keys:
        text, n = re.subn(r'(?m)^(%s = .* context) ' % re.escape(key),
                          r'\1 vsize ', text)
        assert n == 1, key
    for key in before:
        text, n = re.subn(r'(?m)^(%s = .*) authtoken context '
                          % re.escape(key), r'\1 vsize authtoken context ',
                          text)
        assert n == 1, key
    return text + (FILTER_SECTION if section else '') + extra


def set_options(text, options):
    """``text`` (an oslo.config file) with ``key = value`` lines added
    right under their ``[section]`` header (a new section at the end when
    there is none).
    """
    for section, line in options:
        header = '[%s]\n' % section
        if header in text:
            text = text.replace(header, header + line + '\n', 1)
        else:
            text += '\n' + header + line + '\n'
    return text


def setting_lines(setting, right=True):
    """The lines that satisfy (or break) one row of wiring.SETTINGS; an
    empty list leaves the option at Glance's default.
    """
    expect, name = setting.expect, setting.opt.name
    if isinstance(expect, wiring.Equals):
        assert isinstance(expect.value, bool), expect
        value = expect.value if right else not expect.value
        return [(setting.group, '%s = %s' % (name, value))]
    if isinstance(expect, wiring.Includes):
        return [(setting.group, '%s = %s' % (name, expect.item))] * right
    assert isinstance(expect, wiring.Excludes), expect
    return [(setting.group, '%s = %s' % (name, expect.item))] * (not right)


#: A deployer's own notification driver, which the edits must keep.
OWN_DRIVER = ('oslo_messaging_notifications', 'driver = messagingv2')
GOOD_API = (('paste_deploy', 'flavor = keystone'), OWN_DRIVER) + tuple(
    line for s in wiring.SETTINGS for line in setting_lines(s))


def config_dir(tmp_path, paste_text=None, api=GOOD_API,
               plugins=PLUGINS,
               import_extra=()):
    etc = tmp_path / 'etc'
    etc.mkdir()
    (etc / 'glance-api-paste.ini').write_text(
        paste() if paste_text is None else paste_text)
    (etc / 'glance-api.conf').write_text(
        set_options(wheel('glance-api.conf'), api))
    if plugins is not None:
        (etc / 'glance-image-import.conf').write_text(set_options('', [
            ('image_import_opts', 'image_import_plugins = [%s]' % plugins),
            *import_extra]))
    return etc


def status(etc, *args, env=None):
    assert SCRIPT.is_file(), 'console script not installed: %s' % SCRIPT
    args = args or ('upgrade', 'check', '--json', '--config-dir', str(etc))
    return subprocess.run([str(SCRIPT), *args], capture_output=True,
                          text=True, env=env, timeout=300)


def checks(proc):
    """{check name: (code, details)} of a --json run."""
    assert proc.stdout, proc.stderr
    return {c['check']: (c['result'], c['details'] or '')
            for c in json.loads(proc.stdout)['checks']}


def assert_edit(details, path, section, *lines):
    """The details name the file, the section and each line to write."""
    assert '%s [%s]' % (path, section) in details, details
    assert 'Edit: ' in details, details
    for line in lines:
        assert '\n    %s\n' % line in details + '\n', (line, details)


def test_documented_wiring_succeeds(tmp_path):
    etc = config_dir(tmp_path)
    proc = status(etc)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = checks(proc)
    assert set(found) == {RELEASE, PASTE, LOADS, PLUGIN, FORMAT_MATCH,
                          DRIVER, OPTIONS}
    assert all(code == 0 for code, _ in found.values()), found
    assert INSTALLED is not None, GLANCE_VERSION
    assert 'Glance %s: %s' % (GLANCE_VERSION, INSTALLED.label) in \
        found[RELEASE][1]
    assert 'keystone = cors http_proxy_to_wsgi versionnegotiation ' \
        'osprofiler authtoken context vsize rootapp' in found[LOADS][1]


@pytest.mark.parametrize('args', [
    ('upgrade', 'check', '--config-dir', '{etc}'),
    ('--config-dir', '{etc}', 'upgrade', 'check'),
    ('--config-dir={etc}', 'upgrade', 'check'),
    ('upgrade', 'check'),  # $OS_GLANCE_CONFIG_DIR, as glance-api
])
def test_config_dir_wherever_given(tmp_path, args):
    etc = config_dir(tmp_path, api=GOOD_API[1:])  # flavor unset: default
    env = dict(os.environ, OS_GLANCE_CONFIG_DIR=str(etc))
    proc = status(etc, *[a.format(etc=etc) for a in args], env=env)
    # The table names the paste file of this directory; the only warning
    # is the unauthenticated default pipeline the unset flavor selects.
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'Result: Warning' in proc.stdout
    assert 'Result: Failure' not in proc.stdout
    assert '\n|     flavor = keystone ' in proc.stdout
    # Wrapped for the table: read it as one text.
    text = ' '.join(re.sub(r'[|+-]{2,}|\|', ' ', proc.stdout).split())
    assert '%s/glance-api-paste.ini [composite:api]: [paste_deploy] flavor ' \
        '(unset) selects default, which has no context filter' % etc in text
    assert 'Edit: in [paste_deploy] of %s/glance-api.conf, set: flavor = ' \
        'keystone' % etc in text


def test_filter_missing_in_selected_pipeline_fails(tmp_path):
    etc = config_dir(tmp_path, paste(keys=KEYSTONE_KEYS[1:]))
    proc = status(etc)
    assert proc.returncode == 2
    code, details = checks(proc)[PASTE]
    assert code == 2
    assert 'keystone (selected by [paste_deploy] flavor = keystone) has ' \
        'no vsize filter' in details
    assert_edit(details, etc / 'glance-api-paste.ini', 'composite:api',
                'keystone = cors http_proxy_to_wsgi versionnegotiation '
                'osprofiler authtoken context vsize rootapp')


def test_filter_in_one_pipeline_only_warns_for_the_others(tmp_path):
    etc = config_dir(tmp_path, paste(keys=('keystone',)))
    proc = status(etc)
    assert proc.returncode == 1, proc.stdout
    code, details = checks(proc)[PASTE]
    assert code == 1
    assert_edit(details, etc / 'glance-api-paste.ini', 'composite:api',
                'keystone+caching = cors http_proxy_to_wsgi '
                'versionnegotiation osprofiler authtoken context vsize '
                'cache rootapp',
                'keystone+cachemanagement = cors http_proxy_to_wsgi '
                'versionnegotiation osprofiler authtoken context vsize '
                'cache cachemanage rootapp')
    assert 'keystone (selected by [paste_deploy] flavor = keystone): vsize ' \
        'right after context' in details


def test_filter_before_context_fails(tmp_path):
    etc = config_dir(tmp_path, paste(keys=KEYSTONE_KEYS[1:],
                                     before=('keystone',)))
    proc = status(etc)
    assert proc.returncode == 2
    code, details = checks(proc)[PASTE]
    assert code == 2
    assert 'has vsize before context' in details
    assert_edit(details, etc / 'glance-api-paste.ini', 'composite:api',
                'keystone = cors http_proxy_to_wsgi versionnegotiation '
                'osprofiler authtoken context vsize rootapp')


def test_filter_section_missing_fails_and_paste_does_not_load(tmp_path):
    etc = config_dir(tmp_path, paste(section=False))
    proc = status(etc)
    assert proc.returncode == 2
    found = checks(proc)
    assert found[PASTE][0] == 2
    assert_edit(found[PASTE][1], etc / 'glance-api-paste.ini',
                'filter:vsize', '[filter:vsize]',
                'paste.filter_factory = '
                'glance_vsize.glance.middleware:filter_factory')
    code, details = found[LOADS]
    assert code == 2
    assert str(etc / 'glance-api-paste.ini') in details
    assert "No section 'vsize'" in details


def test_appended_pipeline_section_is_reported_as_ambiguous(tmp_path):
    # What appending the old sample did (issue 10): Glance cannot start.
    etc = config_dir(tmp_path, paste(extra=(
        '\n[pipeline:glance-api-keystone]\n'
        'pipeline = cors authtoken context vsize rootapp\n')))
    proc = status(etc)
    assert proc.returncode == 2
    code, details = checks(proc)[LOADS]
    assert code == 2
    assert details.startswith(str(etc / 'glance-api-paste.ini'))
    assert 'Ambiguous section names' in details


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


def test_missing_config_dir_is_a_failure_not_a_traceback(tmp_path):
    proc = status(tmp_path, 'upgrade', 'check', '--config-dir',
                  str(tmp_path / 'nowhere'))
    assert proc.returncode == 2
    assert 'nowhere' in proc.stderr and 'Traceback' not in proc.stderr


def test_directory_without_glance_api_conf_fails(tmp_path):
    proc = status(tmp_path)
    assert proc.returncode == 2
    found = checks(proc)
    assert all(code == 2 for code, _ in found.values()), found
    assert '%s: not found' % (tmp_path / 'glance-api.conf') in \
        found[FORMAT_MATCH][1]


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
    assert wiring.plugin_order(plugins) == expected


def test_pipeline_sections_of_older_paste_files(tmp_path):
    # Before [composite:api], Glance's paste files had one
    # [pipeline:glance-api-FLAVOR] section per flavor.
    from glance_vsize.glance import paste_wiring
    path = tmp_path / 'glance-api-paste.ini'
    path.write_text(
        '[pipeline:glance-api]\n'
        'pipeline = versionnegotiation unauthenticated-context rootapp\n'
        '[pipeline:glance-api-keystone]\n'
        'pipeline = versionnegotiation authtoken context rootapp\n'
        '[pipeline:glance-api-keystone+caching]\n'
        'pipeline = versionnegotiation authtoken context cache check '
        'rootapp\n' + FILTER_SECTION.replace('vsize]', 'check]'))
    parser = paste_wiring.read_paste(str(path))
    assert paste_wiring.vsize_filters(parser) == ['check']
    found = paste_wiring.pipelines(parser, 'keystone')
    assert [(p.section, p.selected) for p in found] == [
        ('pipeline:glance-api', False),
        ('pipeline:glance-api-keystone', True),
        ('pipeline:glance-api-keystone+caching', False)]
    assert [(f.level, f.problem) for f in (
        paste_wiring._check_pipeline(str(path), p, ['check'], 'check',
                                     '[paste_deploy] flavor = keystone')
        for p in found[1:])] == [
        (wiring.Level.FAILURE, 'pipeline:glance-api-keystone (selected by '
         '[paste_deploy] flavor = keystone) has no check filter: uploads '
         'are not inspected'),
        (wiring.Level.WARNING, 'pipeline:glance-api-keystone+caching has '
         'check after context, but not right after it')]


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
