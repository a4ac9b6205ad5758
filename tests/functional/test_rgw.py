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


"""Images in Ceph's RADOS Gateway read by ranges: glance_store's ``s3``
store (``get_object(Range=...)``) and ``swift`` store (``Range`` on the
store's own Keystone-authenticated connection), on the lab's RGW
(``tools/run-glance --rgw``; skipped, saying why, only where Ceph or
radosgw cannot be installed).

A Glance without glance_vsize (``--no-vsize``) stores a qcow2, a dynamic
VHD (each with 24 MiB of random data: read whole, either costs more
than 2 MiB) and an unsafe qcow2 that Glance accepts in each backend;
``glance-vsize backfill`` then sets qemu-img's virtual size, reads at
most 2 MiB of each and reports the unsafe one.  An image whose data was
put in a bucket beforehand is added by location (``s3://``), as Nova
and Cinder add theirs, and read the same way.  Through a proxy that drops
``Range`` (a server that ignores ranges), a Swift image is read whole
and still gets qemu-img's size.

Then the same lab directory starts again with glance_vsize (the same
Ceph cluster and gateway, a second start): an image added by ``s3://``
location gets qemu-img's size by ranges once Glance accepts it, and an
unsafe one is refused before Glance records it.
"""

import contextlib
import http.client
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid

import pytest

from tests.functional import glance as glance_mod
from tests.functional import test_backfill
from tests.functional import test_locations
from tests import helpers

sys.path.insert(0, os.path.join(glance_mod.REPO, 'tools'))
from lab import cephpkg  # noqa: E402
from lab import identity  # noqa: E402
from lab import ini  # noqa: E402
from lab import rgw  # noqa: E402

# Among the slowest (Ceph and a RADOS Gateway, about 100 s a release):
# run on the newest release only (README, "Supported releases").
pytestmark = [helpers.requires_qemu_img, pytest.mark.slow_newest_only]

MiB = 1 << 20
G = 1 << 30
BUDGET = helpers.READ_BUDGET
DATA = helpers.RANDOM_DATA


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    try:
        cephpkg.ensure_installed(say=lambda text: None,
                                 packages=rgw.PACKAGES, tools=rgw.TOOLS)
    except cephpkg.Unavailable as exc:
        pytest.skip('Ceph or the RADOS Gateway cannot be installed here: '
                    '%s' % exc)
    api = glance_mod.Glance(tmp_path_factory.mktemp('rgw'),
                            extra_args=['--rgw', '--no-vsize'])
    yield api
    api.stop()


@pytest.fixture(scope='module')
def vsize_lab(lab):
    """The same DIR started again, with glance_vsize; after every test
    that uses ``lab``.
    """
    lab.stop()
    api = glance_mod.Glance(lab.data_dir, extra_args=['--rgw'])
    yield api
    api.stop()


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """{name: (path, disk_format, qemu-img's virtual size or None for an
    unsafe image)}.
    """
    d = tmp_path_factory.mktemp('rgw-images')
    raw = str(d / 'data.raw')
    with open(raw, 'wb') as f:
        f.write(os.urandom(DATA))
        f.truncate(20 * G)
    made = {}
    for name, fmt, opts in (('disk.qcow2', 'qcow2', []),
                            ('dynamic.vhd', 'vhd', ['-o',
                                                    'subformat=dynamic'])):
        path = str(d / name)
        helpers.qemu_img('convert', '-q', '-f', 'raw', '-O',
                         helpers.QEMU_NAME.get(fmt, fmt), *opts, raw, path)
        assert os.path.getsize(path) > DATA
        made[name] = (path, fmt, helpers.qemu_info(path, fmt)[
            'virtual-size'])
    os.unlink(raw)
    # Header length past its 64 KiB cluster: qemu-img cannot open it;
    # Glance makes it active.
    v3 = helpers.create(d / 'v3.qcow2', 'qcow2', G)
    unsafe = helpers.mutated_copy(v3, d / 'hdrlen.qcow2',
                                  [(100, '>I', 65544)])
    assert helpers.qemu_info(unsafe, 'qcow2') is None
    made['hdrlen.qcow2'] = (unsafe, 'qcow2', None)
    return made


def upload(lab, path, disk_format, store):
    """Upload ``path`` as the member, into Glance backend ``store``."""
    image_id = lab.create(disk_format)
    with open(path, 'rb') as body:
        status, data = lab.request(
            'PUT', '/v2/images/%s/file' % image_id, body,
            {'Content-Type': 'application/octet-stream',
             'X-Image-Meta-Store': store})
    assert status == 204, data
    image = lab.show(image_id)
    assert (image['status'], image['stores']) == ('active', store), image
    return image_id


