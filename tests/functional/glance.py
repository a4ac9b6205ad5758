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


"""A real Glance API beside a real Keystone for functional tests:
tools/run-glance in a temporary data directory on free loopback ports,
driven over HTTP with a Keystone token and with the openstack CLI of the
project's virtualenv, as the lab's member user (``DIR/openrc-member``:
only the member role in its project) unless a test asks for the admin
(:meth:`Glance.as_admin`).

The OpenStack release is $GLANCE_RELEASE (default: the newest; the table
is tools/lab/releases.py): run-glance --release and that release's
openstack CLI (its venv's).
"""

import copy
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, 'tools'))
from lab import identity  # noqa: E402
from lab import nodes  # noqa: E402
from lab import postgres  # noqa: E402,F401  (conftest.pg_lab_dir)
from lab import releases  # noqa: E402

#: The release under test (tools/run-glance --release).
RELEASE = releases.get(os.environ.get('GLANCE_RELEASE') or releases.NEWEST)
VENV_BIN = os.path.join(REPO, RELEASE.venv, 'bin')


def node_ports(n=2):
    """A port P with P..P+n-1 free (for ``run-glance --nodes n``), below
    the ephemeral range (where the kernel picks the local ports of the
    tests' own connections).
    """
    with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
        low = int(f.read().split()[0])
    rnd = random.Random()
    for _ in range(200):
        port = rnd.randrange(max(1024, low - 12000), low - n)
        if all(nodes.bindable(p) for p in range(port, port + n)):
            return port
    raise RuntimeError('no %d consecutive free ports' % n)


#: The OS_* variables an openrc file of run-glance exports.
read_openrc = identity.read_openrc


