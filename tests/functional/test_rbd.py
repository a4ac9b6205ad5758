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


"""glance_vsize on Glance's distributed pieces: the RBD store and two API
nodes.

One lab for the module: ``tools/run-glance --store rbd --nodes 2`` (on the
lab's PostgreSQL, the default with several nodes), so a single-node Ceph
cluster (Debian's packages, installed when missing) holds the images, and
two API nodes with their own staging directories share Keystone, the
database and the store.  Skipped, saying why, only where Ceph cannot be
installed.  After every test, ``rbd ls images`` lists exactly the images
Glance holds active in the RBD store: nothing refused is left behind.
"""

import concurrent.futures
import os
import re
import struct
import subprocess
import sys
import sysconfig
import threading

import pytest

from tests.functional import glance as glance_mod
from tests.functional import mixed
from tests import helpers

sys.path.insert(0, os.path.join(glance_mod.REPO, 'tools'))
from lab import ceph  # noqa: E402
from lab import cephpkg  # noqa: E402
from lab import ini  # noqa: E402
from lab import nodes  # noqa: E402
from lab import postgres  # noqa: E402

pytestmark = helpers.requires_qemu_img

#: (name, disk_format, qemu-img create arguments)
IMAGES = (
    ('qcow2', 'qcow2', ['-f', 'qcow2'], '1G'),
    ('vhd-dynamic', 'vhd', ['-f', 'vpc', '-o', 'subformat=dynamic'], '1G'),
    ('vhd-fixed', 'vhd', ['-f', 'vpc', '-o', 'subformat=fixed'], '24M'),
    ('ploop', 'ploop', ['-f', 'parallels'], '1G'),
)
QEMU_FMT = {'qcow2': 'qcow2', 'vhd': 'vpc', 'ploop': 'parallels'}


#: The module's lab: no --database, so the lab's PostgreSQL.
LAB_ARGS = ['--store', 'rbd', '--nodes', '2']


@pytest.fixture(scope='module')
def lab(pg_lab_dir):
    try:
        cephpkg.ensure_installed(say=lambda text: None)
    except cephpkg.Unavailable as exc:
        pytest.skip('Ceph cannot be installed here: %s' % exc)
    api = glance_mod.Glance(pg_lab_dir, port=glance_mod.node_ports(),
                            extra_args=LAB_ARGS)
    yield api
    api.stop()


def node_log(glance, n):
    path = os.path.join(nodes.node_dir(glance.data_dir, n), 'log',
                        'glance-api.log')
    with open(path) as f:
        return f.read()


def rbd_ls(glance):
    return set(ceph.Cluster(os.path.join(glance.data_dir, 'ceph')).rbd_ls())


def assert_rbd_holds_exactly_the_active_images(glance):
    status, body = glance.as_admin().json('GET', '/v2/images?limit=1000')
    assert status == 200, body
    active = {i['id'] for i in body['images'] if i['status'] == 'active'
              and nodes.RBD_BACKEND in i.get('stores', '').split(',')}
    assert rbd_ls(glance) == active


def staged(glance):
    """Files in both nodes' staging directories."""
    return [f for n in (1, 2) for f in os.listdir(os.path.join(
        nodes.node_dir(glance.data_dir, n), 'staging'))]


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """name: (path, disk_format, qemu-img's virtual size)"""
    d = tmp_path_factory.mktemp('rbd-images')
    out = {}
    for name, disk_format, args, size in IMAGES:
        path = str(d / name)
        helpers.qemu_img('create', '-q', *args, path, size)
        info = helpers.qemu_info(path, QEMU_FMT[disk_format])
        out[name] = (path, disk_format, info['virtual-size'])
    # Refused at the header: a qcow2 naming a backing file.
    path = str(d / 'backing.qcow2')
    helpers.qemu_img('create', '-q', '-f', 'qcow2', '-b', out['qcow2'][0],
                     '-F', 'qcow2', path)
    out['unsafe-header'] = (path, 'qcow2', None)
    out['unsafe-late'] = (late_vhd(str(d)), 'vhd', None)
    return out


