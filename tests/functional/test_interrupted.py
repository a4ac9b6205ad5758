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


"""Interrupted uploads on a real Glance (tools/run-glance, sqlite).

A client that disconnects mid-body (a raw socket sends the headers and
part of the body, then closes), and a store that fails mid-write: the
gunicorn workers get a file size limit (RLIMIT_FSIZE, set on the running
processes with prlimit(2)), so that the filesystem store's write() fails
with EFBIG part-way through the image, as on a full disk (Glance maps both
to StorageFull).  Each time the image must end ``queued``, nothing of it
may stay in the store or staging directories, and the next upload of the
same image must succeed with qemu-img's virtual size.
"""

import os
import re
import resource
import socket
import time

import pytest

from tests.functional import glance as glance_mod
from tests import helpers

pytestmark = helpers.requires_qemu_img

#: The file size limit the store hits, and an image well beyond it (a
#: fixed VHD: oslo.utils' virtual_size for it differs from qemu's).
FSIZE_LIMIT = 4 << 20
BIG_IMAGE = 'data-vhd-fixed.vhd'


@pytest.fixture(scope='module')
def images(corpus):
    """The generated images by file name."""
    outdir, entries = corpus
    return outdir, {e['file']: e for e in entries}


@pytest.fixture(scope='module')
def glance(tmp_path_factory):
    api = glance_mod.Glance(tmp_path_factory.mktemp('glance-interrupted'))
    yield api
    api.stop()


def _served(glance, image_id, action, timeout=60):
    """The HTTP status gunicorn logged for the PUT of ``image_id``, once
    the request is over.
    """
    rx = re.compile(r'"PUT /v2/images/%s/%s HTTP/1.1" (\d{3}) '
                    % (image_id, action))
    path = os.path.join(glance.data_dir, 'log', 'access.log')
    deadline = time.monotonic() + timeout
    while True:
        with open(path) as f:
            found = rx.findall(f.read())
        if found:
            return int(found[-1])
        assert time.monotonic() < deadline, 'no PUT of %s logged' % image_id
        time.sleep(0.1)


def _disconnect(glance, image_id, action, data, cut, chunked):
    """Send the headers and ``data[:cut]``, then close the connection."""
    head = ('PUT /v2/images/%s/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n'
            'Content-Type: application/octet-stream\r\n'
            'X-Auth-Token: %s\r\n' % (image_id, action, glance.token()))
    if chunked:
        head += 'Transfer-Encoding: chunked\r\n\r\n'
        body = b'%x\r\n%s\r\n' % (cut, data[:cut])
    else:
        head += 'Content-Length: %d\r\n\r\n' % len(data)
        body = data[:cut]
    with socket.create_connection(('127.0.0.1', glance.port), 30) as s:
        s.sendall(head.encode() + body)
        time.sleep(0.2)
    return _served(glance, image_id, action)


def _put(glance, image_id, action, path):
    """PUT a whole file as a client that may be cut off: Glance answers a
    store failure before it has read the body and closes the connection,
    so the client may only see a broken pipe.  Returns gunicorn's status.
    """
    with open(path, 'rb') as f:
        data = f.read()
    head = ('PUT /v2/images/%s/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n'
            'Content-Type: application/octet-stream\r\n'
            'X-Auth-Token: %s\r\n'
            'Content-Length: %d\r\nConnection: close\r\n\r\n'
            % (image_id, action, glance.token(), len(data)))
    with socket.create_connection(('127.0.0.1', glance.port), 60) as s:
        try:
            s.sendall(head.encode() + data)
            s.recv(1024)
        except (BrokenPipeError, ConnectionResetError):
            pass
    return _served(glance, image_id, action)


def _assert_nothing_left(glance, image_id):
    for name in ('images', 'staging', 'tasks'):
        assert not [f for f in glance.files_in(name) if image_id in f], name


def _upload_again(glance, image_id, action, path, entry):
    """The next upload of the same image succeeds with qemu-img's size."""
    status, body = glance.upload(image_id, path, action)
    assert status == 204, body
    if action == 'stage':
        status, body = glance.import_(image_id)
        assert status == 202, body
    image = glance.wait(image_id)
    assert (image['status'], image['virtual_size']) == (
        'active', entry['virtual_size']), glance.task_messages(image_id)
    assert not [f for f in glance.files_in('staging') if image_id in f]


