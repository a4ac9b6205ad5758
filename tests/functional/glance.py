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


"""A real Glance API for functional tests: tools/run-glance in a temporary
data directory on a free loopback port, driven over HTTP and with the
openstack CLI of the project's virtualenv."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
VENV_BIN = os.path.dirname(sys.executable)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Glance:
    """One running Glance API (``tools/run-glance``) and how to talk to it."""

    def __init__(self, data_dir, port=None, extra_args=()):
        self.data_dir = str(data_dir)
        self.port = port or free_port()
        self.endpoint = 'http://127.0.0.1:%d' % self.port
        self.proc = subprocess.Popen(
            [os.path.join(REPO, 'tools', 'run-glance'), '--port',
             str(self.port), '--data-dir', self.data_dir] + list(extra_args),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = []
        deadline = time.monotonic() + 300
        for line in self.proc.stdout:
            self.output.append(line)
            if line.startswith('Glance API ready at'):
                break
            if time.monotonic() > deadline:
                break
        else:
            raise RuntimeError('run-glance failed:\n' + ''.join(self.output))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

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
            headers = headers or {}
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
        env = dict(os.environ, OS_AUTH_TYPE='none',
                   OS_ENDPOINT=self.endpoint, OS_IMAGE_API_VERSION='2')
        for key in ('OS_CLOUD', 'OS_AUTH_URL', 'OS_TOKEN', 'OS_USERNAME',
                    'OS_PASSWORD', 'OS_PROJECT_NAME'):
            env.pop(key, None)
        return subprocess.run(
            [shutil.which('openstack', path=VENV_BIN) or 'openstack'] +
            list(args), capture_output=True, text=True, env=env,
            stdin=subprocess.DEVNULL, timeout=600)
