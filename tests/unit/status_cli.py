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


"""What the tests of ``glance-vsize-status upgrade check`` share: the
configuration directories they make from the files the glance wheel ships
(``<venv>/etc/glance``), with the documented edits and each wrong variant,
and the installed console script run as a deployer runs it.
"""

import json


import pathlib

import re

import subprocess

import sys

import pytest


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

#: Every status test needs the glance wheel's etc/ files.
NEEDS_WHEEL = pytest.mark.skipif(
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
