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

"""The embedded sqlite databases of the lab (Glance's and Keystone's).

Three settings make them hold under concurrent requests (gunicorn
threads, import tasks in Glance's thread pool, Keystone beside them):

* WAL journal mode: readers no longer block the writer nor the writer
  the readers.  SQLite records it in the database file itself, so it is
  set once, on the template every lab database is copied from.
* a busy timeout of ``BUSY_TIMEOUT`` seconds, in the SQLAlchemy URL
  (``timeout=``, passed by SQLAlchemy's pysqlite dialect to
  ``sqlite3.connect``; oslo.db keeps the URL's query): a writer waits for
  the others instead of failing after Python's default of 5 s.
* ``plugin=lab_sqlite_immediate`` in the URL (``sqlite_plugin/``, a
  SQLAlchemy plugin that tools/run-glance installs into the venv):
  transactions begin IMMEDIATE.  WAL and the timeout alone are not
  enough: Glance's image_update reads, then writes, in a deferred
  transaction, and SQLite fails such a write at once, without waiting,
  when another connection wrote in between (16 concurrent stages gave
  HTTP 500 "database is locked").

A synced database is cached per virtualenv (``<venv>/lab-cache``) and
copied into each data dir, so a new lab does not pay for ``db_sync``.
"""

import contextlib
import fcntl
import os
import shutil
import sqlite3
import tempfile
from typing import Callable

BUSY_TIMEOUT = 60
#: tools/lab/sqlite_plugin (entry point group sqlalchemy.plugins).
PLUGIN = 'lab_sqlite_immediate'


def url(path: str, immediate: bool = True) -> str:
    """SQLAlchemy URL of the sqlite file at ``path``, with the timeout
    and, when ``immediate``, the plugin.
    """
    return 'sqlite:///%s?timeout=%d%s' % (
        os.path.abspath(path), BUSY_TIMEOUT,
        '&plugin=' + PLUGIN if immediate else '')


def enable_wal(path: str) -> None:
    con = sqlite3.connect(path)
    try:
        mode = con.execute('PRAGMA journal_mode=WAL').fetchone()[0]
    finally:
        con.close()
    if mode != 'wal':
        raise RuntimeError('%s: journal_mode is %s, not wal' % (path, mode))


def journal_mode(path: str) -> str:
    con = sqlite3.connect(path)
    try:
        return con.execute('PRAGMA journal_mode').fetchone()[0]
    finally:
        con.close()


@contextlib.contextmanager
def locked(path: str):
    """An exclusive lock on ``path`` (created), for the block."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached(cache_dir: str, name: str,
           build: Callable[[str], None]) -> str:
    """The directory ``cache_dir/name``, made once by ``build(tmpdir)``
    (under a lock, so concurrent labs build it once) and kept.
    """
    final = os.path.join(cache_dir, name)
    if os.path.isdir(final):
        return final
    with locked(os.path.join(cache_dir, '.lock')):
        if not os.path.isdir(final):
            tmp = tempfile.mkdtemp(prefix=name + '.', dir=cache_dir)
            try:
                build(tmp)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    return final


def copy_db(template: str, dest: str) -> None:
    """Copy a closed (checkpointed) WAL database file."""
    if os.path.exists(template + '-wal'):
        raise RuntimeError('%s was not closed cleanly' % template)
    tmp = dest + '.tmp'
    shutil.copyfile(template, tmp)
    os.rename(tmp, dest)
