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

"""A single-node Ceph cluster for the lab's RBD store (``DIR/ceph``).

Debian's packages (:mod:`lab.cephpkg` installs them), no cephadm, no
containers: one monitor (msgr2 only, on 127.0.0.1), one manager and one
OSD whose object store is BlueStore on a sparse file (``osd0/block``),
pool ``images`` of size 1, and a ``client.glance`` key with the rbd
profile on that pool, as Ceph's own guide for Glance sets it up.  Every
daemon runs in the foreground as this process's child (``-f``), so it is
stopped and reaped by its pid.  ``DIR/ceph/ceph.conf`` and the keyrings
``ceph.client.admin.keyring`` and ``ceph.client.glance.keyring`` are what
a client needs (``rbd -c DIR/ceph/ceph.conf ls images``).

A second start on the same directory starts the same daemons on their
stores; when the monitor's port is taken meanwhile, the monitor moves to
a free one (its monmap is rewritten, as Ceph's guide for changing a
monitor's address does it).  A lab, not a deployment.
"""

import json
import os
import re
import subprocess
import sys
import time
import uuid
from typing import Callable, List, Optional

from . import nodes

POOL = 'images'
CLIENT = 'glance'
MON = 'a'
MGR = 'x'
OSD = 0
#: ``ceph.conf`` options besides the paths and the monitor's address.
OPTIONS = {
    'auth_cluster_required': 'cephx',
    'auth_service_required': 'cephx',
    'auth_client_required': 'cephx',
    'auth_allow_insecure_global_id_reclaim': 'false',
    # msgr2 only, loopback only.
    'ms_bind_msgr1': 'false',
    'ms_bind_msgr2': 'true',
    'public_network': '127.0.0.0/8',
    # One OSD: pools of one replica, placed on it.
    'osd_pool_default_size': '1',
    'osd_pool_default_min_size': '1',
    'mon_allow_pool_size_one': 'true',
    'mon_warn_on_pool_no_redundancy': 'false',
    'osd_crush_chooseleaf_type': '0',
    # No PG splits under a running test.
    'osd_pool_default_pg_autoscale_mode': 'off',
    'mgr_initial_modules': '',
    # The lab's disk is the machine's: no warning at 30 % free.
    'mon_data_avail_warn': '5',
    # ext4 limits of the default (and the test machines') file systems.
    'osd_max_object_name_len': '256',
    'osd_max_object_namespace_len': '64',
    # BlueStore on a sparse file; small caches (a lab shares the machine).
    'bluestore_block_create': 'true',
    'bluestore_block_size': str(20 << 30),
    'bluestore_cache_autotune': 'false',
    'bluestore_cache_size': str(256 << 20),
    'osd_memory_target': str(1 << 30),
    'memstore_device_bytes': str(8 << 30),
}


