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


"""tools/lab/cli.py: which database a run-glance lab uses."""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, 'tools'))

from lab import cli  # noqa: E402


@pytest.mark.parametrize('argv, database', [
    ([], 'sqlite'),
    (['--nodes', '1'], 'sqlite'),
    (['--nodes', '2'], 'postgresql'),
    (['--nodes', '3', '--database', 'sqlite'], 'sqlite'),
    (['--database', 'postgresql'], 'postgresql'),
    (['--nodes', '2', '--database', 'postgresql+psycopg2://u:p@h:5432/g'],
     'postgresql+psycopg2://u:p@h:5432/g'),
])
def test_several_nodes_default_to_the_labs_postgresql(argv, database):
    assert cli.parse(argv).database == database


def test_a_database_that_is_neither_a_keyword_nor_a_url_is_refused(capsys):
    with pytest.raises(SystemExit):
        cli.parse(['--database', 'postgres'])
    assert "--database: sqlite, postgresql or a SQLAlchemy URL, got " \
        "'postgres'" in capsys.readouterr().err