class Glance:
    """One running Glance API and Keystone (``tools/run-glance``) and how
    to talk to them, as the user of ``openrc`` (default: the member).
    """

    #: Tokens are renewed well before Keystone's one hour.
    TOKEN_LIFE = 1800

    def __init__(self, data_dir, port=None, extra_args=(),
                 openrc='openrc-member'):
        self.data_dir = str(data_dir)
        self.port = port or nodes.free_port()
        self.endpoint = 'http://127.0.0.1:%d' % self.port
        self.openrc = openrc
        self._auth = {'lock': threading.Lock()}
        self.proc = subprocess.Popen(
            [os.path.join(REPO, 'tools', 'run-glance'), '--release',
             RELEASE.name, '--port', str(self.port), '--data-dir',
             self.data_dir] + list(extra_args),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = []
        self.started = time.monotonic()
        deadline = self.started + 300
        for line in self.proc.stdout:
            self.output.append(line)
            if line.startswith('Glance API ready at'):
                break
            if time.monotonic() > deadline:
                break
        else:
            raise RuntimeError('run-glance failed:\n' + ''.join(self.output))
        self.started = time.monotonic() - self.started
        # Keep reading run-glance's output so that it never blocks on a
        # full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stdout:
            self.output.append(line)

    def stop(self):
        """Stop run-glance: Glance and Keystone."""
        self.proc.terminate()
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def as_admin(self):
        """The same Glance, with requests and CLI calls made as the lab's
        admin (``DIR/openrc``).
        """
        return self.as_user('openrc')

    def node(self, n):
        """The same lab and user through API node ``n`` (``--nodes``)."""
        other = copy.copy(self)
        other.port = self.port + n - 1
        other.endpoint = 'http://127.0.0.1:%d' % other.port
        return other

    def as_user(self, openrc):
        other = copy.copy(self)
        other.openrc = openrc
        other._auth = {'lock': threading.Lock()}
        return other

    # Keystone --------------------------------------------------------------
    def credentials(self):
        """The OS_* environment of this view's openrc file."""
        return read_openrc(os.path.join(self.data_dir, self.openrc))

    def token(self):
        """A project-scoped Keystone token of this view's user."""
        with self._auth['lock']:
            if time.monotonic() - self._auth.get('at', -1e9) < \
                    self.TOKEN_LIFE:
                return self._auth['token']
            env = self.credentials()
            body = json.dumps({'auth': {
                'identity': {'methods': ['password'], 'password': {'user': {
                    'name': env['OS_USERNAME'],
                    'password': env['OS_PASSWORD'],
                    'domain': {'name': env['OS_USER_DOMAIN_NAME']}}}},
                'scope': {'project': {
                    'name': env['OS_PROJECT_NAME'],
                    'domain': {'name': env['OS_PROJECT_DOMAIN_NAME']}}}}})
            req = urllib.request.Request(
                env['OS_AUTH_URL'] + '/auth/tokens', data=body.encode(),
                headers={'Content-Type': 'application/json'})
            with urllib.request.urlopen(req, timeout=120) as resp:
                self._auth['token'] = resp.headers['X-Subject-Token']
                reply = json.load(resp)
            self._auth['project_id'] = reply['token']['project']['id']
            self._auth['at'] = time.monotonic()
            return self._auth['token']

    def project_id(self):
        self.token()
        return self._auth['project_id']

    def auth_headers(self):
        return {'X-Auth-Token': self.token()}

    # Directories the tests check for leftovers.
    def files_in(self, name):
        path = os.path.join(self.data_dir, name)
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    def log(self):
        with open(os.path.join(self.data_dir, 'log', 'glance-api.log')) as f:
            return f.read()

    # HTTP ------------------------------------------------------------------
    def request(self, method, path, body=None, headers=None, timeout=600):
        conn = http.client.HTTPConnection('127.0.0.1', self.port,
                                          timeout=timeout)
        try:
            headers = dict(headers or {})
            headers.setdefault('X-Auth-Token', self.token())
            conn.request(method, path, body=body, headers=headers,
                         encode_chunked='Transfer-Encoding' in headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        return resp.status, data

    def json(self, method, path, payload=None):
        body = None if payload is None else json.dumps(payload)
        status, data = self.request(method, path, body, {
            'Content-Type': 'application/json'})
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, data.decode('utf-8', 'replace')

    def create(self, disk_format, container_format='bare', name=None):
        status, image = self.json('POST', '/v2/images', {
            'name': name or 'test-%s' % uuid.uuid4().hex[:8],
            'disk_format': disk_format,
            'container_format': container_format})
        assert status == 201, image
        return image['id']

    def show(self, image_id):
        status, image = self.json('GET', '/v2/images/%s' % image_id)
        assert status == 200, image
        return image

    def upload(self, image_id, path_or_body, action='file'):
        body = path_or_body
        if isinstance(path_or_body, str):
            body = open(path_or_body, 'rb')
        try:
            return self.request(
                'PUT', '/v2/images/%s/%s' % (image_id, action), body,
                {'Content-Type': 'application/octet-stream'})
        finally:
            if hasattr(body, 'close'):
                body.close()

    def import_(self, image_id, method='glance-direct', stores=None,
                **extra):
        payload = {'method': dict(name=method, **extra)}
        if stores is not None:
            payload['stores'] = stores
        return self.json('POST', '/v2/images/%s/import' % image_id, payload)

    def wait(self, image_id, timeout=120):
        """Wait until no upload or import is in progress; return the image."""
        deadline = time.monotonic() + timeout
        while True:
            image = self.show(image_id)
            settled = (
                image['status'] not in ('importing', 'uploading', 'saving')
                and not image.get('os_glance_importing_to_stores')
                and all(t['status'] in ('success', 'failure')
                        for t in self._tasks(image_id)))
            if settled or time.monotonic() > deadline:
                return image
            time.sleep(0.2)

    def _tasks(self, image_id):
        status, body = self.json('GET', '/v2/images/%s/tasks' % image_id)
        assert status == 200, body
        return body['tasks']

    def task_messages(self, image_id):
        return [t.get('message') or '' for t in self._tasks(image_id)]

    # openstack CLI ---------------------------------------------------------
    def openstack(self, *args):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith('OS_')}
        env.update(self.credentials())
        return subprocess.run(
            [shutil.which('openstack', path=VENV_BIN) or 'openstack'] +
            list(args), capture_output=True, text=True, env=env,
            stdin=subprocess.DEVNULL, timeout=600)
