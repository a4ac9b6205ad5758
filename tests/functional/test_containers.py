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


"""OVA and compressed images on both paths of a real Glance API, and with
Glance's own image_decompression import plugin before (and after)
glance_vsize.  Archives are made by tar, gzip, bzip2, xz, zstd and zip
from qemu-img images; expectations come from qemu-img.
"""

import functools
import http.server
import json
import os
import shutil
import threading
import zipfile

import pytest

from glance_vsize.glance import releases
from tests import containergen
from tests.functional import glance as glance_mod
from tests import helpers
from tests import imagegen

pytestmark = helpers.requires_qemu_img

G = 1 << 30
TOOLS = [t for t in containergen.TOOLS
         if shutil.which(t) or os.environ.get('CI')]


def _glance(tmp_path_factory, name, *args):
    api = glance_mod.Glance(tmp_path_factory.mktemp(name), extra_args=args)
    return api


@pytest.fixture(scope='module')
def glance(tmp_path_factory):
    api = _glance(tmp_path_factory, 'glance')
    yield api
    api.stop()


@pytest.fixture(scope='module')
def glance_decompress(tmp_path_factory):
    """image_decompression first, then glance_vsize: the documented order."""
    api = _glance(tmp_path_factory, 'glance-dec', '--import-plugins',
                  'image_decompression,glance_vsize')
    yield api
    api.stop()


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp('containers')
    raw = imagegen.payload(str(out / 'data.raw'), 16 << 20, 9, mbr=True)
    helpers.qemu_img('convert', '-q', '-f', 'raw', '-O', 'vmdk', '-o',
                     'subformat=streamOptimized', raw, str(out / 'boot.vmdk'))
    helpers.qemu_img('convert', '-q', '-f', 'raw', '-O', 'qcow2', raw,
                     str(out / 'data.qcow2'))
    os.unlink(raw)
    helpers.create(out / 'second.qcow2', 'qcow2', 3 * G + 512)
    helpers.create(out / 'base.qcow2', 'qcow2', G)
    helpers.create(out / 'child.qcow2', 'qcow2', G,
                   'backing_file=base.qcow2,backing_fmt=qcow2')
    size = {name: helpers.qemu_info(out / name)['virtual-size']
            for name in ('boot.vmdk', 'data.qcow2', 'child.qcow2')}
    made = {'size': size, 'dir': str(out)}
    made['ova'] = containergen.ova(out / 'vm.ova', out, [
        ('boot.vmdk', size['boot.vmdk'], containergen.VMDK_STREAM),
        ('second.qcow2', 3 * G + 512, containergen.QCOW2_URI)], 'pax')
    made['unsafe.ova'] = containergen.ova(out / 'unsafe.ova', out, [
        ('boot.vmdk', size['boot.vmdk'], containergen.VMDK_STREAM),
        ('child.qcow2', G, containergen.QCOW2_URI)])
    for tool in TOOLS:
        made[tool] = containergen.compress(out / 'data.qcow2', tool)
    made['unsafe.gz'] = containergen.compress(out / 'child.qcow2', 'gzip')
    made['bomb.gz'] = containergen.gzip_bomb(str(out / 'bomb.gz'), 10 * G)
    made['zip'] = str(out / 'data.zip')
    with zipfile.ZipFile(made['zip'], 'w', zipfile.ZIP_DEFLATED) as archive:
        archive.write(out / 'data.qcow2', 'data.qcow2')
    return made


def _cases(files):
    """(name, path, disk_format, container_format, virtual size)."""
    size = files['size']
    yield 'ova', files['ova'], 'vmdk', 'ova', size['boot.vmdk']
    for tool in TOOLS:
        yield tool, files[tool], 'qcow2', 'compressed', size['data.qcow2']


def _assert_clean(glance, image_id):
    assert not [f for f in glance.files_in('staging') if image_id in f]
    assert not [f for f in glance.files_in('images') if image_id in f]


