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

"""A private PostgreSQL cluster for the lab's Glance database
(``DIR/postgres``).

Debian's ``postgresql`` package is installed with apt-get when no server
binaries are found under ``/usr/lib/postgresql/*/bin`` (as root, or with
passwordless sudo).  The cluster (``DIR/postgres/data``) listens on
127.0.0.1 only, on its own port, with its unix socket in ``DIR/postgres``;
its superuser ``glance`` has a random password (scram-sha-256, no trust
authentication) and owns one database, ``glance``.  ``DIR/postgres/
lab.json`` (0600) keeps the port, the password and the SQLAlchemy URL.
The system's own clusters (``pg_lsclusters``) are not touched.

The server runs in the foreground as this process's child, so it is
stopped (fast shutdown) and reaped by its pid.  A second start on the same
directory starts the same cluster, on its previous port unless that is
taken meanwhile.  initdb and the server refuse to run as root: as root they
run as the ``postgres`` user the package creates, which must be able to
reach ``DIR/postgres``.
"""

import glob
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import time
from typing import Callable, Optional

from . import debian
from .nodes import bindable
from .nodes import free_port

PACKAGE = 'postgresql'
BIN_GLOB = '/usr/lib/postgresql/*/bin'
SERVER_USER = 'postgres'
USER = 'glance'
DATABASE = 'glance'
TOOLS = ('initdb', 'postgres', 'pg_isready', 'createdb', 'psql')
#: A lab's settings: loopback only, no fsync (a lab, not a deployment).
SETTINGS = ('listen_addresses=127.0.0.1', 'max_connections=200',
            'fsync=off', 'synchronous_commit=off', 'full_page_writes=off')


class Unavailable(Exception):
    """PostgreSQL is not installed and cannot be installed here."""


def find_bindir() -> Optional[str]:
    """The newest Debian PostgreSQL server's bin directory, or None."""
    found = []
    for bindir in glob.glob(BIN_GLOB):
        version = os.path.basename(os.path.dirname(bindir))
        if all(os.access(os.path.join(bindir, tool), os.X_OK)
               for tool in TOOLS):
            key = tuple(int(p) for p in re.findall(r'\d+', version))
            found.append((key, bindir))
    return max(found)[1] if found else None


def ensure_installed(say: Callable[[str], None] = print) -> str:
    """Return the server's bin directory, installing Debian's package when
    missing; raise :class:`Unavailable` when that is impossible.
    """
    bindir = find_bindir()
    if bindir:
        return bindir
    try:
        debian.apt_install([PACKAGE], 'PostgreSQL (%s)' % BIN_GLOB, say,
                           timeout=900)
    except debian.CannotInstall as exc:
        raise Unavailable(str(exc))
    bindir = find_bindir()
    if not bindir:
        raise RuntimeError('%s installed, but no server under %s'
                           % (PACKAGE, BIN_GLOB))
    return bindir


