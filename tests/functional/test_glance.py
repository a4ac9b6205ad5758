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


"""Both upload paths of a real Glance API with glance_vsize enabled.

Glance runs under gunicorn (tools/run-glance) with sqlite and file stores;
images come from the project's own generator; expectations from qemu-img.
"""

import functools
import http.server
import json
import os
import re
import threading

import pytest

from tests.functional import glance as glance_mod
from tests import helpers

pytestmark = helpers.requires_qemu_img

GLANCE_FORMATS = ('raw', 'iso', 'qcow2', 'vmdk', 'vhd', 'vhdx', 'vdi',
                  'ploop')


@pytest.fixture(scope='module')
def glance(tmp_path_factory):
    api = glance_mod.Glance(tmp_path_factory.mktemp('glance'))
    yield api
    api.stop()


def _safe(corpus):
    outdir, entries = corpus
    return [(os.path.join(outdir, e['file']), e) for e in entries
            if e['safe'] and e['disk_format'] in GLANCE_FORMATS]


def _unsafe(corpus):
    outdir, entries = corpus
    return [(os.path.join(outdir, e['file']), e) for e in entries
            if not e['safe']]


def _assert_clean(glance, image_id, stored=False):
    """Nothing of the image is staged; nothing stored unless it was."""
    assert not [f for f in glance.files_in('staging') if image_id in f]
    if not stored:
        assert not [f for f in glance.files_in('images') if image_id in f]


def test_create_image_path_sets_qemu_virtual_size(glance, corpus):
    misses = []
    for path, entry in _safe(corpus):
        image_id = glance.create(entry['disk_format'])
        status, body = glance.upload(image_id, path)
        image = glance.show(image_id)
        got = (status, image['status'], image['virtual_size'])
        if got != (204, 'active', entry['virtual_size']):
            misses.append('%s: %s %s' % (entry['file'], got, body[:200]))
    assert misses == []


def test_glance_direct_import_sets_qemu_virtual_size(glance, corpus):
    misses = []
    for path, entry in _safe(corpus):
        image_id = glance.create(entry['disk_format'])
        status, body = glance.upload(image_id, path, 'stage')
        assert status == 204, body
        status, body = glance.import_(image_id)
        assert status == 202, body
        image = glance.wait(image_id)
        got = (image['status'], image['virtual_size'])
        if got != ('active', entry['virtual_size']):
            misses.append('%s: %s %s' % (entry['file'], got,
                                         glance.task_messages(image_id)))
        _assert_clean(glance, image_id, stored=True)
    assert misses == []


@pytest.mark.parametrize('action', ['file', 'stage'])
def test_unsafe_uploads_are_refused_with_the_check_named(glance, corpus,
                                                         action):
    for path, entry in _unsafe(corpus):
        image_id = glance.create(entry['disk_format'] if entry['disk_format']
                                 in GLANCE_FORMATS else 'raw')
        status, body = glance.upload(image_id, path, action)
        assert status in (400, 415), (entry['file'], status, body)
        assert b'refused by glance_vsize' in body, body
        image = glance.show(image_id)
        assert image['status'] == 'queued', entry['file']
        assert image['virtual_size'] is None
        _assert_clean(glance, image_id)
    body = body.decode()
    assert 'backing_file' in body or 'unsupported_format' in body


@pytest.mark.parametrize('action', ['file', pytest.param(
    'stage', marks=pytest.mark.glance_fixed_in(
        '2025.2', "Glance 30's stage() handles no refusal of the body's "
        "reader (glance/api/v2/image_data.py: only store and quota errors) "
        "and logs every other error with a traceback"))])
