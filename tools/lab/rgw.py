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

"""Ceph's RADOS Gateway on the lab's cluster (:mod:`lab.ceph`), for
glance_store's ``s3`` and ``swift`` stores (``tools/run-glance --rgw``).

Debian's ``radosgw`` (the cluster's Ceph release), one gateway
``client.rgw.lab`` with the beast frontend on 127.0.0.1, run in the
foreground as this process's child.  Its state is in ``DIR/ceph/rgw``:
``lab.json`` (the port of the last start and the S3 user's keys, made
once), the keyring, the logs, ``keystone-password`` (RGW's) and
``glance-swift.conf`` (Glance's ``swift_store_config_file``).

* S3: the RGW user ``glance`` (``radosgw-admin user create``) with the
  keys in ``lab.json``; Glance's backend ``s3`` stores in bucket
  ``glance-s3``.
* Swift: RGW validates Keystone tokens (glance_store 5 authenticates
  with Keystone v3 only: its ``auth_version`` 1 and 2 are gone); the
  catalog's ``object-store`` service points at
  ``/swift/v1/AUTH_<project id>``; Glance's backend ``swift`` stores as
  the ``glance`` user of project ``service`` (single-tenant) in
  container ``glance-swift``.
"""

import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from typing import Dict, Optional

from . import ceph
from . import identity
from . import nodes
from .ini import iniget
from .ini import iniset_many

NAME = 'client.rgw.lab'
PACKAGES = ('radosgw',)
TOOLS = ('radosgw', 'radosgw-admin')
#: RGW user (S3) of Glance's backend s3.
USER = 'glance'
#: Bucket and container of Glance's backends: two names, as RGW's
#: buckets share one namespace (no tenants here).
BUCKET = 'glance-s3'
CONTAINER = 'glance-swift'
S3_BACKEND = 's3'
SWIFT_BACKEND = 'swift'
#: RGW's settings besides the frontend, the paths and Keystone's.
OPTIONS = {
    'rgw_keystone_api_version': '3',
    'rgw_keystone_accepted_roles': 'member,admin,service',
    'rgw_keystone_implicit_tenants': 'false',
    'rgw_keystone_verify_ssl': 'false',
    'rgw_swift_account_in_url': 'true',
    'rgw_s3_auth_use_keystone': 'false',
    # A lab: few threads, no usage/ops logging, no garbage collector
    # waiting on the test.
    'rgw_thread_pool_size': '16',
    'rgw_enable_usage_log': 'false',
    'rgw_enable_ops_log': 'false',
}
#: Cluster settings RGW needs on one OSD: its pools (six or more) at 8
#: placement groups each, not 32.
CLUSTER_OPTIONS = {
    'osd_pool_default_pg_num': '8',
    'osd_pool_default_pgp_num': '8',
    'mon_max_pg_per_osd': '1000',
}