def test_create_image_path_sets_the_inner_virtual_size(glance, files):
    misses = []
    for name, path, disk, container, want in _cases(files):
        image_id = glance.create(disk, container)
        status, body = glance.upload(image_id, path)
        image = glance.show(image_id)
        got = (status, image['status'], image['virtual_size'],
               image['size'])
        if got != (204, 'active', want, os.path.getsize(path)):
            misses.append('%s: %s %s' % (name, got, body[:300]))
    assert misses == []


def test_glance_direct_import_sets_the_inner_virtual_size(glance, files):
    misses = []
    for name, path, disk, container, want in _cases(files):
        image_id = glance.create(disk, container)
        status, body = glance.upload(image_id, path, 'stage')
        assert status == 204, body
        status, body = glance.import_(image_id)
        assert status == 202, body
        image = glance.wait(image_id)
        got = (image['status'], image['virtual_size'],
               image['container_format'])
        if got != ('active', want, container):
            misses.append('%s: %s %s' % (name, got,
                                         glance.task_messages(image_id)))
    assert misses == []


@pytest.mark.parametrize('action', ['file', 'stage'])
@pytest.mark.parametrize('key,disk,container,check', [
    ('unsafe.ova', 'vmdk', 'ova', "member 'child.qcow2': backing file"),
    ('unsafe.gz', 'qcow2', 'compressed', 'backing_file: in the gzip data'),
    ('bomb.gz', 'raw', 'compressed', 'compression_ratio'),
    ('zip', 'qcow2', 'compressed', 'compression: the data is a zip'),
    ('ova', 'qcow2', 'ova', "disk_format is qcow2 but member 'boot.vmdk'")])
def test_unsafe_containers_are_refused(glance, files, action, key, disk,
                                       container, check):
    image_id = glance.create(disk, container)
    status, body = glance.upload(image_id, files[key], action)
    assert status in (400, 415), (status, body)
    message = json.loads(body)['message']
    assert 'refused by glance_vsize (disk_format %s, container_format %s)' % (
        disk, container) in message
    assert check in message
    image = glance.show(image_id)
    assert (image['status'], image['virtual_size']) == ('queued', None)
    _assert_clean(glance, image_id)


@pytest.fixture(scope='module')
def web_server(files):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=files['dir'])
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield 'http://127.0.0.1:%d' % server.server_address[1]
    server.shutdown()


@pytest.mark.parametrize('name,disk,container,want', [
    ('vm.ova', 'vmdk', 'ova', 'boot.vmdk'),
    ('data.qcow2.zst', 'qcow2', 'compressed', 'data.qcow2'),
    ('unsafe.ova', 'vmdk', 'ova', None)])
def test_web_download(glance, files, web_server, name, disk, container,
                      want):
    if name.endswith('.zst') and 'zstd' not in TOOLS:
        pytest.skip('zstd is not installed')
    image_id = glance.create(disk, container)
    status, body = glance.import_(image_id, 'web-download',
                                  uri='%s/%s' % (web_server, name))
    assert status == 202, body
    image = glance.wait(image_id)
    if want is None:
        assert (image['status'], image['virtual_size']) == ('queued', None)
        assert any('backing_file' in m for m in glance.task_messages(
            image_id))
        _assert_clean(glance, image_id)
    else:
        assert (image['status'], image['virtual_size']) == (
            'active', files['size'][want]), glance.task_messages(image_id)


def test_openstack_cli_with_an_ova(glance, files):
    for extra in ([], ['--import']):
        proc = glance.openstack(
            'image', 'create', *extra, '--disk-format', 'vmdk',
            '--container-format', 'ova', '--file', files['ova'], '-f',
            'json', 'cli-ova')
        assert proc.returncode == 0, proc.stderr
        image_id = json.loads(proc.stdout)['id']
        glance.wait(image_id)
        shown = glance.openstack('image', 'show', '-f', 'json', image_id)
        assert json.loads(shown.stdout)['virtual_size'] == \
            files['size']['boot.vmdk'], extra


