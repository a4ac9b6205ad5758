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


"""One inspection, one truth (issue 11), on a real Glance.

Glance's own ``set_data`` answers with glance_vsize's verdict: while an
image is created or imported, the API and every notification Glance sends
show no virtual_size or qemu-img's, never another value; whatever the
notification settings; and a failed import leaves the image as Glance
alone would.  Glance's settings are its defaults
(``require_image_format_match = True``); the tests change Glance's
notification options through oslo.config's environment source
(``OS_<GROUP>__<OPTION>``), which the Glance processes inherit; tools/
run-glance logs the notifications (oslo.messaging's ``log`` driver).
"""

import functools
import http.server
import json
import os
import re
import threading
import time

import pytest

from tests.functional import glance as glance_mod
from tests import helpers

pytestmark = helpers.requires_qemu_img

GIB = 1 << 30
POLL = 0.02


def _start(tmp_path_factory, env, extra_args=()):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return glance_mod.Glance(tmp_path_factory.mktemp('glance'),
                                 extra_args=extra_args)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope='module')
def notifying_glance(tmp_path_factory):
    """Notifications through oslo.messaging's log driver, into Glance's
    log, where the test reads what consumers of image.update get.
    """
    api = glance_mod.Glance(tmp_path_factory.mktemp('glance'))
    yield api
    api.stop()


@pytest.fixture(scope='module')
def quiet_glance(tmp_path_factory):
    api = _start(tmp_path_factory,
                 {'OS_DEFAULT__DISABLED_NOTIFICATIONS': 'image.update'})
    yield api
    api.stop()


@pytest.fixture(scope='module')
def converting_glance(tmp_path_factory):
    api = glance_mod.Glance(
        tmp_path_factory.mktemp('glance'),
        extra_args=['--import-plugins', 'glance_vsize,image_conversion'])
    yield api
    api.stop()


@pytest.fixture(scope='module')
def big_vhd(tmp_path_factory):
    """A 1 GiB dynamic VHD with data in it (qemu-img convert of a raw disk
    with random blocks).
    """
    tmp = tmp_path_factory.mktemp('bigvhd')
    raw = str(tmp / 'disk.raw')
    with open(raw, 'wb') as f:
        f.truncate(GIB)
        for offset in range(0, GIB, 64 << 20):
            f.seek(offset)
            f.write(os.urandom(1 << 20))
    path = str(tmp / 'disk.vhd')
    helpers.qemu_img('convert', '-f', 'raw', '-O', 'vpc', raw, path)
    os.unlink(raw)
    return path


class _Poller:
    """GET the image every 20 ms; record every virtual_size seen."""

    def __init__(self, glance, image_id):
        self.glance, self.image_id = glance, image_id
        self.seen, self.polls = set(), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            status, image = self.glance.json(
                'GET', '/v2/images/%s' % self.image_id)
            if status == 200:
                self.seen.add(image['virtual_size'])
                self.polls += 1
            time.sleep(POLL)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.seen


def _notifications(glance, image_id):
    """(event_type, virtual_size) of every notification about the image
    that Glance logged (oslo.messaging's log driver).
    """
    found = []
    for line in glance.log().splitlines():
        match = re.search(r'oslo\.messaging\.notification\.(\S+) .*?(\{.*)$',
                          line)
        if not match:
            continue
        try:
            message = json.loads(match.group(2))
        except ValueError:
            continue
        payload = message.get('payload')
        if isinstance(payload, dict) and payload.get('id') == image_id \
                and 'virtual_size' in payload:
            found.append((message.get('event_type'),
                          payload['virtual_size']))
    return found


@pytest.fixture(scope='module')
def web_server(tmp_path_factory, corpus, big_vhd):
    """Serves the 1 GiB VHD and the hybrid ISO for web-download."""
    root = tmp_path_factory.mktemp('www')
    os.symlink(big_vhd, root / 'disk.vhd')
    os.symlink(_hybrid_iso(corpus), root / 'hybrid.iso')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(root))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield 'http://127.0.0.1:%d' % server.server_address[1]
    server.shutdown()


