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
made from the files the glance wheel ships: the documented wiring, where
the configuration directory comes from, and the paste filter's place.
"""

import os
import re

import pytest

from glance_vsize.glance import paste_wiring
from glance_vsize.glance import wiring
from tests.unit import status_cli
from tests.unit.status_cli import assert_edit
from tests.unit.status_cli import checks
from tests.unit.status_cli import config_dir
from tests.unit.status_cli import DRIVER
from tests.unit.status_cli import FILTER_SECTION
from tests.unit.status_cli import FORMAT_MATCH
from tests.unit.status_cli import GLANCE_VERSION
from tests.unit.status_cli import GOOD_API
from tests.unit.status_cli import INSTALLED
from tests.unit.status_cli import KEYSTONE_KEYS
from tests.unit.status_cli import LOADS
from tests.unit.status_cli import OPTIONS
from tests.unit.status_cli import PASTE
from tests.unit.status_cli import paste
from tests.unit.status_cli import PLUGIN
from tests.unit.status_cli import RELEASE
from tests.unit.status_cli import status

pytestmark = status_cli.NEEDS_WHEEL


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


def test_pipeline_sections_of_older_paste_files(tmp_path):
    # Before [composite:api], Glance's paste files had one
    # [pipeline:glance-api-FLAVOR] section per flavor.
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