def test_a_refusal_reads_as_a_refusal_in_glances_log(glance, corpus, action):
    outdir, _entries = corpus
    image_id = glance.create('qcow2')
    status, body = glance.upload(
        image_id, os.path.join(outdir, 'unsafe-qcow2-backing.qcow2'), action)
    assert status == 400, body
    refusal = [line for line in glance.log().splitlines() if re.search(
        r' ERROR glance\.api\.v2\.image_data \[(req-\S+|None req-\S+) .*'
        r'Image %s refused by glance_vsize .*backing_file' % image_id, line)]
    assert refusal, 'no refusal logged by Glance for %s' % image_id
    request_id = re.search(r'(req-[0-9a-f-]+)', refusal[0]).group(1)
    # What Glance logged for that request (its notifications aside: their
    # error text is Glance's own, the same for its own refusals).
    logged = [line for line in glance.log().splitlines()
              if request_id in line
              and ' oslo.messaging.notification.' not in line]
    assert not [line for line in logged if re.search(
        r'Traceback|due to internal error|due to HTTP error', line)], logged


def test_mismatched_disk_format_is_refused_naming_what_found(glance, corpus):
    outdir, _entries = corpus
    image_id = glance.create('raw')
    status, body = glance.upload(
        image_id, os.path.join(outdir, 'vdi-s0.vdi'))
    assert status == 415
    assert b'format_mismatch: disk_format is raw but the content is vdi' \
        in body
    assert glance.show(image_id)['status'] == 'queued'
    _assert_clean(glance, image_id)


class _Body:
    """A chunked request body of ``size`` bytes whose first MiB is an
    unsafe qcow2 (it names a backing file); counts what was sent.
    """

    def __init__(self, head, size):
        self.head, self.size, self.sent = head, size, 0

    def __iter__(self):
        yield self.head
        self.sent = len(self.head)
        block = b'\0' * (1 << 20)
        while self.sent < self.size:
            yield block
            self.sent += len(block)


def test_large_unsafe_upload_is_refused_from_its_header(glance, corpus):
    outdir, _entries = corpus
    with open(os.path.join(outdir, 'unsafe-qcow2-backing.qcow2'), 'rb') as f:
        head = f.read(1 << 20).ljust(1 << 20, b'\0')
    image_id = glance.create('qcow2')
    body = _Body(head, (1 << 30) + (8 << 20))
    status, reply = glance.request(
        'PUT', '/v2/images/%s/file' % image_id, body,
        {'Content-Type': 'application/octet-stream',
         'Transfer-Encoding': 'chunked'})
    assert status == 400
    assert b"backing_file: backing file 'base.qcow2'" in reply
    assert body.sent >= 1 << 30   # the client could send it all
    stored = [int(m.group(1)) for m in re.finditer(
        r'%s refused by .*\(refused after (\d+) bytes' % image_id,
        glance.log())]
    assert stored and stored[-1] < 16 << 20
    assert glance.show(image_id)['status'] == 'queued'
    _assert_clean(glance, image_id)


@pytest.fixture(scope='module')
def web_server(corpus):
    outdir, _entries = corpus
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=outdir)
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield 'http://127.0.0.1:%d' % server.server_address[1]
    server.shutdown()


@pytest.mark.parametrize('name', ['vhd-dynamic-forceoff-s1.vhd',
                                  'vhd-fixed-forceoff-s0.vhd',
                                  'hybrid.iso', 'raw-odd.raw',
                                  'ploop-s1.ploop'])
def test_web_download_keeps_qemu_virtual_size(glance, corpus, web_server,
                                              name):
    _outdir, entries = corpus
    entry = next(e for e in entries if e['file'] == name)
    image_id = glance.create(entry['disk_format'])
    status, body = glance.import_(image_id, 'web-download',
                                  uri='%s/%s' % (web_server, name))
    assert status == 202, body
    image = glance.wait(image_id)
    assert (image['status'], image['virtual_size']) == (
        'active', entry['virtual_size']), glance.task_messages(image_id)
    _assert_clean(glance, image_id, stored=True)


