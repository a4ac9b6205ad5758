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

"""tools/lab/keystone.py against the release's real ``keystone-manage``:
the admin password the lab makes (``secrets.token_urlsafe``) is taken
whatever its first character; one in 64 starts with ``-``, which failed
a CI run when it went on the command line.
"""

import os
import sqlite3
import subprocess
import sys

from tests.functional import glance as glance_mod

sys.path.insert(0, os.path.join(glance_mod.REPO, 'tools'))
from lab import keystone  # noqa: E402

BIN = os.path.dirname(sys.executable)

_CHECK = '''
import sys
from keystone.common import password_hashing
import keystone.conf
keystone.conf.configure()
keystone.conf.CONF([], project='keystone', default_config_files=[])
print(password_hashing.check_password(sys.stdin.read(), sys.argv[1]))
'''


def _admin_hash(kdir):
    con = sqlite3.connect(os.path.join(kdir, 'keystone.sqlite'))
    try:
        return con.execute(
            'SELECT p.password_hash FROM password p JOIN local_user u'
            ' ON p.local_user_id = u.id WHERE u.name = ?'
            ' ORDER BY p.created_at_int DESC', ('admin',)).fetchone()[0]
    finally:
        con.close()


def _check(password, hashed):
    return subprocess.run([sys.executable, '-c', _CHECK, hashed],
                          input=password, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_bootstrap_takes_a_password_that_starts_with_a_dash(tmp_path):
    kdir = str(tmp_path)
    password = '-Q3xN_d2o9kL-vbA'
    keystone.build(BIN, kdir, password)
    # Keystone's own check: the admin's stored hash is of that password.
    hashed = _admin_hash(kdir)
    assert _check(password, hashed) == 'True'
    assert _check('other', hashed) == 'False'
    # Not on the command line, where ps would show it.
    with open(os.path.join(kdir, 'keystone-manage.log')) as f:
        assert password not in f.read()
