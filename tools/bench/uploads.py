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

"""Figure 4 of issue 5: uploads to a real Glance over HTTP, timed, and the
CPU its gunicorn processes spend on them.
"""

import http.client
import os
import time

from .report import MiB


def http_put(glance, path, body, length):
    conn = http.client.HTTPConnection('127.0.0.1', glance.port, timeout=900,
                                      blocksize=MiB)
    try:
        conn.request('PUT', path, body=body, headers=dict(
            glance.auth_headers(),
            **{'Content-Type': 'application/octet-stream',
               'Content-Length': str(length)}))
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    return resp.status, data


def upload_create(glance, path, disk_format):
    """create-image: POST /v2/images, PUT .../file.  Seconds, image."""
    t0 = time.perf_counter()
    image_id = glance.create(disk_format)
    with open(path, 'rb') as f:
        status, body = http_put(glance, '/v2/images/%s/file' % image_id, f,
                                os.path.getsize(path))
    elapsed = time.perf_counter() - t0
    if status != 204:
        raise RuntimeError('upload: HTTP %d %s' % (status, body[:300]))
    return elapsed, glance.show(image_id)


def upload_import(glance, path, disk_format):
    """import: POST /v2/images, PUT .../stage, POST .../import
    (glance-direct), until active.  Seconds, image.
    """
    t0 = time.perf_counter()
    image_id = glance.create(disk_format)
    with open(path, 'rb') as f:
        status, body = http_put(glance, '/v2/images/%s/stage' % image_id, f,
                                os.path.getsize(path))
    if status != 204:
        raise RuntimeError('stage: HTTP %d %s' % (status, body[:300]))
    status, body = glance.import_(image_id)
    if status != 202:
        raise RuntimeError('import: HTTP %d %s' % (status, body))
    deadline = time.monotonic() + 900
    while True:
        image = glance.show(image_id)
        if image['status'] == 'active':
            break
        if image.get('os_glance_failed_import') or \
                time.monotonic() > deadline:
            raise RuntimeError('import failed: %s' % image)
        time.sleep(0.02)
    return time.perf_counter() - t0, image


def delete(glance, image_id):
    glance.request('DELETE', '/v2/images/%s' % image_id)
