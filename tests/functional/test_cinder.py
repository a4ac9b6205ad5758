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


"""Cinder's "upload volume to image" of an encrypted volume, against a
real Glance with glance_vsize.

What Cinder sends (openstack/cinder: api/contrib/volume_actions.py
``_volume_upload_image``, image/image_utils.py ``upload_volume``,
image/glance.py ``update``): a POST creating the image with
``disk_format`` raw, ``container_format`` bare and the properties
``cinder_encryption_key_id`` and ``cinder_encryption_key_deletion_policy``
(``os_encrypt_*`` and ``os_decrypt_size`` in the 2026.1 spec), then the
volume's LUKS bytes in a chunked PUT (glanceclient sends a file in 64 KiB
chunks); compressed, ``gzip -k`` of the volume with ``container_format``
compressed.  The volumes are made by qemu-img and cryptsetup; the expected
``virtual_size`` is ``qemu-img info -f raw``'s.
"""

import functools
import http.server
import os
import shutil
import subprocess
import threading
import uuid

import pytest

from tests.functional import glance as glance_mod
from tests import helpers

pytestmark = helpers.requires_qemu_img

MiB = 1 << 20
CHUNK = 65536


@pytest.fixture(scope='module')
def glance(tmp_path_factory):
    api = glance_mod.Glance(tmp_path_factory.mktemp('glance-cinder'))
    yield api
    api.stop()


def _have_cryptsetup():
    if shutil.which('cryptsetup'):
        return True
    if os.environ.get('CI'):
        pytest.fail('cryptsetup (Debian cryptsetup-bin) is not installed')
    return False


@pytest.fixture(scope='module')
def volumes(tmp_path_factory):
    """name -> path: encrypted volumes, their gzip, and unsafe images."""
    top = tmp_path_factory.mktemp('volumes')
    made = {}
    path = str(top / 'qemu-luks1.img')
    proc = helpers.run_qemu_img(
        ['qemu-img', 'create', '-q', '--object', 'secret,id=s,data=x',
         '-f', 'luks', '-o', 'key-secret=s,iter-time=10', path, '6M'])
    assert proc.returncode == 0, proc.stderr
    made['qemu-luks1'] = path
    if _have_cryptsetup():
        for kind, size in (('luks1', 8 * MiB), ('luks2', 24 * MiB)):
            path = str(top / ('cryptsetup-%s.img' % kind))
            with open(path, 'wb') as f:
                f.truncate(size)
            subprocess.run(
                ['cryptsetup', 'luksFormat', '--type', kind, '--batch-mode',
                 '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000',
                 '--key-file', '-', path], input=b'secret', check=True,
                capture_output=True)
            made['cryptsetup-' + kind] = path
    for name in list(made):
        # Cinder's gzip accelerator: "gzip -k SRC", then mv SRC.gz DEST.
        subprocess.run(['gzip', '-k', made[name]], check=True)
        made[name + '.gz'] = made[name] + '.gz'
    made['qcow2'] = helpers.create(top / 'data.qcow2', 'qcow2', 8 * MiB)
    helpers.create(top / 'base.qcow2', 'qcow2', MiB)
    made['backing'] = helpers.create(
        top / 'child.qcow2', 'qcow2', MiB,
        'backing_file=base.qcow2,backing_fmt=qcow2')
    made['dir'] = str(top)
    return made


def _volume(volumes, name):
    if name not in volumes:
        pytest.skip('cryptsetup (Debian cryptsetup-bin) is not installed')
    return volumes[name]


def _qemu_size(path):
    return helpers.qemu_info(path, 'raw')['virtual-size']


def _properties(style):
    key_id = str(uuid.uuid4())
    if style == 'cinder':
        return {'cinder_encryption_key_id': key_id,
                'cinder_encryption_key_deletion_policy': 'on_image_deletion'}
    # The 2026.1 spec "Standardize Image Encryption and Decryption".
    return {'os_encrypt_key_id': key_id,
            'os_encrypt_key_deletion_policy': 'on_image_deletion',
            'os_encrypt_format': 'luks', 'os_decrypt_size': '1'}


def _create(glance, container='bare', style='cinder', disk_format='raw'):
    """POST /v2/images as Cinder's copy_volume_to_image does."""
    payload = {'name': 'volume-upload-%s' % uuid.uuid4().hex[:8],
               'disk_format': disk_format,
               'container_format': container,
               'visibility': 'private', 'protected': False}
    payload.update(_properties(style))
    status, image = glance.json('POST', '/v2/images', payload)
    assert status == 201, image
    for key, value in _properties(style).items():
        assert key in image, image
    return image['id']