# Glance's image_decompression import plugin ------------------------------

#: Glance 30 and 31 break image_decompression themselves (the table:
#: glance_vsize.glance.releases): these imports cannot end active there.
decompression_fixed = pytest.mark.glance_fixed_in(
    '2026.1', releases.by_name('2025.1').broken_plugins[0].why)


def _stage_and_import(glance, path, disk, container):
    image_id = glance.create(disk, container)
    status, body = glance.upload(image_id, path, 'stage')
    if status != 204:
        return image_id, status, body
    status, body = glance.import_(image_id)
    assert status == 202, body
    return image_id, status, glance.wait(image_id)


@decompression_fixed
def test_decompression_then_vsize_on_a_gzip_in_a_bare_container(
        glance_decompress, files):
    """image_decompression replaces the staged gzip by the qcow2 inside
    and sets size; the container stays bare and glance_vsize inspects
    the qcow2 (at stage, through gzip).
    """
    image_id, status, image = _stage_and_import(
        glance_decompress, files['gzip'], 'qcow2', 'bare')
    assert status == 202
    assert (image['status'], image['container_format'],
            image['virtual_size'], image['size']) == (
        'active', 'bare', files['size']['data.qcow2'],
        os.path.getsize(os.path.join(files['dir'], 'data.qcow2'))), \
        glance_decompress.task_messages(image_id)


def test_decompression_leaves_compressed_containers_to_vsize(
        glance_decompress, files):
    image_id, status, image = _stage_and_import(
        glance_decompress, files['gzip'], 'qcow2', 'compressed')
    assert (image['status'], image['container_format'],
            image['virtual_size'], image['size']) == (
        'active', 'compressed', files['size']['data.qcow2'],
        os.path.getsize(files['gzip'])), \
        glance_decompress.task_messages(image_id)


@decompression_fixed
def test_decompression_of_a_zip_is_inspected_after_extraction(
        glance_decompress, files):
    image_id, status, image = _stage_and_import(
        glance_decompress, files['zip'], 'qcow2', 'bare')
    assert (image['status'], image['virtual_size']) == (
        'active', files['size']['data.qcow2']), \
        glance_decompress.task_messages(image_id)


@pytest.mark.parametrize('key,check', [('bomb.gz', 'compression_ratio'),
                                       ('unsafe.gz', 'backing_file')])
def test_decompression_bombs_and_unsafe_images_are_refused_at_stage(
        glance_decompress, files, key, check):
    """Before image_decompression could expand them."""
    image_id, status, body = _stage_and_import(
        glance_decompress, files[key], 'qcow2' if key == 'unsafe.gz'
        else 'raw', 'bare')
    assert status == 400, body
    assert check in json.loads(body)['message']
    _assert_clean(glance_decompress, image_id)


@decompression_fixed
def test_decompression_listed_after_vsize(tmp_path_factory, files):
    """The wrong order still gives the right virtual_size for gzip (read
    through gzip), and refuses a zip, which glance_vsize cannot see
    into, with a message naming the fix.
    """
    api = _glance(tmp_path_factory, 'glance-late', '--import-plugins',
                  'glance_vsize,image_decompression')
    try:
        image_id, _status, image = _stage_and_import(
            api, files['gzip'], 'qcow2', 'bare')
        assert (image['status'], image['virtual_size']) == (
            'active', files['size']['data.qcow2']), \
            api.task_messages(image_id)
        image_id, _status, image = _stage_and_import(
            api, files['zip'], 'qcow2', 'bare')
        assert image['status'] == 'queued'
        assert any('list image_decompression before glance_vsize' in m
                   for m in api.task_messages(image_id))
        _assert_clean(api, image_id)
    finally:
        api.stop()
