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

"""A real Keystone (PyPI ``keystone``) for the lab: sqlite, fernet
tokens, served by gunicorn on 127.0.0.1.

``keystone-manage db_sync``, ``fernet_setup``, ``credential_setup`` and
``bootstrap`` (admin user, project and role, RegionOne, the identity
service) run once per virtualenv into a cached template
(:func:`template`), copied into each data dir: each costs seconds of CPU,
and the functional tests start several labs.  The copies share the
template's key repositories and start with its admin password, which
:mod:`identity` replaces at the first start.  A lab, not a deployment.
"""

import json
import os
import secrets
import shutil
import subprocess
from typing import Optional

from . import sqlite

#: Where keystone.wsgi.api is imported with a clean sys.argv.
WSGI_APP = 'lab.keystone_wsgi:application'
#: Placeholder catalog URL of the template; set at every start.
TEMPLATE_URL = 'http://127.0.0.1:1/v3'


_CONF = '''\
# Written by tools/run-glance (lab only); rewritten on every start.
[DEFAULT]
debug = %(debug)s
%(log)s
[database]
connection = %(db)s

[token]
provider = fernet

[fernet_tokens]
key_repository = %(keys)s

[fernet_receipts]
# Defaults to /etc/keystone/fernet-keys/, which fernet_setup creates too.
key_repository = %(keys)s

[credential]
key_repository = %(creds)s

[identity]
# bcrypt's fewest rounds: every token request checks a password (lab only).
password_hash_rounds = 4
'''


def write_conf(kdir: str, logdir: Optional[str], debug: bool,
               immediate: bool = True) -> str:
    """keystone.conf for a Keystone whose state lives in ``kdir``;
    ``immediate``: sqlite transactions begin IMMEDIATE (not on every
    release: :mod:`releases`).
    """
    conf = os.path.join(kdir, 'keystone.conf')
    keys = os.path.join(kdir, 'fernet-keys')
    values = {
        'debug': debug,
        'log': 'log_file = %s\n' % os.path.join(logdir, 'keystone.log')
        if logdir else '',
        'db': sqlite.url(os.path.join(kdir, 'keystone.sqlite'), immediate),
        'keys': keys, 'creds': os.path.join(kdir, 'credential-keys')}
    with open(conf, 'w') as f:
        f.write(_CONF % values)
    return conf


def _manage(bin_dir: str, conf: str, log: str, *args: str,
            env: Optional[dict] = None) -> None:
    cmd = [os.path.join(bin_dir, 'keystone-manage'), '--config-file', conf,
           *args]
    with open(log, 'a') as out:
        if subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL,
                           env=dict(os.environ, **(env or {}))):
            raise RuntimeError('keystone-manage %s failed (log: %s)'
                               % (args[0], log))


def bootstrap(bin_dir: str, conf: str, log: str, password: str) -> None:
    """``keystone-manage bootstrap``: admin user, project and role,
    RegionOne, the identity service.  The password goes in
    ``OS_BOOTSTRAP_PASSWORD``, not on the command line: argparse takes
    a value that starts with ``-`` (one token_urlsafe in 64) for an
    option, and the process list shows arguments.
    """
    _manage(bin_dir, conf, log, 'bootstrap',
            '--bootstrap-username', 'admin',
            '--bootstrap-project-name', 'admin',
            '--bootstrap-role-name', 'admin',
            '--bootstrap-service-name', 'keystone',
            '--bootstrap-region-id', 'RegionOne',
            '--bootstrap-public-url', TEMPLATE_URL,
            env={'OS_BOOTSTRAP_PASSWORD': password})


def build(bin_dir: str, kdir: str, password: str) -> None:
    """A bootstrapped Keystone state in ``kdir``, admin ``password``."""
    conf = write_conf(kdir, None, False)
    log = os.path.join(kdir, 'keystone-manage.log')
    user = str(os.getuid()), str(os.getgid())
    _manage(bin_dir, conf, log, 'db_sync')
    _manage(bin_dir, conf, log, 'fernet_setup', '--keystone-user',
            user[0], '--keystone-group', user[1])
    _manage(bin_dir, conf, log, 'credential_setup', '--keystone-user',
            user[0], '--keystone-group', user[1])
    bootstrap(bin_dir, conf, log, password)
    sqlite.enable_wal(os.path.join(kdir, 'keystone.sqlite'))


def template(bin_dir: str, cache_dir: str, version: str) -> str:
    """The cached, bootstrapped Keystone state directory."""

    def make(kdir: str) -> None:
        password = secrets.token_urlsafe(16)
        build(bin_dir, kdir, password)
        with open(os.path.join(kdir, 'template.json'), 'w') as f:
            json.dump({'admin_password': password}, f)

    return sqlite.cached(cache_dir, 'keystone-%s' % version, make)


def prepare(bin_dir: str, cache_dir: str, version: str, kdir: str,
            logdir: str, debug: bool, immediate: bool = True
            ) -> Optional[str]:
    """Keystone's state in ``kdir``, copied from the template when there
    is none, else kept.  Returns the template's admin password until
    :func:`admin_password_set` (the first start replaces it), else None.
    """
    os.makedirs(kdir, exist_ok=True)
    pending = os.path.join(kdir, 'template-admin-password')
    db = os.path.join(kdir, 'keystone.sqlite')
    if not os.path.exists(db):
        tpl = template(bin_dir, cache_dir, version)
        for name in ('fernet-keys', 'credential-keys'):
            shutil.rmtree(os.path.join(kdir, name), ignore_errors=True)
            shutil.copytree(os.path.join(tpl, name),
                            os.path.join(kdir, name))
        with open(os.path.join(tpl, 'template.json')) as f:
            password = json.load(f)['admin_password']
        with open(pending, 'w') as f:
            f.write(password)
        sqlite.copy_db(os.path.join(tpl, 'keystone.sqlite'), db)
    write_conf(kdir, logdir, debug, immediate)
    try:
        with open(pending) as f:
            return f.read()
    except FileNotFoundError:
        return None


def admin_password_set(kdir: str) -> None:
    try:
        os.unlink(os.path.join(kdir, 'template-admin-password'))
    except FileNotFoundError:
        pass


def env(kdir: str) -> dict:
    """Environment of Keystone's gunicorn: its config dir."""
    return dict(os.environ, OS_KEYSTONE_CONFIG_DIR=kdir,
                OS_KEYSTONE_CONFIG_FILES='keystone.conf')