def _create_and_upload(glance, path, disk_format, path_kind, url=None):
    image_id = glance.create(disk_format)
    poller = _Poller(glance, image_id)
    if path_kind == 'create':
        status, body = glance.upload(image_id, path)
        assert status == 204, body
    elif path_kind == 'web-download':
        status, body = glance.import_(image_id, 'web-download', uri=url)
        assert status == 202, body
    else:
        status, body = glance.upload(image_id, path, 'stage')
        assert status == 204, body
        status, body = glance.import_(image_id, stores=['local'])
        assert status == 202, body
    image = glance.wait(image_id, timeout=600)
    if path_kind == 'copy-image':
        assert image['status'] == 'active', image
        # copy-image is for admins (Glance's default copy_image policy).
        admin = glance.as_admin()
        status, body = admin.import_(image_id, 'copy-image',
                                     stores=['second'])
        assert status == 202, body
        image = admin.wait(image_id, timeout=600)
        assert 'second' in image['stores'].split(','), image
    time.sleep(0.2)
    return image_id, image, poller.stop(), poller.polls


def _hybrid_iso(corpus):
    outdir, _entries = corpus
    return os.path.join(outdir, 'hybrid.iso')


@pytest.mark.parametrize('path_kind', ['create', 'glance-direct',
                                       'web-download', 'copy-image'])
@pytest.mark.parametrize('which', ['vhd-1gib', 'hybrid-iso'])
def test_only_qemu_size_is_ever_seen(notifying_glance, corpus, big_vhd,
                                     web_server, which, path_kind):
    glance = notifying_glance
    path, disk_format, name = (
        (big_vhd, 'vhd', 'disk.vhd') if which == 'vhd-1gib'
        else (_hybrid_iso(corpus), 'iso', 'hybrid.iso'))
    qemu = helpers.qemu_info(path, disk_format)['virtual-size']
    image_id, image, seen, polls = _create_and_upload(
        glance, path, disk_format, path_kind,
        url='%s/%s' % (web_server, name))
    assert (image['status'], image['virtual_size']) == ('active', qemu)
    assert polls > 5
    assert seen <= {None, qemu}, seen
    sent = _notifications(glance, image_id)
    assert ('image.upload', qemu) in sent or ('image.update', qemu) in sent
    assert {size for _event, size in sent} <= {None, qemu}, sent


@pytest.mark.parametrize('path_kind', ['create', 'glance-direct'])
def test_disabled_image_update_notifications_change_nothing(
        quiet_glance, corpus, path_kind):
    glance = quiet_glance
    outdir, entries = corpus
    for name in ('vhd-dynamic-forceoff-s1.vhd', 'hybrid.iso',
                 'vhd-fixed-forceoff-s0.vhd'):
        entry = next(e for e in entries if e['file'] == name)
        image_id, image, seen, _polls = _create_and_upload(
            glance, os.path.join(outdir, name), entry['disk_format'],
            path_kind)
        assert (image['status'], image['virtual_size']) == (
            'active', entry['virtual_size']), name
        assert seen <= {None, entry['virtual_size']}, (name, seen)
        assert not [e for e, _size in _notifications(glance, image_id)
                    if e == 'image.update']


def test_failed_conversion_leaves_the_image_queued_without_size(
        converting_glance, corpus):
    """image_conversion fails a dynamic VHD (it asks qemu-img for driver
    'vhd', which qemu calls 'vpc') after glance_vsize set the size.
    """
    glance = converting_glance
    outdir, _entries = corpus
    image_id = glance.create('vhd')
    status, body = glance.upload(
        image_id, os.path.join(outdir, 'vhd-dynamic-forceoff-s1.vhd'),
        'stage')
    assert status == 204, body
    status, body = glance.import_(image_id)
    assert status == 202, body
    image = glance.wait(image_id)
    assert (image['status'], image['virtual_size']) == ('queued', None)
    assert 'Image %s: virtual_size' % image_id in glance.log()


def test_successful_conversion_keeps_qemu_size(converting_glance, corpus):
    glance = converting_glance
    outdir, entries = corpus
    entry = next(e for e in entries
                 if e['file'] == 'qcow2-v1.1-c64k-s1.qcow2')
    image_id = glance.create('qcow2')
    status, body = glance.upload(image_id,
                                 os.path.join(outdir, entry['file']), 'stage')
    assert status == 204, body
    status, body = glance.import_(image_id)
    assert status == 202, body
    image = glance.wait(image_id)
    assert (image['status'], image['disk_format'], image['virtual_size']) \
        == ('active', 'raw', entry['virtual_size'])