class Cluster:
    """The cluster whose state lives in ``cdir`` (``DIR/ceph``)."""

    def __init__(self, cdir: str, port: Optional[int] = None,
                 objectstore: str = 'bluestore',
                 say: Callable[[str], None] = print):
        self.dir = os.path.abspath(cdir)
        self.conf = os.path.join(self.dir, 'ceph.conf')
        self.port = port
        self.objectstore = objectstore
        self.say = say
        self.procs: List[subprocess.Popen] = []
        self.fsid: Optional[str] = None

    # ------------------------------------------------------------ paths
    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def keyring(self, name: str = 'client.' + CLIENT) -> str:
        return self.path('ceph.%s.keyring' % name)

    @property
    def ready_marker(self) -> str:
        return self.path('ready.json')

    def exists(self) -> bool:
        """A cluster was made here (a previous start finished)."""
        return os.path.exists(self.ready_marker)

    # ------------------------------------------------------------ start
    def start(self, timeout: float = 120) -> List[subprocess.Popen]:
        """Make the cluster (first start) or start it again; returns the
        daemons, running, with pool ``images`` ready for client.glance.
        """
        t0 = time.monotonic()
        if self.exists():
            self._restart(timeout)
            what = 'started'
        else:
            self._create(timeout)
            what = 'created'
        self.say('Ceph (%s) %s in %.1f s: %s' % (
            self.objectstore, what, time.monotonic() - t0, self.conf))
        return self.procs

    def _create(self, timeout: float) -> None:
        if os.path.isdir(self.dir) and os.listdir(self.dir):
            # A start that did not finish: nothing in it is worth keeping.
            for name in ('mon', 'mgr', 'osd%d' % OSD, 'run'):
                subprocess.call(['rm', '-rf', self.path(name)])
        for name in ('mon', 'mgr', 'osd%d' % OSD, 'run', 'log'):
            os.makedirs(self.path(name), exist_ok=True)
        self.fsid = str(uuid.uuid4())
        self.port = self.port or nodes.free_port()
        self._write_conf()
        admin = self.keyring('client.admin')
        monkey = self.path('mon.keyring')
        self._tool('ceph-authtool', '--create-keyring', monkey, '--gen-key',
                   '-n', 'mon.', '--cap', 'mon', 'allow *')
        self._tool('ceph-authtool', '--create-keyring', admin, '--gen-key',
                   '-n', 'client.admin', '--cap', 'mon', 'allow *',
                   '--cap', 'osd', 'allow *', '--cap', 'mgr', 'allow *')
        self._tool('ceph-authtool', monkey, '--import-keyring', admin)
        monmap = self.path('monmap')
        self._tool('monmaptool', '--create', '--fsid', self.fsid, '--addv',
                   MON, self._mon_addr(), monmap)
        self._tool('ceph-mon', '-c', self.conf, '--mkfs', '-i', MON,
                   '--monmap', monmap, '--keyring', monkey)
        os.unlink(monmap)
        self._daemon('ceph-mon', MON)
        with self.admin(timeout) as cluster:
            self._mgr_key(cluster)
            self._daemon('ceph-mgr', MGR)
            osd_uuid = str(uuid.uuid4())
            key = self._tool('ceph-authtool', '--gen-print-key').strip()
            ret = self._command(cluster, {
                'prefix': 'osd new', 'uuid': osd_uuid},
                inbuf=json.dumps({'cephx_secret': key}))
            if int(ret) != OSD:
                raise RuntimeError('Ceph gave the OSD id %s' % ret)
            self._write_keyring(self.path('osd%d' % OSD, 'keyring'),
                                'osd.%d' % OSD, key)
            self._tool('ceph-osd', '-c', self.conf, '-i', str(OSD), '--mkfs',
                       '--osd-uuid', osd_uuid)
            self._daemon('ceph-osd', str(OSD))
            self._command(cluster, {'prefix': 'osd pool create',
                                    'pool': POOL, 'pg_num': 8})
            self._command(cluster, {'prefix': 'osd pool set', 'pool': POOL,
                                    'var': 'size', 'val': '1',
                                    'yes_i_really_mean_it': True})
            self._command(cluster, {'prefix': 'osd pool application enable',
                                    'pool': POOL, 'app': 'rbd'})
            self._wait_pool(cluster, timeout)
            glance = self._command(cluster, {
                'prefix': 'auth get-or-create', 'entity': 'client.' + CLIENT,
                'caps': ['mon', 'profile rbd',
                         'osd', 'profile rbd pool=%s' % POOL,
                         'mgr', 'profile rbd pool=%s' % POOL]})
            self._write_file(self.keyring(), glance)
        self._write_file(self.ready_marker, json.dumps({
            'fsid': self.fsid, 'objectstore': self.objectstore}) + '\n')

    def _restart(self, timeout: float) -> None:
        with open(self.ready_marker) as f:
            saved = json.load(f)
        self.fsid, self.objectstore = saved['fsid'], saved['objectstore']
        old = int(re.search(r':(\d+)\]', self._conf_value('mon_host'))[1])
        port = self.port or old
        if not nodes.bindable(port):
            if self.port:
                raise RuntimeError('Ceph monitor port %d is taken' % port)
            port = nodes.free_port()
        self.port = port
        if port != old:
            self._move_mon()
        self._write_conf()
        self._daemon('ceph-mon', MON)
        with self.admin(timeout) as cluster:
            self._daemon('ceph-mgr', MGR)
            self._daemon('ceph-osd', str(OSD))
            self._wait_pool(cluster, timeout)

    def _move_mon(self) -> None:
        """Rewrite the stopped monitor's monmap for ``self.port``."""
        monmap = self.path('monmap')
        self._tool('ceph-mon', '-c', self.conf, '-i', MON,
                   '--extract-monmap', monmap)
        self._tool('monmaptool', '--rm', MON, monmap)
        self._tool('monmaptool', '--addv', MON, self._mon_addr(), monmap)
        self._tool('ceph-mon', '-c', self.conf, '-i', MON,
                   '--inject-monmap', monmap)
        os.unlink(monmap)

    # ------------------------------------------------------------ stop
    def stop(self, timeout: float = 60) -> None:
        """SIGTERM the daemons, OSD first, and reap them."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs = []

    # ------------------------------------------------------------ clients
    def admin(self, timeout: float = 60):
        """A ``rados.Rados`` as client.admin, connected on entering it
        (``with cluster.admin() as r``).
        """
        import rados
        r = rados.Rados(conffile=self.conf, name='client.admin', conf={
            'keyring': self.keyring('client.admin'),
            # Short: a wait in librados holds back this process's signals.
            'rados_osd_op_timeout': '5',
            'rados_mon_op_timeout': str(int(timeout)),
            'client_mount_timeout': str(int(timeout)),
            'log_file': self.path('log', 'client.admin.log')})
        return r

    def rbd_ls(self) -> List[str]:
        """The RBD images in pool ``images``, as ``rbd ls images`` says."""
        out = subprocess.run(
            ['rbd', '-c', self.conf, '--id', 'admin', '--keyring',
             self.keyring('client.admin'), 'ls', POOL, '--format', 'json'],
            capture_output=True, text=True, timeout=60, check=True).stdout
        return sorted(json.loads(out))

    def glance_backend(self) -> dict:
        """glance_store's rbd settings for a backend on this cluster."""
        return {'rbd_store_pool': POOL, 'rbd_store_user': CLIENT,
                'rbd_store_ceph_conf': self.conf,
                'rbd_store_chunk_size': 8, 'rados_connect_timeout': 60}

    # ------------------------------------------------------------ helpers
    def _mon_addr(self) -> str:
        return '[v2:127.0.0.1:%d]' % self.port

    def _write_conf(self) -> None:
        d = self.dir
        lines = ['# Written by tools/run-glance (lab only); rewritten on '
                 'every start.', '[global]', 'fsid = %s' % self.fsid,
                 'mon_host = %s' % self._mon_addr(),
                 'osd_objectstore = %s' % self.objectstore]
        lines += ['%s = %s' % kv for kv in OPTIONS.items()]
        lines += [
            'run_dir = %s/run' % d,
            'log_file = %s/log/$name.log' % d,
            'keyring = %s/ceph.$name.keyring' % d,
            'mon_data = %s/mon' % d, 'mgr_data = %s/mgr' % d,
            'osd_data = %s/osd$id' % d,
            '', '[mon]', 'keyring = %s/mon/keyring' % d,
            'admin_socket = %s/run/$name.asok' % d,
            '', '[mgr]', 'keyring = %s/mgr/keyring' % d,
            'admin_socket = %s/run/$name.asok' % d,
            '', '[osd]', 'keyring = %s/osd$id/keyring' % d,
            'admin_socket = %s/run/$name.asok' % d, '']
        self._write_file(self.conf, '\n'.join(lines))

    def _conf_value(self, key: str) -> str:
        with open(self.conf) as f:
            for line in f:
                if line.split('=')[0].strip() == key:
                    return line.split('=', 1)[1].strip()
        raise RuntimeError('%s has no %s' % (self.conf, key))

    @staticmethod
    def _write_file(path: str, text: str) -> None:
        fd = os.open(path + '.tmp', os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        os.rename(path + '.tmp', path)

    def _write_keyring(self, path: str, entity: str, key: str) -> None:
        self._write_file(path, '[%s]\n\tkey = %s\n' % (entity, key))

    def _tool(self, *cmd: str) -> str:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=120)
        if proc.returncode:
            raise RuntimeError('%s failed (%d):\n%s%s' % (
                ' '.join(cmd[:3]), proc.returncode, proc.stdout[-2000:],
                proc.stderr[-2000:]))
        return proc.stdout

    def _daemon(self, binary: str, ident: str) -> None:
        out = open(self.path('log', '%s.%s.out' % (binary, ident)), 'ab')
        with out:
            self.procs.append(subprocess.Popen(
                [binary, '-f', '-c', self.conf, '-i', ident],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out))

    def _mgr_key(self, cluster) -> None:
        key = self._command(cluster, {
            'prefix': 'auth get-or-create', 'entity': 'mgr.' + MGR,
            'caps': ['mon', 'allow profile mgr', 'osd', 'allow *',
                     'mds', 'allow *']})
        self._write_file(self.path('mgr', 'keyring'), key)

    def _command(self, cluster, cmd: dict, inbuf: str = '') -> str:
        ret, out, err = cluster.mon_command(
            json.dumps(cmd), inbuf.encode(), timeout=60)
        if ret:
            raise RuntimeError('ceph %s: %s (%d)' % (cmd['prefix'], err, ret))
        return out.decode()

    def _wait_pool(self, cluster, timeout: float) -> None:
        """Until the OSD is up and pool ``images`` takes writes."""
        import rbd
        deadline = time.monotonic() + timeout
        while True:
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError('%s exited; see %s' % (
                    ', '.join(dead), self.path('log')))
            stat = json.loads(self._command(
                cluster, {'prefix': 'osd stat', 'format': 'json'}))
            if stat.get('num_up_osds') == 1:
                break
            if time.monotonic() > deadline:
                raise RuntimeError('the Ceph OSD is not up after %d s; see '
                                   '%s' % (timeout, self.path('log')))
            time.sleep(0.2)
        import rados
        with cluster.open_ioctx(POOL) as ioctx:
            # Each try blocks until the PGs are active or its own short
            # timeout (set on the ioctx's cluster), so a signal to this
            # process is handled between tries.
            while True:
                try:
                    rbd.RBD().pool_init(ioctx, False)
                    return
                except (rados.TimedOut, rbd.Timeout):
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            'pool %s was not active within %d s; see %s'
                            % (POOL, timeout, self.path('log')))


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m lab.ceph DIR [--port N]``: start (or
    start again) the cluster in DIR, print its ceph.conf, run until
    SIGTERM or Ctrl-C, then stop it.
    """
    import argparse
    import signal
    p = argparse.ArgumentParser(prog='python -m lab.ceph')
    p.add_argument('dir')
    p.add_argument('--port', type=int)
    args = p.parse_args(argv)
    cluster = Cluster(args.dir, args.port)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        cluster.start()
        print('Ceph ready: %s' % cluster.conf, flush=True)
        while all(p.poll() is None for p in cluster.procs):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        cluster.stop()


if __name__ == '__main__':
    sys.exit(main())