class Gateway:
    """The gateway of ``cluster``, state in ``DIR/ceph/rgw``."""

    def __init__(self, cluster: ceph.Cluster, say=print):
        self.cluster = cluster
        self.dir = cluster.path('rgw')
        self.say = say
        self.proc: Optional[subprocess.Popen] = None
        os.makedirs(os.path.join(self.dir, 'log'), exist_ok=True)
        self.state = self._load()
        self.port = self.state['port']

    @property
    def url(self) -> str:
        return 'http://127.0.0.1:%d' % self.port

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def _load(self) -> dict:
        try:
            with open(self.path('lab.json')) as f:
                state = json.load(f)
        except FileNotFoundError:
            state = {'access_key': secrets.token_hex(10).upper(),
                     'secret_key': secrets.token_urlsafe(30)}
        port = state.get('port')
        if not port or not nodes.bindable(port):
            state['port'] = nodes.free_port()
        ceph.Cluster._write_file(self.path('lab.json'), json.dumps(state))
        return state

    # ------------------------------------------------------------ Glance
    def glance_backends(self, auth_url: str, password: str,
                        swift_extra: tuple = ()) -> Dict[str, dict]:
        """glance_store settings of backends ``s3`` and ``swift``
        (``swift_extra``: the release's ``Release.swift_backend``).
        """
        swift_conf = self.path('glance-swift.conf')
        ceph.Cluster._write_file(swift_conf, '\n'.join([
            '# Written by tools/run-glance (lab only).',
            '[ref1]', 'auth_address = %s' % auth_url,
            'auth_version = 3', 'user = service:glance',
            'key = %s' % password, 'user_domain_id = default',
            'project_domain_id = default', '']))
        return {
            S3_BACKEND: {
                's3_store_host': self.url,
                's3_store_access_key': self.state['access_key'],
                's3_store_secret_key': self.state['secret_key'],
                's3_store_bucket': BUCKET,
                's3_store_create_bucket_on_put': 'True',
                's3_store_bucket_url_format': 'path'},
            SWIFT_BACKEND: {
                'swift_store_config_file': swift_conf,
                'default_swift_reference': 'ref1',
                'swift_store_container': CONTAINER,
                'swift_store_create_container_on_put': 'True',
                'swift_store_endpoint_type': 'publicURL',
                **dict(swift_extra)},
        }

    # ------------------------------------------------------------ start
    def start(self, auth_url: str, password: str,
              timeout: float = 120) -> subprocess.Popen:
        """Start the gateway on the running cluster (Keystone at
        ``auth_url``, validating tokens as ``glance``/``password``); the
        S3 user exists when it returns.
        """
        t0 = time.monotonic()
        with self.cluster.admin(timeout) as admin:
            for name, value in CLUSTER_OPTIONS.items():
                self.cluster._command(admin, {
                    'prefix': 'config set', 'who': 'global', 'name': name,
                    'value': value})
            key = self.cluster._command(admin, {
                'prefix': 'auth get-or-create', 'entity': NAME,
                'caps': ['mon', 'allow rw', 'osd', 'allow rwx']})
        ceph.Cluster._write_file(self.path('keyring'), key)
        # The password in a file (0600), not on radosgw's command line.
        ceph.Cluster._write_file(self.path('keystone-password'), password)
        args = {
            'rgw_frontends': 'beast endpoint=127.0.0.1:%d' % self.port,
            'rgw_data': self.dir, 'keyring': self.path('keyring'),
            'log_file': self.path('log', 'radosgw.log'),
            'admin_socket': self.path('radosgw.asok'),
            'rgw_keystone_url': auth_url.rsplit('/v3', 1)[0],
            'rgw_keystone_admin_user': 'glance',
            'rgw_keystone_admin_password_path': self.path(
                'keystone-password'),
            'rgw_keystone_admin_project': 'service',
            'rgw_keystone_admin_domain': 'Default'}
        args.update(OPTIONS)
        cmd = ['radosgw', '-f', '-c', self.cluster.conf]
        for name, value in args.items():
            cmd += ['--' + name, value]
        cmd += ['-n', NAME]   # last: what the lab names when it exits
        with open(self.path('log', 'radosgw.out'), 'ab') as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=out)
        self._wait(timeout)
        self._user()
        self.say('RADOS Gateway started in %.1f s: %s (S3), %s/swift/v1 '
                 '(Swift)' % (time.monotonic() - t0, self.url, self.url))
        return self.proc

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError('radosgw exited (%s); see %s' % (
                    self.proc.returncode, self.path('log')))
            try:
                with urllib.request.urlopen(self.url, timeout=5):
                    return
            except urllib.error.HTTPError:
                return   # it answers
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError('radosgw did not answer on %s within '
                                   '%d s; see %s' % (self.url, timeout,
                                                     self.path('log')))
            time.sleep(0.5)

    def admin_tool(self, *args: str) -> str:
        """``radosgw-admin ARGS`` as client.admin."""
        return self.cluster._tool(
            'radosgw-admin', '-c', self.cluster.conf, '-n', 'client.admin',
            '--keyring', self.cluster.keyring('client.admin'),
            '--log-file', self.path('log', 'radosgw-admin.log'), *args)

    def _user(self) -> None:
        try:
            self.admin_tool('user', 'info', '--uid', USER)
            return
        except RuntimeError:
            pass
        self.admin_tool('user', 'create', '--uid', USER, '--display-name',
                        'Glance (lab)', '--access-key',
                        self.state['access_key'],
                        # One token: a secret may start with '-'.
                        '--secret=' + self.state['secret_key'])

    def register(self, auth_url: str, password: str) -> None:
        """The ``object-store`` service and its endpoints in Keystone's
        catalog (what the swift store looks up), as ``glance`` (an admin
        of project ``service``).
        """
        kc = identity.Client(auth_url, 'glance', password, 'service')
        service = kc.ensure('services', {
            'type': 'object-store', 'name': 'swift',
            'description': 'RADOS Gateway (lab)'}, type='object-store')
        url = '%s/swift/v1/AUTH_%%(project_id)s' % self.url
        for interface in ('public', 'internal'):
            identity._endpoint(kc, service['id'], interface, url)


def use_rgw(conf: str, backends: Dict[str, dict]) -> None:
    """Add the backends ``s3`` and ``swift`` after the lab's others."""
    others = iniget(conf, 'DEFAULT', 'enabled_backends')
    names = ', '.join('%s:%s' % (name, name) for name in backends)
    settings: Dict[str, dict] = {'DEFAULT': {'enabled_backends': (
        '%s, %s' % (others, names)) if others else names}}
    settings.update(backends)
    iniset_many(conf, settings)