def late_vhd(directory):
    """A dynamic VHD of 4 MiB of data whose BAT maps a block past the end
    of the file: refused only once the upload's end shows the size, after
    Glance stored the rest (qemu-img cannot open it either).
    """
    raw = os.path.join(directory, 'late.raw')
    with open(raw, 'wb') as f:
        f.write(os.urandom(3 << 20))
    path = os.path.join(directory, 'late.vhd')
    helpers.qemu_img('convert', '-f', 'raw', '-O', 'vpc', '-o',
                     'subformat=dynamic', raw, path)
    with open(path, 'r+b') as f:
        f.seek(512 + 16)
        bat = struct.unpack('>Q', f.read(8))[0]
        f.seek(bat + 4)
        f.write(struct.pack('>I', os.path.getsize(path) // 512 + 100000))
    assert os.path.getsize(path) > 1 << 20
    assert helpers.qemu_info(path, 'vpc') is None, \
        'qemu-img opens the truncated VHD'
    return path


def test_only_debians_rados_and_rbd_modules_are_in_the_venv(lab):
    site = sysconfig.get_paths()['purelib']
    linked = sorted(
        name.split('.')[0] for name in os.listdir(site)
        if os.path.realpath(os.path.join(site, name)).startswith(
            cephpkg.DIST_PACKAGES + '/'))
    assert linked == ['rados', 'rbd']
    proc = subprocess.run(
        [sys.executable, '-c', 'import sys, rados, rbd; print(rados.__file__);'
         ' print([p for p in sys.path if "dist-packages" in p])'],
        capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines()[1] == '[]'


def test_each_node_is_wired_with_its_own_url_and_staging(lab):
    seen = set()
    for n in (1, 2):
        etc = os.path.join(nodes.node_dir(lab.data_dir, n), 'etc')
        proc = subprocess.run(
            [os.path.join(glance_mod.VENV_BIN, 'glance-vsize-status'),
             'upgrade', 'check', '--config-dir', etc],
            capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        conf = os.path.join(etc, 'glance-api.conf')
        seen.add((
            ini.iniget(conf, 'DEFAULT', 'worker_self_reference_url'),
            ini.iniget(conf, 'os_glance_staging_store',
                       'filesystem_store_datadir'),
            ini.iniget(conf, 'glance_store', 'default_backend'),
            ini.iniget(conf, 'database', 'connection')))
    # One database for both: the lab's PostgreSQL.
    url = postgres.Cluster(os.path.join(lab.data_dir, 'postgres')).url
    assert seen == {(lab.node(n).endpoint, os.path.join(
        nodes.node_dir(lab.data_dir, n), 'staging'), nodes.RBD_BACKEND, url)
        for n in (1, 2)}


@pytest.mark.parametrize('name', [i[0] for i in IMAGES])
def test_stage_on_node_1_import_through_node_2(lab, images, name):
    path, disk_format, vsize = images[name]
    one, two = lab.node(1), lab.node(2)
    image_id = one.create(disk_format)
    status, body = one.upload(image_id, path, 'stage')
    assert status == 204, body
    assert os.listdir(os.path.join(lab.data_dir, 'staging')) == [image_id]
    proxy = 'Proxying POST request to host %s' % one.endpoint
    proxied = node_log(lab, 2).count(proxy)
    status, body = two.import_(image_id)
    assert status == 202, body
    image = two.wait(image_id)
    assert (image['status'], image['virtual_size'], image['stores']) == (
        'active', vsize, nodes.RBD_BACKEND), image
    # Node 2 had no staged data: it handed the call to node 1.
    assert node_log(lab, 2).count(proxy) == proxied + 1
    assert image_id in rbd_ls(lab)
    assert staged(lab) == []
    assert_rbd_holds_exactly_the_active_images(lab)


@pytest.mark.parametrize('n', [1, 2])
def test_create_image_on_each_node(lab, images, n):
    api = lab.node(n)
    for name in ('qcow2', 'vhd-dynamic'):
        path, disk_format, vsize = images[name]
        image_id = api.create(disk_format)
        status, body = api.upload(image_id, path)
        assert status == 204, body
        image = api.show(image_id)
        assert (image['status'], image['virtual_size'], image['stores']) == (
            'active', vsize, nodes.RBD_BACKEND), image
    assert_rbd_holds_exactly_the_active_images(lab)


def test_copy_image_between_rbd_and_file(lab, images):
    path, disk_format, vsize = images['vhd-dynamic']
    admin = lab.as_admin()
    # rbd -> file
    image_id = lab.create(disk_format)
    assert lab.upload(image_id, path)[0] == 204
    status, body = admin.import_(image_id, 'copy-image', stores=['local'])
    assert status == 202, body
    # The copy's task is the admin's: the admin waits for it.
    image = admin.wait(image_id)
    assert (image['stores'], image['virtual_size']) == (
        '%s,local' % nodes.RBD_BACKEND, vsize), image
    assert image_id in lab.files_in('images')
    # file -> rbd
    other = lab.create(disk_format)
    status, body = lab.request(
        'PUT', '/v2/images/%s/file' % other, open(path, 'rb'),
        {'Content-Type': 'application/octet-stream',
         'X-Image-Meta-Store': 'local'})
    assert status == 204, body
    assert other not in rbd_ls(lab)
    status, body = admin.import_(other, 'copy-image',
                                 stores=[nodes.RBD_BACKEND])
    assert status == 202, body
    image = admin.wait(other)
    assert (image['stores'], image['virtual_size']) == (
        'local,%s' % nodes.RBD_BACKEND, vsize), image
    assert other in rbd_ls(lab)
    assert_rbd_holds_exactly_the_active_images(lab)


@pytest.mark.parametrize('name', ['unsafe-header', 'unsafe-late'])
@pytest.mark.parametrize('n', [1, 2])
@pytest.mark.parametrize('action', ['file', 'stage'])
def test_unsafe_upload_refused_with_nothing_left(lab, images, name, n,
                                                 action):
    path, disk_format, _ = images[name]
    api = lab.node(n)
    before = rbd_ls(lab)
    image_id = api.create(disk_format)
    status, body = api.upload(image_id, path, action)
    assert status in (400, 415), body
    assert b'refused by glance_vsize' in body
    image = api.show(image_id)
    assert (image['status'], image['virtual_size']) == ('queued', None)
    assert rbd_ls(lab) == before
    assert staged(lab) == []
    log = node_log(lab, n)
    read = int(re.search(r'Image %s refused by glance_vsize .*\(refused '
                         r'after (\d+) bytes' % image_id, log).group(1))
    if name == 'unsafe-late':
        # Refused at the end of the body, once its length showed the BAT
        # entry past it: the store had written all the rest (and the rbd
        # driver deleted its image when the last read failed).
        assert read == os.path.getsize(path) > 1 << 20
    else:
        assert read <= 1 << 20
    if action == 'file':
        assert 'Failed to store image %s' % image_id in log
    assert_rbd_holds_exactly_the_active_images(lab)


def test_32_concurrent_mixed_uploads_across_nodes(lab, corpus):
    outdir, entries = corpus
    jobs = mixed.plan(outdir, entries)
    start = threading.Barrier(len(jobs))
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        # create-image alternates nodes; an import stages on one node and
        # imports through the other.
        futures = [pool.submit(mixed.run_job, lab.node(1 + i % 2),
                               lab.node(2 - i % 2), start, *job,
                               timeout=240)
                   for i, job in enumerate(jobs)]
        outcomes = [f.result(timeout=mixed.DEADLINE) for f in futures]
    wrong = mixed.wrong(outcomes, stores=nodes.RBD_BACKEND)
    assert wrong == [], '%d of %d wrong' % (len(wrong), len(outcomes))
    assert sum(not o.entry['safe'] for o in outcomes) == len(jobs) // 4
    safe = {o.image_id for o in outcomes if o.entry['safe']}
    assert safe <= rbd_ls(lab)
    assert not {o.image_id for o in outcomes if not o.entry['safe']} & \
        rbd_ls(lab)
    assert staged(lab) == []
    assert_rbd_holds_exactly_the_active_images(lab)


def _ceph_daemons(conf):
    """pids of processes whose command line names ``conf``."""
    found = []
    for pid in os.listdir('/proc'):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                if conf.encode() in f.read():
                    found.append(pid)
        except OSError:
            continue
    return found


def test_stop_stops_ceph_and_a_second_start_reuses_it(lab, images):
    """Last in the module: stops the module's lab."""
    kept = sorted(rbd_ls(lab))
    assert kept
    conf = os.path.join(lab.data_dir, 'ceph', 'ceph.conf')
    assert _ceph_daemons(conf)
    lab.stop()
    assert _ceph_daemons(conf) == []
    again = glance_mod.Glance(lab.data_dir, port=lab.port,
                              extra_args=LAB_ARGS)
    try:
        output = ''.join(again.output)
        assert 'Ceph (bluestore) started' in output
        assert 'PostgreSQL started' in output
        assert sorted(rbd_ls(again)) == kept
        path, disk_format, vsize = images['qcow2']
        image_id = again.node(2).create(disk_format)
        assert again.node(2).upload(image_id, path)[0] == 204
        assert again.show(image_id)['virtual_size'] == vsize
        with open(path, 'rb') as f:
            want = f.read()
        status, data = again.request('GET', '/v2/images/%s/file' % image_id)
        assert (status, data == want) == (200, True)
        assert_rbd_holds_exactly_the_active_images(again)
    finally:
        again.stop()
