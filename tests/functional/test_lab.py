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


"""tools/run-glance's lab as a whole: Glance authenticates with the real
Keystone beside it, a member cannot act as an admin, stopping run-glance
stops both services, its config passes glance-vsize-status, and a
second start on the same data dir keeps users, passwords and images;
with ``--nodes 2`` the nodes share the lab's own PostgreSQL."""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.functional import glance as glance_mod
from tests import helpers

sys.path.insert(0, os.path.join(glance_mod.REPO, 'tools'))
from lab import ini  # noqa: E402
from lab import nodes  # noqa: E402
from lab import postgres  # noqa: E402


def _answers(url):
    try:
        urllib.request.urlopen(url, timeout=5)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def test_identity_stop_and_restart_on_the_same_dir(tmp_path):
    data = tmp_path / 'lab'
    glance = glance_mod.Glance(data)
    try:
        auth_url = glance.credentials()['OS_AUTH_URL']
        # No token, a wrong token: Glance (keystonemiddleware) says 401.
        status, _ = glance.request('GET', '/v2/images',
                                   headers={'X-Auth-Token': ''})
        assert status == 401
        status, _ = glance.request('GET', '/v2/images',
                                   headers={'X-Auth-Token': 'not-a-token'})
        assert status == 401
        # The member owns what it creates; public images are for admins.
        image_id = glance.create('raw')
        assert glance.show(image_id)['owner'] == glance.project_id()
        status, body = glance.json('POST', '/v2/images', {
            'name': 'public', 'disk_format': 'raw',
            'container_format': 'bare', 'visibility': 'public'})
        assert status == 403, body
        assert glance.as_admin().project_id() != glance.project_id()
        # The CLI finds Glance in Keystone's catalog.
        proc = glance.openstack('image', 'show', '-f', 'json', image_id)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)['id'] == image_id
        with open(data / 'openrc-member') as f:
            openrc = f.read()
        # run-glance's config dir (this release's wheel's files +
        # etc/*.patch) passes the wiring check a deployer runs, with the
        # release's own Glance, which the check names.
        status = subprocess.run(
            [os.path.join(glance_mod.VENV_BIN, 'glance-vsize-status'),
             'upgrade', 'check', '--config-dir', str(data / 'etc')],
            capture_output=True, text=True, timeout=300)
        assert status.returncode == 0, status.stdout + status.stderr
        assert 'Glance %d.' % glance_mod.RELEASE.glance_release.glance in \
            status.stdout, status.stdout
    finally:
        glance.stop()
    assert not _answers(auth_url), 'Keystone still answers after stop'
    assert not _answers(glance.endpoint)

    again = glance_mod.Glance(data)
    try:
        with open(data / 'openrc-member') as f:
            reopened = f.read()
        # Same users and passwords (only the Keystone port may move).
        assert [line for line in reopened.splitlines()
                if 'OS_AUTH_URL' not in line] == [
            line for line in openrc.splitlines() if 'OS_AUTH_URL' not in line]
        assert again.show(image_id)['status'] == 'queued'
    finally:
        again.stop()
    assert os.path.exists(data / 'keystone' / 'keystone.sqlite')


def _postmasters(datadir):
    """pids of processes whose command line names ``datadir``."""
    found = []
    for pid in os.listdir('/proc'):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                if datadir.encode() in f.read().split(b'\0'):
                    found.append(pid)
        except OSError:
            continue
    return found


@pytest.mark.slow_newest_only
@helpers.requires_qemu_img
def test_two_nodes_share_the_labs_postgresql(pg_lab_dir, tmp_path):
    """``run-glance --nodes 2`` alone: both nodes on one PostgreSQL that
    the lab starts under DIR/postgres, stops with itself and starts again
    on a second run.
    """
    data = pg_lab_dir
    pdir = os.path.join(data, 'postgres')
    port = glance_mod.node_ports(2)
    glance = glance_mod.Glance(data, port=port, extra_args=['--nodes', '2'])
    try:
        output = ''.join(glance.output)
        assert 'PostgreSQL created' in output, output
        cluster = postgres.Cluster(pdir)
        assert 'PostgreSQL ready at %s\n' % cluster.url in output
        assert cluster.url.startswith('postgresql+psycopg2://glance:')
        for n in (1, 2):
            conf = os.path.join(nodes.node_dir(str(data), n), 'etc',
                                'glance-api.conf')
            assert ini.iniget(conf, 'database', 'connection') == cluster.url
        assert not os.path.exists(os.path.join(data, 'glance.sqlite'))
        assert _postmasters(cluster.datadir)
        # Created through node 1, uploaded through node 2, seen by both
        # and by PostgreSQL.
        one, two = glance.node(1), glance.node(2)
        image = tmp_path / 'x.qcow2'
        helpers.qemu_img('create', '-q', '-f', 'qcow2', str(image), '5M')
        image_id = one.create('qcow2')
        status, body = two.upload(image_id, str(image))
        assert status == 204, body
        assert (one.show(image_id)['status'],
                one.show(image_id)['virtual_size']) == (
            'active', helpers.qemu_info(str(image), 'qcow2')['virtual-size'])
        assert cluster.psql("SELECT status FROM images WHERE id = '%s'"
                            % image_id).split() == ['active']
    finally:
        glance.stop()
    # Stopping run-glance stopped the cluster: no server, port free.
    assert _postmasters(cluster.datadir) == []
    assert not os.path.exists(os.path.join(cluster.datadir,
                                           'postmaster.pid'))
    assert nodes.bindable(cluster.port)

    again = glance_mod.Glance(data, port=port, extra_args=['--nodes', '2'])
    try:
        output = ''.join(again.output)
        assert 'PostgreSQL started' in output, output
        assert postgres.Cluster(pdir).password == cluster.password
        assert again.node(2).show(image_id)['status'] == 'active'
    finally:
        again.stop()
    assert _postmasters(cluster.datadir) == []
