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

"""Run Keystone and Glance for as long as this process lives."""

from importlib import metadata
import os
import signal
import subprocess
import sys
import time

from . import glance_etc
from . import identity
from . import ini
from . import keystone
from . import nodes
from . import releases
from . import rgw
from . import server
from . import sqlite


def say(text: str) -> None:
    print('run-glance: ' + text, flush=True)


class Lab:

    def __init__(self, args):
        self.args = args
        self.data = os.path.abspath(args.data_dir)
        self.bin = os.path.dirname(sys.executable)
        self.cache = os.path.join(sys.prefix, 'lab-cache')
        self.kdir = os.path.join(self.data, 'keystone')
        self.logdir = os.path.join(self.data, 'log')
        self.procs = []
        self.stopping = False
        self.ceph = None
        self.pg = None
        self.rgw = None

    # ------------------------------------------------------------ setup
    def _check_release(self) -> None:
        """This venv has the --release's Glance and Keystone (run-glance
        picks the venv; python -m lab run by hand may not).
        """
        release = releases.get(self.args.release)
        for spec in (release.glance, release.keystone):
            name, series = spec.split('==')
            have = metadata.version(name)
            if have.split('.')[0] != series.split('.')[0]:
                raise RuntimeError(
                    '--release %s needs %s, %s has %s %s (tools/run-glance '
                    '--release %s installs it into %s)' % (
                        release.name, spec, sys.prefix, name, have,
                        release.name, release.venv))
        say('release %s (%s): glance %s, keystone %s' % (
            release.name, release.codename, metadata.version('glance'),
            metadata.version('keystone')))

    def _claim_dir(self) -> None:
        """DIR/release names the release whose schemas DIR's databases
        have; another release's lab refuses the DIR.
        """
        path = os.path.join(self.data, 'release')
        try:
            with open(path) as f:
                owner = f.read().strip()
        except FileNotFoundError:
            with open(path, 'w') as f:
                f.write(self.args.release + '\n')
            return
        if owner != self.args.release:
            raise RuntimeError(
                '%s holds a %s lab (its databases have that release\'s '
                'schemas); use another --data-dir for --release %s'
                % (self.data, owner, self.args.release))

    def _dirs(self) -> None:
        for name in ('etc', 'log', 'images', 'images-second', 'staging',
                     'tasks', 'locks', 'keystone'):
            os.makedirs(os.path.join(self.data, name), exist_ok=True)

    def _database(self) -> str:
        """Glance's SQLAlchemy URL: DIR/glance.sqlite (a copy of this
        release's synced template), the lab's PostgreSQL (started here) or
        the --database URL.
        """
        url = self.args.database
        if url == 'sqlite':
            db = os.path.join(self.data, 'glance.sqlite')
            if not os.path.exists(db):
                sqlite.copy_db(self._glance_template(), db)
            return sqlite.url(db)
        if url == 'postgresql':
            from . import postgres
            self.pg = postgres.Cluster(os.path.join(self.data, 'postgres'),
                                       say=say)
            try:
                self.pg.start()
            finally:
                if self.pg.proc is not None:
                    self.procs.append(self.pg.proc)
            url = self.pg.url
            print('PostgreSQL ready at %s' % url, flush=True)
        if url.startswith(('postgresql:', 'postgresql+psycopg2:')):
            self._psycopg2()
        self._db_sync(url, os.path.join(self.data, 'etc'))
        return url

    def _glance_template(self) -> str:
        version = metadata.version('glance')

        def build(tmp: str) -> None:
            db = os.path.join(tmp, 'glance.sqlite')
            self._db_sync(sqlite.url(db), tmp)
            sqlite.enable_wal(db)

        return os.path.join(sqlite.cached(
            self.cache, 'glance-%s' % version, build), 'glance.sqlite')

    def _db_sync(self, url: str, etc: str) -> None:
        conf = os.path.join(etc, 'glance-manage-lab.conf')
        with open(conf, 'w') as f:
            f.write('[database]\nconnection = %s\n' % url)
        log = os.path.join(self.logdir, 'glance-manage.log')
        with open(log, 'a') as out:
            if subprocess.call([os.path.join(self.bin, 'glance-manage'),
                                '--config-file', conf, 'db_sync'],
                               stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL):
                raise RuntimeError('glance-manage db_sync failed (log: %s)'
                                   % log)

    def _psycopg2(self) -> None:
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            say('installing psycopg2-binary into %s' % sys.prefix)
            with sqlite.locked(os.path.join(self.cache, '.pip-lock')):
                subprocess.check_call([
                    sys.executable, '-m', 'pip', 'install', '-q',
                    '--disable-pip-version-check', 'psycopg2-binary'])

    # ------------------------------------------------------------ run
    def run(self) -> int:
        try:
            return self._run()
        finally:
            self.stop()

    def _run(self) -> int:
        a = self.args
        t0 = time.monotonic()
        self._check_release()
        self._dirs()
        self._claim_dir()
        ports = [a.port + i for i in range(a.nodes)]
        for port in ports:
            if server.answers(port) or not nodes.bindable(port):
                raise RuntimeError('something already answers on '
                                   '127.0.0.1:%d' % port)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if a.store == 'rbd' or a.rgw:
            self._ceph_setup()
        kport = a.keystone_port or nodes.free_port()
        auth_url = 'http://127.0.0.1:%d/v3' % kport
        glance_url = 'http://127.0.0.1:%d' % a.port
        template_pw = keystone.prepare(
            self.bin, self.cache, metadata.version('keystone'), self.kdir,
            self.logdir, a.debug,
            releases.get(a.release).keystone_sqlite_immediate)
        passwords, _fresh = identity.passwords(self.kdir)
        database = self._database()
        for node, port in enumerate(ports, 1):
            nodes.make_dirs(self.data, node)
            etc = os.path.join(nodes.node_dir(self.data, node), 'etc')
            glance_etc.build(
                etc, self.data, vsize=not a.no_vsize,
                database=database, import_plugins=a.import_plugins,
                debug=a.debug, auth={
                    'www_authenticate_uri': auth_url, 'auth_url': auth_url,
                    'auth_type': 'password', 'username': 'glance',
                    'password': passwords['glance'],
                    'project_name': 'service',
                    'user_domain_name': identity.DOMAIN,
                    'project_domain_name': identity.DOMAIN,
                    'region_name': identity.REGION})
            conf = os.path.join(etc, 'glance-api.conf')
            nodes.configure(conf, self.data, node, port, a.nodes)
            if a.store == 'rbd':
                nodes.use_rbd(conf, self.ceph.glance_backend())
            if self.rgw:
                rgw.use_rgw(conf, self.rgw.glance_backends(
                    auth_url, passwords['glance'],
                    releases.get(a.release).swift_backend))
            for section, key, value in a.iniset:     # --iniset: last
                ini.iniset(conf, section, key, value)
        if a.no_vsize:
            say('--no-vsize: glance_vsize is left out')
        if a.database == 'sqlite' and a.workers > 1:
            say('sqlite (WAL, busy timeout) with %d workers: writes queue '
                'on one file; PostgreSQL (--database postgresql) scales'
                % a.workers)
        if a.nodes > 1 and a.database == 'sqlite':
            say('%d nodes on one sqlite file: PostgreSQL (the default with '
                'several nodes) is what they share in a deployment'
                % a.nodes)
        say('configured in %.1f s' % (time.monotonic() - t0))

        log = lambda name: os.path.join(self.logdir, name)  # noqa: E731
        t1 = time.monotonic()
        kproc = self._start(server.gunicorn(
            self.bin, keystone.WSGI_APP, kport, log('keystone-gunicorn.log'),
            log('keystone-access.log'),
            os.path.join(self.kdir, 'gunicorn.pid'),
            dict(keystone.env(self.kdir), PYTHONPATH=os.path.dirname(
                os.path.dirname(os.path.abspath(__file__))))))
        gprocs = []
        for node, port in enumerate(ports, 1):
            ndir = nodes.node_dir(self.data, node)
            gprocs.append(self._start(server.gunicorn(
                self.bin, 'glance.wsgi.api:application', port,
                os.path.join(ndir, 'log', 'gunicorn.log'),
                os.path.join(ndir, 'log', 'access.log'),
                os.path.join(ndir, 'gunicorn.pid'),
                dict(os.environ,
                     OS_GLANCE_CONFIG_DIR=os.path.join(ndir, 'etc')),
                workers=a.workers)))
        if self.ceph:
            # While Keystone and Glance boot: Glance connects to the
            # cluster at its first upload, not when it starts.
            self._start_ceph(auth_url, passwords['glance'])
        timeout = float(os.environ.get('RUN_GLANCE_READY_TIMEOUT', 120))
        server.wait_ready(kproc, kport, 'Keystone', timeout,
                          [log('keystone-gunicorn.log'), log('keystone.log')])
        identity.setup(auth_url, glance_url, self.kdir, template_pw)
        keystone.admin_password_set(self.kdir)
        identity.write_openrc(self.data, auth_url, passwords)
        if self.rgw:
            self.rgw.register(auth_url, passwords['glance'])
        say('Keystone started in %.1f s' % (time.monotonic() - t1))
        print('Keystone ready at %s' % auth_url, flush=True)
        for node, (port, gproc) in enumerate(zip(ports, gprocs), 1):
            ndir = nodes.node_dir(self.data, node)
            server.wait_ready(gproc, port, 'Glance node %d' % node, timeout,
                              [os.path.join(ndir, 'log', name) for name in
                               ('gunicorn.log', 'glance-api.log')])
            if node > 1:
                print('Glance API node %d ready at http://127.0.0.1:%d'
                      % (node, port), flush=True)
        say('started in %.1f s (%.1f s in all); logs in %s; openrc: '
            '%s/openrc-member (member), %s/openrc (admin)'
            % (time.monotonic() - t1, time.monotonic() - t0, self.logdir,
               self.data, self.data))
        print('Glance API ready at %s' % glance_url, flush=True)
        return self._watch()

    def _ceph_setup(self) -> None:
        """Ceph for the RBD store (lab.ceph), under DIR/ceph: Debian's
        packages and the bindings Glance imports; with --rgw, the RADOS
        Gateway too (lab.rgw).
        """
        from . import ceph
        from . import cephpkg
        if self.args.rgw:
            cephpkg.ensure_installed(say, rgw.PACKAGES, rgw.TOOLS)
        else:
            cephpkg.ensure_installed(say)
        cephpkg.link_bindings()
        self.ceph = ceph.Cluster(os.path.join(self.data, 'ceph'),
                                 self.args.ceph_port, say=say)
        if self.args.rgw:
            self.rgw = rgw.Gateway(self.ceph, say=say)

    def _start_ceph(self, auth_url: str, glance_password: str) -> None:
        """Start the cluster, and the RADOS Gateway with --rgw (it asks
        Keystone at its first Swift request); the daemons join the
        processes this lab watches and stops.
        """
        try:
            self.ceph.start()
        finally:
            self.procs.extend(self.ceph.procs)
        if self.rgw:
            try:
                self.rgw.start(auth_url, glance_password)
            finally:
                if self.rgw.proc:
                    self.procs.append(self.rgw.proc)

    def _start(self, proc):
        self.procs.append(proc)
        return proc

    def _on_signal(self, signum, frame):
        self.stopping = True
        raise SystemExit(0)

    def _watch(self) -> int:
        while True:
            for proc in self.procs:
                if proc.poll() is not None:
                    say('%s exited (%s); stopping'
                        % (proc.args[-1], proc.returncode))
                    return 1
            time.sleep(0.5)

    def stop(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # PostgreSQL last, once Glance closed its connections.
        pg = self.pg.proc if self.pg else None
        others = [proc for proc in self.procs if proc is not pg]
        for proc in others:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in others:
            server.stop(proc)
        if self.pg:
            self.pg.stop()
