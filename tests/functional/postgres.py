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


"""A private, throw-away PostgreSQL cluster for functional tests.

Debian's ``postgresql`` package is installed with apt-get when no server
binaries are found under ``/usr/lib/postgresql/*/bin`` (as root, or with
passwordless sudo).  The cluster lives in a temporary directory, listens on
127.0.0.1 only, on a free port, with a random password for its superuser
``glance`` (scram-sha-256; no trust authentication), and holds one database,
``glance``.  The system's own clusters (``pg_lsclusters``) are not touched.
Initdb and the server refuse to run as root: as root they run as the
``postgres`` user the package creates.
"""

import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

from tests.functional import glance as glance_mod

PACKAGE = 'postgresql'
BIN_GLOB = '/usr/lib/postgresql/*/bin'
SERVER_USER = 'postgres'


class Unavailable(Exception):
    """PostgreSQL is not installed and cannot be installed here."""


def find_bindir():
    """The newest Debian PostgreSQL server's bin directory, or None."""
    found = []
    for bindir in glob.glob(BIN_GLOB):
        version = os.path.basename(os.path.dirname(bindir))
        if all(os.access(os.path.join(bindir, tool), os.X_OK)
               for tool in ('initdb', 'postgres', 'pg_isready',
                            'createdb', 'psql')):
            key = tuple(int(p) for p in re.findall(r'\d+', version))
            found.append((key, bindir))
    return max(found)[1] if found else None


def _privileged_prefix():
    if os.geteuid() == 0:
        return []
    if shutil.which('sudo') and subprocess.run(
            ['sudo', '-n', 'true'], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL).returncode == 0:
        return ['sudo', '-n']
    return None


def ensure_installed():
    """Return the server's bin directory, installing Debian's package when
    missing; raise :class:`Unavailable` when that is impossible.
    """
    bindir = find_bindir()
    if bindir:
        return bindir
    prefix = _privileged_prefix()
    if prefix is None:
        raise Unavailable(
            'PostgreSQL server binaries (%s) are not installed and this user '
            'can neither install them (not root, no passwordless sudo): '
            'apt-get install %s' % (BIN_GLOB, PACKAGE))
    if not shutil.which('apt-get'):
        raise Unavailable('PostgreSQL is not installed and there is no '
                          'apt-get to install Debian\'s %s' % PACKAGE)
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    for cmd in (['apt-get', 'update', '-qq'],
                ['apt-get', 'install', '-y', '-qq',
                 '--no-install-recommends', PACKAGE]):
        proc = subprocess.run(prefix + cmd, env=env, capture_output=True,
                              text=True, timeout=900)
        if proc.returncode:
            raise RuntimeError('%s failed:\n%s%s' % (
                ' '.join(cmd), proc.stdout[-3000:], proc.stderr[-3000:]))
    bindir = find_bindir()
    if not bindir:
        raise RuntimeError('%s installed, but no server under %s'
                           % (PACKAGE, BIN_GLOB))
    return bindir


class PostgreSQL:
    """One private cluster; :meth:`stop` removes every trace of it."""

    user = 'glance'
    database = 'glance'

    def __init__(self, bindir=None):
        self.bindir = bindir or ensure_installed()
        self.password = secrets.token_hex(16)
        self.port = glance_mod.free_port()
        self.tmp = tempfile.mkdtemp(prefix='glance-vsize-pg-')
        self.datadir = os.path.join(self.tmp, 'data')
        self.logfile = os.path.join(self.tmp, 'postgresql.log')
        self._as = {}
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise RuntimeError('running as root and there is no %r user '
                                   'to run PostgreSQL as' % SERVER_USER)
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            self._as = dict(user=pw.pw_uid, group=pw.pw_gid,
                            extra_groups=[])
        self.started = False
        try:
            self._init()
            self._start()
            self._createdb()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self):
        """The SQLAlchemy URL Glance connects with."""
        return 'postgresql+psycopg2://%s:%s@127.0.0.1:%d/%s' % (
            self.user, self.password, self.port, self.database)

    def _run(self, tool, *args, as_server=True, timeout=120):
        env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
               'HOME': self.tmp, 'LC_ALL': 'C', 'LANG': 'C',
               'PGPASSWORD': self.password}
        kwargs = self._as if as_server else {}
        proc = subprocess.run(
            [os.path.join(self.bindir, tool)] + list(args), cwd=self.tmp,
            env=env, stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=timeout, **kwargs)
        if proc.returncode:
            raise RuntimeError('%s %s failed (%d):\n%s%s%s' % (
                tool, ' '.join(args), proc.returncode, proc.stdout,
                proc.stderr, self._log_tail()))
        return proc.stdout

    def _init(self):
        pwfile = os.path.join(self.tmp, 'pwfile')
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(self.password + '\n')
        if self._as:
            os.chown(pwfile, self._as['user'], self._as['group'])
        try:
            self._run('initdb', '-D', self.datadir, '-U', self.user,
                      '--pwfile', pwfile, '--auth', 'scram-sha-256',
                      '-E', 'UTF8', '--no-locale', '--no-sync',
                      '--no-instructions')
        finally:
            os.unlink(pwfile)

    def _start(self):
        # The server runs as this process's child (not daemonised by
        # pg_ctl), so that it is stopped and reaped by its pid.  A
        # throw-away cluster: no fsync.  Loopback TCP only; the unix socket
        # sits in the private (0700) temporary directory.
        log = open(self.logfile, 'ab')
        if self._as:
            os.chown(self.logfile, self._as['user'], self._as['group'])
        with log:
            self.server = subprocess.Popen(
                [os.path.join(self.bindir, 'postgres'), '-D', self.datadir,
                 '-p', str(self.port), '-c', 'listen_addresses=127.0.0.1',
                 '-c', 'unix_socket_directories=%s' % self.tmp,
                 '-c', 'max_connections=200', '-c', 'fsync=off',
                 '-c', 'synchronous_commit=off',
                 '-c', 'full_page_writes=off'],
                cwd=self.tmp, env={'PATH': os.environ.get('PATH', ''),
                                   'LC_ALL': 'C', 'LANG': 'C'},
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                **self._as)
        self.started = True
        deadline = time.monotonic() + 60
        while True:
            if self.server.poll() is not None:
                raise RuntimeError('postgres exited (%d):\n%s' % (
                    self.server.returncode, self._log_tail()))
            if subprocess.run(
                    [os.path.join(self.bindir, 'pg_isready'), '-q', '-h',
                     '127.0.0.1', '-p', str(self.port)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError('postgres did not accept connections '
                                   'within 60 s:\n' + self._log_tail())
            time.sleep(0.1)

    def _log_tail(self):
        try:
            with open(self.logfile, errors='replace') as f:
                return f.read()[-3000:]
        except OSError:
            return ''

    def _createdb(self):
        self._run('createdb', '-h', '127.0.0.1', '-p', str(self.port),
                  '-U', self.user, self.database)

    def psql(self, sql):
        """Run ``sql`` in the glance database; return psql's output."""
        return self._run('psql', '-h', '127.0.0.1', '-p', str(self.port),
                         '-U', self.user, '-d', self.database, '-XAtq',
                         '-v', 'ON_ERROR_STOP=1', '-c', sql)

    def stop(self):
        """Fast shutdown (SIGINT) of the server this object started."""
        if self.started:
            self.server.send_signal(signal.SIGINT)
            try:
                self.server.wait(60)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
            self.started = False
        shutil.rmtree(self.tmp, ignore_errors=True)