def _chunks(path):
    with open(path, 'rb') as f:
        while True:
            data = f.read(CHUNK)
            if not data:
                return
            yield data


def _put_chunked(glance, image_id, path, action='file'):
    """glanceclient's upload: a chunked PUT of the file."""
    return glance.request(
        'PUT', '/v2/images/%s/%s' % (image_id, action), _chunks(path),
        {'Content-Type': 'application/octet-stream',
         'Transfer-Encoding': 'chunked'})


def _task_messages(glance, image_id):
    status, body = glance.json('GET', '/v2/images/%s/tasks' % image_id)
    assert status == 200, body
    return [t.get('message') or '' for t in body['tasks']]


def _assert_active(glance, image_id, volume, upload):
    image = glance.wait(image_id)
    got = (image['status'], image['virtual_size'], image['size'])
    assert got == ('active', _qemu_size(volume), os.path.getsize(upload)), \
        _task_messages(glance, image_id)


#: LUKS version 2 in a bare container: Glance 33's oslo.utils
#: LUKSInspector alone refuses it ("Image failed safety checks"); with
#: glance_vsize, Glance's own inspection answers with the engine.
VOLUMES = ['qemu-luks1', 'cryptsetup-luks1', 'cryptsetup-luks2']


@pytest.mark.parametrize('style', ['cinder', 'os_encrypt'])
@pytest.mark.parametrize('name', VOLUMES)
def test_create_image_chunked(glance, volumes, name, style):
    path = _volume(volumes, name)
    image_id = _create(glance, style=style)
    status, body = _put_chunked(glance, image_id, path)
    assert status == 204, body
    _assert_active(glance, image_id, path, path)


@pytest.mark.parametrize('name', VOLUMES)
def test_create_image_compressed_gzip(glance, volumes, name):
    path = _volume(volumes, name)
    image_id = _create(glance, 'compressed')
    status, body = _put_chunked(glance, image_id, path + '.gz')
    assert status == 204, body
    _assert_active(glance, image_id, path, path + '.gz')


@pytest.mark.parametrize('container', ['bare', 'compressed'])
@pytest.mark.parametrize('name', VOLUMES)
def test_glance_direct(glance, volumes, name, container):
    path = _volume(volumes, name)
    upload = path + '.gz' if container == 'compressed' else path
    image_id = _create(glance, container)
    status, body = _put_chunked(glance, image_id, upload, 'stage')
    assert status == 204, body
    status, body = glance.import_(image_id)
    assert status == 202, body
    _assert_active(glance, image_id, path, upload)


@pytest.fixture(scope='module')
def web_server(volumes):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=volumes['dir'])
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield 'http://127.0.0.1:%d' % server.server_address[1]
    server.shutdown()


@pytest.mark.parametrize('container', ['bare', 'compressed'])
@pytest.mark.parametrize('name', VOLUMES)
def test_web_download(glance, volumes, web_server, name, container):
    path = _volume(volumes, name)
    upload = path + '.gz' if container == 'compressed' else path
    image_id = _create(glance, container)
    status, body = glance.import_(
        image_id, 'web-download',
        uri='%s/%s' % (web_server, os.path.basename(upload)))
    assert status == 202, body
    _assert_active(glance, image_id, path, upload)


@pytest.mark.parametrize('action', ['file', 'stage'])
@pytest.mark.parametrize('key,check', [('qcow2', 'format_mismatch'),
                                       ('backing', 'backing_file')])
def test_other_content_declared_raw_is_refused(glance, volumes, key, check,
                                               action):
    image_id = _create(glance)
    status, body = _put_chunked(glance, image_id, volumes[key], action)
    assert status in (400, 415), body
    assert b'refused by glance_vsize' in body, body
    assert check.encode() in body, body
    image = glance.show(image_id)
    assert (image['status'], image['virtual_size']) == ('queued', None)


def test_web_download_of_a_backing_file_declared_raw_is_refused(
        glance, volumes, web_server):
    image_id = _create(glance)
    status, body = glance.import_(
        image_id, 'web-download',
        uri='%s/%s' % (web_server, os.path.basename(volumes['backing'])))
    assert status == 202, body
    image = glance.wait(image_id)
    assert (image['status'], image['virtual_size']) == ('queued', None)
    assert any('backing_file' in m and 'refused by glance_vsize' in m
               for m in _task_messages(glance, image_id))