def rgw_requests(lab, name):
    """HTTP statuses of radosgw's GETs of objects named ``name``."""
    with open(os.path.join(lab.data_dir, 'ceph', 'rgw', 'log',
                           'radosgw.log')) as f:
        return [int(m.group(1)) for m in re.finditer(
            r'"GET /\S*/%s HTTP/1.1" (\d+) ' % re.escape(name), f.read())]


@pytest.mark.parametrize('store', [rgw.S3_BACKEND, rgw.SWIFT_BACKEND])
def test_backfill_reads_rgw_images_by_ranges(lab, images, store):
    ids = {upload(lab, path, disk, store): name
           for name, (path, disk, _want) in images.items()}
    args = [a for image_id in ids for a in ('--image', image_id)]
    status, report, err = test_backfill.backfill(lab, *args)
    assert status == 3, err   # the unsafe image
    assert set(report) == set(ids)
    for image_id, name in ids.items():
        row = report[image_id]
        want = images[name][2]
        if want is None:
            assert (row['action'], row['safe'], row['virtual_size']) == (
                'unsafe', False, None), row
            assert 'header_length' in row['failures'], row
            continue
        assert row['action'] in ('set', 'unchanged'), (name, row)
        assert (row['safe'], row['virtual_size']) == (True, want), row
        assert lab.show(image_id)['virtual_size'] == want, name
        # Read whole, the image would cost more than DATA.
        assert 0 < row['bytes_read'] <= BUDGET, (name, row)
        # Every GET was answered by a range (206), none with the whole
        # object (200) (Glance's own upload does not GET).
        answers = rgw_requests(lab, image_id)
        assert answers and set(answers) == {206}, (name, answers)


def s3_client(lab):
    import boto3
    with open(os.path.join(lab.data_dir, 'ceph', 'rgw', 'lab.json')) as f:
        state = json.load(f)
    return boto3.session.Session(
        aws_access_key_id=state['access_key'],
        aws_secret_access_key=state['secret_key']).client(
            's3', endpoint_url='http://127.0.0.1:%d' % state['port'],
            region_name='us-east-1'), state


#: The URL prefix a backend's store records (glance_store 5.6 leaves the
#: S3 keys out of it, earlier releases put them in).
URL_PREFIX = """
import sys
from glance_store import multi_backend
from glance_vsize.cmd import backfill
backfill.load_conf(sys.argv[1])
print(multi_backend.get_store_from_store_identifier(sys.argv[2]).url_prefix)
"""


def url_prefix(lab, backend):
    return subprocess.run(
        [os.path.join(glance_mod.VENV_BIN, 'python'), '-c', URL_PREFIX,
         os.path.join(lab.data_dir, 'etc'), backend], capture_output=True,
        text=True, check=True, timeout=120).stdout.strip()


def test_backfill_reads_an_s3_location_by_ranges(lab, images):
    """An image added by location (``s3://HOST/BUCKET/OBJ``), its data
    put by an S3 client; then gone: an error, no traceback.
    """
    path, disk, want = images['disk.qcow2']
    url = put_s3_object(lab, path)
    image_id = lab.create(disk)
    status, body = test_locations.add_location(lab, image_id, url)
    assert status == 202, body
    image = test_locations.wait_for(
        lab, image_id, lambda image: image['status'] == 'active')
    assert image['status'] == 'active', image

    status, report, err = test_backfill.backfill(lab, '--image', image_id)
    assert status == 0, err
    row = report[image_id]
    assert (row['action'], row['virtual_size']) == ('set', want), row
    assert 0 < row['bytes_read'] <= BUDGET, row
    assert lab.show(image_id)['virtual_size'] == want

    s3_client(lab)[0].delete_object(Bucket=rgw.BUCKET,
                                    Key=url.rsplit('/', 1)[1])
    status, report, err = test_backfill.backfill(lab, '--image', image_id)
    assert status == 0, err
    row = report[image_id]
    assert (row['action'], row['virtual_size']) == ('error', None), row
    assert 'does not exist' in row['failures']['error'], row
    assert 'Traceback' not in err
    assert lab.show(image_id)['virtual_size'] == want


class RangeDroppingProxy(http.server.ThreadingHTTPServer):
    """Forwards GET and HEAD to radosgw without their ``Range`` header,
    as a server that ignores ranges answers: 200, the whole object.
    """

    daemon_threads = True

    def __init__(self, target_port):
        self.target_port = target_port
        self.ranges = []   # the Range header of every GET it forwarded
        super().__init__(('127.0.0.1', 0), _ProxyHandler)
        self.url = 'http://127.0.0.1:%d' % self.server_address[1]

    def handle_error(self, request, client_address):
        pass   # a client that closes a whole answer it does not want


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def do_GET(self):
        self.server.ranges.append(self.headers.get('Range'))
        self._forward('GET')

    def do_HEAD(self):
        self._forward('HEAD')

    def _forward(self, method):
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ('range', 'host', 'connection')}
        conn = http.client.HTTPConnection('127.0.0.1',
                                          self.server.target_port,
                                          timeout=60)
        with contextlib.closing(conn):
            conn.request(method, self.path, headers=headers)
            resp = conn.getresponse()
            self.send_response(resp.status)
            for key, value in resp.getheaders():
                if key.lower() not in ('connection', 'transfer-encoding'):
                    self.send_header(key, value)
            self.end_headers()
            while method == 'GET':
                chunk = resp.read(65536)
                if not chunk:
                    break
                self.wfile.write(chunk)

    def log_message(self, *args):
        pass