class Cluster:
    """The cluster whose state lives in ``pdir`` (``DIR/postgres``)."""

    def __init__(self, pdir: str, bindir: Optional[str] = None,
                 say: Callable[[str], None] = print):
        self.dir = os.path.abspath(pdir)
        self.datadir = os.path.join(self.dir, 'data')
        self.logfile = os.path.join(self.dir, 'postgresql.log')
        self.state_file = os.path.join(self.dir, 'lab.json')
        self.bindir = bindir
        self.say = say
        self.proc: Optional[subprocess.Popen] = None
        state = self._state()
        self.port: Optional[int] = state.get('port')
        self.password: Optional[str] = state.get('password')
        self._as: dict = {}

    def _state(self) -> dict:
        try:
            with open(self.state_file) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    @property
    def url(self) -> str:
        """The SQLAlchemy URL Glance connects with."""
        return 'postgresql+psycopg2://%s:%s@127.0.0.1:%d/%s' % (
            USER, self.password, self.port, DATABASE)

    def exists(self) -> bool:
        """A cluster was made here (a previous start finished)."""
        return bool(self.password) and os.path.isdir(self.datadir)

    # ------------------------------------------------------------ start
    def start(self, timeout: float = 60) -> subprocess.Popen:
        """Make the cluster (first start) or start it again; returns the
        running server, with database ``glance`` ready.
        """
        t0 = time.monotonic()
        self.bindir = self.bindir or ensure_installed(self.say)
        fresh = not self.exists()
        if fresh and os.path.isdir(self.datadir):
            shutil.rmtree(self.datadir)     # an initdb that did not finish
        self._server_user()
        if not self.port or not bindable(self.port):
            self.port = free_port()
        if fresh:
            self.password = secrets.token_hex(16)
            self._init()
        self._save()
        self._serve(timeout)
        if fresh:
            self._run('createdb', '-h', '127.0.0.1', '-p', str(self.port),
                      '-U', USER, DATABASE, as_server=False)
        self.say('PostgreSQL %s in %.1f s: %s' % (
            'created' if fresh else 'started', time.monotonic() - t0,
            self.dir))
        return self.proc

    def _server_user(self) -> None:
        """As root, initdb and the server run as ``postgres``, which owns
        ``DIR/postgres`` and must reach it.
        """
        if os.geteuid() != 0:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            return
        try:
            pw = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise RuntimeError('running as root and there is no %r user '
                               'to run PostgreSQL as' % SERVER_USER)
        path = os.path.dirname(self.dir)
        while True:
            st = os.stat(path) if os.path.exists(path) else None
            if st and not st.st_mode & 0o001 and st.st_uid != pw.pw_uid:
                raise RuntimeError(
                    'PostgreSQL runs as user %s, who cannot reach %s: %s '
                    'is mode %o (chmod o+x it, or use a --data-dir that '
                    'user can reach)' % (SERVER_USER, self.dir, path,
                                         st.st_mode & 0o777))
            if path == os.path.dirname(path):
                break
            path = os.path.dirname(path)
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        for root, dirs, files in os.walk(self.dir):
            for name in [root] + [os.path.join(root, n) for n in files]:
                os.chown(name, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
        self._as = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])

    def _save(self) -> None:
        tmp = self.state_file + '.tmp'
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            json.dump({'port': self.port, 'password': self.password,
                       'url': self.url}, f)
        os.replace(tmp, self.state_file)

    def _run(self, tool: str, *args: str, as_server: bool = True,
             timeout: float = 120) -> str:
        env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
               'HOME': self.dir, 'LC_ALL': 'C', 'LANG': 'C',
               'PGPASSWORD': self.password or ''}
        proc = subprocess.run(
            [os.path.join(self.bindir or find_bindir() or '', tool)] +
            list(args), cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout,
            **(self._as if as_server else {}))
        if proc.returncode:
            raise RuntimeError('%s %s failed (%d):\n%s%s%s' % (
                tool, ' '.join(args), proc.returncode, proc.stdout,
                proc.stderr, self.log_tail()))
        return proc.stdout

    def _init(self) -> None:
        pwfile = os.path.join(self.dir, 'pwfile')
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(self.password + '\n')
        if self._as:
            os.chown(pwfile, self._as['user'], self._as['group'])
        try:
            self._run('initdb', '-D', self.datadir, '-U', USER,
                      '--pwfile', pwfile, '--auth', 'scram-sha-256',
                      '-E', 'UTF8', '--no-locale', '--no-sync',
                      '--no-instructions')
        finally:
            os.unlink(pwfile)

    def _serve(self, timeout: float) -> None:
        socket_path = os.path.join(self.dir, '.s.PGSQL.%d' % self.port)
        if len(socket_path) > 100:
            raise RuntimeError('PostgreSQL\'s unix socket path %s is too '
                               'long; use a shorter --data-dir'
                               % socket_path)
        cmd = [os.path.join(self.bindir, 'postgres'), '-p', str(self.port),
               '-c', 'unix_socket_directories=%s' % self.dir]
        for setting in SETTINGS:
            cmd += ['-c', setting]
        cmd += ['-D', self.datadir]
        with open(self.logfile, 'ab') as log:
            if self._as:
                os.chown(self.logfile, self._as['user'], self._as['group'])
            self.proc = subprocess.Popen(
                cmd, cwd=self.dir, env={'PATH': os.environ.get('PATH', ''),
                                        'LC_ALL': 'C', 'LANG': 'C'},
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                **self._as)
        deadline = time.monotonic() + timeout
        while subprocess.run(
                [os.path.join(self.bindir, 'pg_isready'), '-q', '-h',
                 '127.0.0.1', '-p', str(self.port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL).returncode:
            if self.proc.poll() is not None:
                raise RuntimeError('postgres exited (%d):\n%s' % (
                    self.proc.returncode, self.log_tail()))
            if time.monotonic() > deadline:
                raise RuntimeError('postgres did not accept connections '
                                   'within %d s:\n%s'
                                   % (timeout, self.log_tail()))
            time.sleep(0.1)

    def log_tail(self) -> str:
        try:
            with open(self.logfile, errors='replace') as f:
                return f.read()[-3000:]
        except OSError:
            return ''

    def psql(self, sql: str) -> str:
        """Run ``sql`` in the glance database; return psql's output."""
        return self._run('psql', '-h', '127.0.0.1', '-p', str(self.port),
                         '-U', USER, '-d', DATABASE, '-XAtq',
                         '-v', 'ON_ERROR_STOP=1', '-c', sql,
                         as_server=False)

    def stop(self, timeout: float = 60) -> None:
        """Fast shutdown (SIGINT) of the server this object started."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
