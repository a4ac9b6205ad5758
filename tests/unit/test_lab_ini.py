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


"""tools/lab/ini.py: run-glance's in-place ini edits keep Glance's
commented sample intact and set exactly what they are asked."""

import configparser
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, 'tools'))

from lab import ini  # noqa: E402

SAMPLE = """\
[DEFAULT]

# The debug option (boolean value)
#debug = false

[database]
#connection = <None>
backend = sqlalchemy

[paste_deploy]
#flavor = <None>
"""


def _parse(text):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def test_sets_after_the_header_and_keeps_the_comments():
    text = ini.iniset_text(SAMPLE, 'database', 'connection', 'sqlite://')
    assert '#connection = <None>\n' in text
    assert text.index('connection = sqlite://') < text.index('#connection')
    assert _parse(text)['database']['connection'] == 'sqlite://'
    assert _parse(text)['database']['backend'] == 'sqlalchemy'
    assert text.replace('connection = sqlite://\n', '', 1) == SAMPLE


def test_replaces_an_uncommented_value_in_its_section_only():
    text = ini.iniset_text(SAMPLE, 'database', 'backend', 'other')
    assert text.count('backend =') == 1
    assert _parse(text)['database']['backend'] == 'other'
    text = ini.iniset_text(text, 'paste_deploy', 'backend', 'x')
    assert _parse(text)['database']['backend'] == 'other'
    assert _parse(text)['paste_deploy']['backend'] == 'x'


def test_appends_a_missing_section():
    text = ini.iniset_text(SAMPLE, 'local', 'filesystem_store_datadir',
                           '/srv/images')
    assert text.startswith(SAMPLE)
    assert _parse(text)['local']['filesystem_store_datadir'] == \
        '/srv/images'


def test_iniset_and_iniget_on_a_file(tmp_path):
    path = tmp_path / 'glance-api.conf'
    path.write_text(SAMPLE)
    ini.iniset_many(str(path), {'DEFAULT': {'debug': True},
                                'paste_deploy': {'flavor': 'keystone'}})
    assert ini.iniget(str(path), 'DEFAULT', 'debug') == 'True'
    assert ini.iniget(str(path), 'paste_deploy', 'flavor') == 'keystone'
    assert ini.iniget(str(path), 'database', 'connection') is None
