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


"""RBD images read by ranges (``rbd.Image.read``), on the rbd lab
(``tools/run-glance --store rbd``; skipped, saying why, only where Ceph
cannot be installed).

* Nova's direct snapshot: an RBD clone of an image's snapshot in pool
  ``images``, snapshotted, then added by location
  (``rbd://FSID/images/ID/snap``) with the owner's token and a service
  token, as Nova does: qemu-img's virtual size, at most 2 MiB read.
* ``glance-vsize backfill`` on an image Glance stored in RBD, and on the
  snapshot location: ranges, not the whole image (``--json``).
"""

import os
import re
import subprocess
import sys
import time

import pytest

from tests.functional import glance as glance_mod
from tests.functional import test_backfill
from tests.functional import test_locations
from tests import helpers

sys.path.insert(0, os.path.join(glance_mod.REPO, 'tools'))
from lab import ceph  # noqa: E402
from lab import cephpkg  # noqa: E402

pytestmark = helpers.requires_qemu_img

BUDGET = helpers.READ_BUDGET
DATA = helpers.RANDOM_DATA


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    try:
        cephpkg.ensure_installed(say=lambda text: None)
    except cephpkg.Unavailable as exc:
        pytest.skip('Ceph cannot be installed here: %s' % exc)
    api = glance_mod.Glance(tmp_path_factory.mktemp('rbd-ranged'),
                            extra_args=['--store', 'rbd'])
    yield api
    api.stop()


@pytest.fixture(scope='module')
def qcow2(tmp_path_factory):
    """A qcow2 with DATA of random data and a 20 GiB virtual disk."""
    d = tmp_path_factory.mktemp('rbd-ranged-images')
    raw = d / 'data.raw'
    with open(raw, 'wb') as f:
        f.write(os.urandom(DATA))
    path = str(d / 'disk.qcow2')
    helpers.qemu_img('convert', '-q', '-f', 'raw', '-O', 'qcow2', str(raw),
                     path)
    helpers.qemu_img('resize', '-q', path, '20G')
    os.unlink(raw)
    assert os.path.getsize(path) > DATA
    return path


def rbd(lab, *args):
    """The rbd CLI as client.admin on the lab's cluster."""
    cluster = ceph.Cluster(os.path.join(lab.data_dir, 'ceph'))
    return subprocess.run(
        ['rbd', '-c', cluster.conf, '--id', 'admin', '--keyring',
         cluster.keyring('client.admin')] + list(args),
        capture_output=True, text=True, timeout=300, check=True).stdout


def fsid(lab):
    return ceph.Cluster(os.path.join(lab.data_dir, 'ceph'))._conf_value(
        'fsid')


def qemu_size_of_export(lab, spec, tmp_path):
    """qemu-img's virtual size of ``rbd export SPEC`` (a local copy)."""
    copy = str(tmp_path / ('export-%s' % spec.replace('/', '_')))
    rbd(lab, 'export', '--no-progress', spec, copy)
    try:
        return helpers.qemu_info(copy, 'qcow2')['virtual-size']
    finally:
        os.unlink(copy)


def nova_direct_snapshot(lab, base_id, image_id):
    """What Nova's RBD driver does for a snapshot of an instance booted
    from ``base_id``: clone the base's snapshot into pool ``images`` under
    the new image's id, snapshot the clone as ``snap`` and protect it;
    the location is then ``rbd://FSID/images/ID/snap``.
    """
    rbd(lab, 'clone', 'images/%s@snap' % base_id, 'images/%s' % image_id)
    rbd(lab, 'snap', 'create', 'images/%s@snap' % image_id)
    rbd(lab, 'snap', 'protect', 'images/%s@snap' % image_id)
    return 'rbd://%s/images/%s/snap' % (fsid(lab), image_id)


def upload(lab, path):
    image_id = lab.create('qcow2')
    status, body = lab.upload(image_id, path)
    assert status == 204, body
    image = lab.show(image_id)
    assert image['status'] == 'active', image
    return image_id


def bytes_read_logged(lab, image_id):
    match = re.search(r'Image %s: virtual_size \d+ \(\w+\) from its '
                      r'location, (\d+) bytes read' % image_id, lab.log())
    return int(match.group(1)) if match else None


def test_nova_direct_snapshot_gets_qemu_img_size_by_ranges(lab, qcow2,
                                                           tmp_path):
    base_id = upload(lab, qcow2)
    image_id = lab.create('qcow2')
    url = nova_direct_snapshot(lab, base_id, image_id)
    want = qemu_size_of_export(lab, 'images/%s@snap' % image_id, tmp_path)
    status, body = test_locations.add_location(lab, image_id, url)
    assert status == 202, body
    deadline = time.monotonic() + 120
    while bytes_read_logged(lab, image_id) is None and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    image = lab.show(image_id)
    assert (image['status'], image['virtual_size']) == ('active', want)
    assert bytes_read_logged(lab, image_id) <= BUDGET

    # backfill reads the snapshot the same way.
    status, report, err = test_backfill.backfill(lab, '--image', image_id)
    assert status == 0, err
    row = report[image_id]
    assert row['virtual_size'] == want, row
    assert row['bytes_read'] <= BUDGET, row


def test_backfill_reads_an_rbd_stored_image_by_ranges(lab, qcow2, tmp_path):
    image_id = upload(lab, qcow2)
    want = qemu_size_of_export(lab, 'images/%s' % image_id, tmp_path)
    status, report, err = test_backfill.backfill(lab, '--image', image_id)
    assert status == 0, err
    row = report[image_id]
    assert row['virtual_size'] == want, row
    # Read whole, the image would cost more than DATA.
    assert 0 < row['bytes_read'] <= BUDGET, row
    assert lab.show(image_id)['virtual_size'] == want


def test_backfill_reports_a_missing_rbd_image(lab, qcow2):
    """An image whose RBD data is gone is an error, not a traceback."""
    image_id = lab.create('qcow2')
    url = nova_direct_snapshot(lab, upload(lab, qcow2), image_id)
    status, body = test_locations.add_location(lab, image_id, url)
    assert status == 202, body
    deadline = time.monotonic() + 120
    while bytes_read_logged(lab, image_id) is None and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    rbd(lab, 'snap', 'unprotect', 'images/%s@snap' % image_id)
    rbd(lab, 'snap', 'rm', 'images/%s@snap' % image_id)
    before = lab.show(image_id)['virtual_size']
    status, report, err = test_backfill.backfill(lab, '--image', image_id)
    assert status == 0, err
    row = report[image_id]
    assert (row['action'], row['virtual_size']) == ('error', None), row
    assert 'does not exist' in row['failures']['error'], row
    assert 'Traceback' not in err
    assert lab.show(image_id)['virtual_size'] == before