def swift_endpoint(lab):
    """The catalog's public object-store URL for Glance's own user."""
    creds = lab.credentials()
    passwords, _made = identity.passwords(os.path.join(lab.data_dir,
                                                       'keystone'))
    kc = identity.Client(creds['OS_AUTH_URL'], 'glance',
                         passwords['glance'], 'service')
    for service in kc.ok('GET', '/auth/catalog')['catalog']:
        if service['type'] == 'object-store':
            return next(ep['url'] for ep in service['endpoints']
                        if ep['interface'] == 'public')
    raise AssertionError('no object-store service in the catalog')


def test_backfill_reads_swift_whole_where_ranges_are_ignored(
        lab, images, tmp_path):
    """``swift_store_endpoint`` (a copy of the deployment's config) names
    the proxy: every range request gets the whole object, so the image is
    read from start to end, and gets qemu-img's size all the same.
    """
    path, disk, want = images['dynamic.vhd']
    image_id = upload(lab, path, disk, rgw.SWIFT_BACKEND)
    with open(os.path.join(lab.data_dir, 'ceph', 'rgw', 'lab.json')) as f:
        port = json.load(f)['port']
    proxy = RangeDroppingProxy(port)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        etc = str(tmp_path / 'etc')
        shutil.copytree(os.path.join(lab.data_dir, 'etc'), etc)
        endpoint = swift_endpoint(lab)
        assert endpoint.startswith('http://127.0.0.1:%d/' % port)
        ini.iniset(os.path.join(etc, 'glance-api.conf'), rgw.SWIFT_BACKEND,
                   'swift_store_endpoint', proxy.url + endpoint.split(
                       str(port), 1)[1])
        proc = subprocess.run(
            [test_backfill.CLI, 'backfill', '--config-dir', etc, '--json',
             '--image', image_id], capture_output=True, text=True,
            timeout=600)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert (row['safe'], row['virtual_size']) == (True, want), row
    assert row['action'] in ('set', 'unchanged'), row
    # One range asked, answered whole: then one read from start to end.
    assert proxy.ranges[0] and proxy.ranges[0].startswith('bytes='), \
        proxy.ranges
    assert proxy.ranges[1:] == [None], proxy.ranges
    assert row['bytes_read'] >= os.path.getsize(path), row


def put_s3_object(lab, path):
    """Put ``path`` in the s3 backend's bucket; returns its location."""
    client, _state = s3_client(lab)
    try:
        client.create_bucket(Bucket=rgw.BUCKET)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    key = 'by-location-%s' % uuid.uuid4().hex
    with open(path, 'rb') as f:
        client.put_object(Bucket=rgw.BUCKET, Key=key, Body=f)
    # A location in the backend's bucket (Glance refuses any other).
    return '%s/%s' % (url_prefix(lab, rgw.S3_BACKEND), key)


def test_s3_location_gets_qemu_img_size_by_ranges(vsize_lab, images):
    lab = vsize_lab
    for name in ('disk.qcow2', 'dynamic.vhd'):
        path, disk, want = images[name]
        image_id = lab.create(disk)
        status, body = test_locations.add_location(
            lab, image_id, put_s3_object(lab, path))
        assert status == 202, body
        image = test_locations.wait_for(
            lab, image_id, lambda image: image['virtual_size'] is not None)
        assert (image['status'], image['virtual_size']) == ('active', want)
        match = re.search(r'Image %s: virtual_size %d \(\w+\) from its '
                          r'location, (\d+) bytes read' % (image_id, want),
                          lab.log())
        assert match, name
        assert 0 < int(match.group(1)) <= BUDGET, (name, match.group(0))


def test_unsafe_s3_location_is_refused_before_glance_records_it(
        vsize_lab, images):
    lab = vsize_lab
    path, disk, _want = images['hdrlen.qcow2']
    image_id = lab.create(disk)
    status, body = test_locations.add_location(lab, image_id,
                                               put_s3_object(lab, path))
    assert status == 400, body
    assert 'header_length' in body['message'], body
    assert 'refused by glance_vsize' in body['message'], body
    image = lab.show(image_id)
    assert (image['status'], image['virtual_size']) == ('queued', None)