#: (image, where the client stops).  The VHDX is cut at a 64 KiB boundary,
#: right after a read of the body: glance_vsize then saw the end of the
#: stream, and refused the image for it ("no valid header") before its
#: reader raised the disconnection instead.
CUTS = [('data-qcow2-default.qcow2', 'half'),
        ('vhdx-b1M-s0.vhdx', 3 << 16)]


@pytest.mark.parametrize('chunked', [False, True],
                         ids=['content-length', 'chunked'])
@pytest.mark.parametrize('action', ['file', 'stage'])
@pytest.mark.parametrize('name,cut', CUTS, ids=[c[0] for c in CUTS])
def test_client_disconnecting_mid_body(glance, images, name, cut, action,
                                       chunked):
    outdir, entries = images
    entry = entries[name]
    path = os.path.join(outdir, name)
    with open(path, 'rb') as f:
        data = f.read()
    cut = len(data) // 2 if cut == 'half' else cut
    image_id = glance.create(entry['disk_format'])
    status = _disconnect(glance, image_id, action, data, cut, chunked)
    assert 400 <= status < 600
    image = glance.show(image_id)
    assert (image['status'], image['virtual_size']) == ('queued', None)
    _assert_nothing_left(glance, image_id)
    # The network cut the upload; glance_vsize did not blame the image.
    assert not [line for line in glance.log().splitlines()
                if image_id in line and 'refused by glance_vsize' in line]
    _upload_again(glance, image_id, action, path, entry)


def _gunicorn_workers(glance):
    with open(os.path.join(glance.data_dir, 'gunicorn.pid')) as f:
        master = int(f.read())
    workers = []
    for pid in os.listdir('/proc'):
        try:
            with open('/proc/%s/stat' % pid) as f:
                stat = f.read()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(')', 1)[1].split()[1]) == master:
            workers.append(int(pid))
    assert workers
    return workers


class _FileSizeLimit:
    """RLIMIT_FSIZE on Glance's workers while in the ``with`` block."""

    def __init__(self, glance, limit):
        self.glance, self.limit = glance, limit

    def _set(self, soft):
        for pid in _gunicorn_workers(self.glance):
            resource.prlimit(pid, resource.RLIMIT_FSIZE,
                             (soft, resource.RLIM_INFINITY))

    def __enter__(self):
        # Only the image may reach the limit: not the log, nor the database.
        for name in ('log/glance-api.log', 'glance.sqlite'):
            size = os.path.getsize(os.path.join(self.glance.data_dir, name))
            assert size < self.limit // 2, (name, size)
        self._set(self.limit)
        return self

    def __exit__(self, *exc):
        self._set(resource.RLIM_INFINITY)


@pytest.mark.parametrize('action', ['file', 'stage'])
def test_store_failing_mid_write(glance, images, action):
    outdir, entries = images
    entry = entries[BIG_IMAGE]
    path = os.path.join(outdir, BIG_IMAGE)
    assert os.path.getsize(path) > 2 * FSIZE_LIMIT
    image_id = glance.create(entry['disk_format'])
    with _FileSizeLimit(glance, FSIZE_LIMIT):
        status = _put(glance, image_id, action, path)
    assert status == 413        # "Image storage media is full"
    image = glance.show(image_id)
    assert (image['status'], image['virtual_size']) == ('queued', None)
    _assert_nothing_left(glance, image_id)
    assert 'Image storage media is full' in glance.log()
    _upload_again(glance, image_id, action, path, entry)


def test_store_failing_mid_write_during_import(glance, images):
    """glance-direct: the data is staged, then the store fails while
    _ImportToStore copies it (after glance_vsize's import plugin).  Glance's
    own reverts would leave the image ``importing`` with its staged data,
    stuck; the plugin's revert requeues it and removes that data.
    """
    outdir, entries = images
    entry = entries[BIG_IMAGE]
    path = os.path.join(outdir, BIG_IMAGE)
    image_id = glance.create(entry['disk_format'])
    status, body = glance.upload(image_id, path, 'stage')
    assert status == 204, body
    with _FileSizeLimit(glance, FSIZE_LIMIT):
        status, body = glance.import_(image_id)
        assert status == 202, body
        image = glance.wait(image_id)
    assert image['status'] == 'queued'
    assert image['os_glance_failed_import'] == 'local'
    assert not image['os_glance_importing_to_stores']
    assert glance.task_messages(image_id) == [
        'Task failed due to Internal Error']
    _assert_nothing_left(glance, image_id)
    _upload_again(glance, image_id, 'stage', path, entry)