def test_web_download_of_an_unsafe_image_fails_cleanly(glance, web_server):
    image_id = glance.create('qcow2')
    status, body = glance.import_(
        image_id, 'web-download',
        uri='%s/unsafe-qcow2-datafile.qcow2' % web_server)
    assert status == 202, body
    image = glance.wait(image_id)
    assert image['status'] == 'queued'
    assert image['virtual_size'] is None
    assert any('data_file' in m for m in glance.task_messages(image_id))
    _assert_clean(glance, image_id)


def test_copy_image_keeps_the_virtual_size(glance, corpus):
    outdir, entries = corpus
    entry = next(e for e in entries
                 if e['file'] == 'vhd-dynamic-forceoff-s1.vhd')
    image_id = glance.create('vhd')
    status, body = glance.upload(image_id,
                                 os.path.join(outdir, entry['file']), 'stage')
    assert status == 204, body
    status, body = glance.import_(image_id, stores=['local'])
    assert status == 202, body
    assert glance.wait(image_id)['virtual_size'] == entry['virtual_size']
    # copy-image is for admins only (Glance's default policy copy_image);
    # its task belongs to the admin's project, so the admin waits for it.
    admin = glance.as_admin()
    status, body = admin.import_(image_id, 'copy-image', stores=['second'])
    assert status == 202, body
    image = admin.wait(image_id)
    assert 'second' in image['stores']
    assert image['virtual_size'] == entry['virtual_size']


@pytest.mark.parametrize('path_kind', ['create', 'import'])
@pytest.mark.parametrize('name', ['qcow2-l2ext-s0.qcow2',
                                  'vhd-fixed-forceoff-s0.vhd',
                                  'ploop-s1.ploop', 'hybrid.iso'])
def test_what_oslo_utils_refuses_or_missizes_becomes_active(
        glance, corpus, name, path_kind):
    """With Glance's own require_image_format_match (True): oslo.utils
    refuses extended L2 entries, reads fixed VHD and ploop as raw, sizes
    a hybrid ISO by its volume; Glance now takes glance_vsize's verdict.
    """
    conf = open(os.path.join(glance.data_dir, 'etc',
                             'glance-api.conf')).read()
    assert not re.search(r'^require_image_format_match *= *False', conf,
                         re.M)
    outdir, entries = corpus
    entry = next(e for e in entries if e['file'] == name)
    path = os.path.join(outdir, name)
    image_id = glance.create(entry['disk_format'])
    if path_kind == 'create':
        status, body = glance.upload(image_id, path)
        assert status == 204, body
    else:
        status, body = glance.upload(image_id, path, 'stage')
        assert status == 204, body
        status, body = glance.import_(image_id)
        assert status == 202, body
    image = glance.wait(image_id)
    assert (image['status'], image['virtual_size']) == (
        'active', helpers.qemu_info(path, entry['disk_format'])[
            'virtual-size']), glance.task_messages(image_id)


def test_openstack_cli_create_and_import(glance, corpus):
    outdir, entries = corpus
    for name in ('vhd-dynamic-forceoff-s1.vhd', 'qcow2-v1.1-c64k-s1.qcow2'):
        entry = next(e for e in entries if e['file'] == name)
        path = os.path.join(outdir, name)
        for extra in ([], ['--import']):
            proc = glance.openstack(
                'image', 'create', *extra, '--disk-format',
                entry['disk_format'], '--container-format', 'bare',
                '--file', path, '-f', 'json', 'cli-' + name)
            assert proc.returncode == 0, proc.stderr
            image_id = json.loads(proc.stdout)['id']
            image = glance.wait(image_id)
            shown = glance.openstack('image', 'show', '-f', 'json', image_id)
            assert json.loads(shown.stdout)['virtual_size'] == \
                entry['virtual_size'], (name, extra, image)
    proc = glance.openstack(
        'image', 'create', '--disk-format', 'qcow2', '--container-format',
        'bare', '--file', os.path.join(outdir, 'unsafe-qcow2-backing.qcow2'),
        'cli-unsafe')
    assert proc.returncode != 0
    assert 'backing_file' in proc.stderr + proc.stdout
