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


"""The lab's embedded sqlite databases (Glance's and Keystone's) hold
under concurrent requests: WAL journal, a busy timeout and transactions
that begin IMMEDIATE (tools/lab/sqlite.py), checked on the running
services.

A burst of 16 glance-direct imports, as the member user, all at once:
each must end ``active`` with qemu-img's virtual size, with no HTTP 500
and no task left ``pending`` (with Glance's defaults, and still with WAL
and a busy timeout alone, stages failed with HTTP 500 "database is
locked" and import tasks could stay pending forever).
"""

import concurrent.futures
import json
import os
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.functional import glance as glance_mod
from tests import helpers

pytestmark = helpers.requires_qemu_img

BURST = 16
#: Longer than Python's default sqlite busy timeout (5 s).
HOLD = 7
GLANCE_FORMATS = ('raw', 'iso', 'qcow2', 'vmdk', 'vhd', 'vhdx', 'vdi',
                  'ploop')


@pytest.fixture(scope='module')
def glance(tmp_path_factory):
    api = glance_mod.Glance(tmp_path_factory.mktemp('glance-sqlite'))
    yield api
    api.stop()


def _databases(glance):
    return {'glance': os.path.join(glance.data_dir, 'glance.sqlite'),
            'keystone': os.path.join(glance.data_dir, 'keystone',
                                     'keystone.sqlite')}


def test_embedded_databases_use_the_wal_journal(glance):
    for name, path in _databases(glance).items():
        con = sqlite3.connect(path)
        try:
            mode = con.execute('PRAGMA journal_mode').fetchone()[0]
        finally:
            con.close()
        assert mode == 'wal', name


def _keystone_post(view, path, payload):
    req = urllib.request.Request(
        view.credentials()['OS_AUTH_URL'] + path, method='POST',
        data=json.dumps(payload).encode(),
        headers=dict(view.auth_headers(),
                     **{'Content-Type': 'application/json'}))
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _hold_write_lock(path, locked, seconds):
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute('BEGIN IMMEDIATE')
        locked.set()
        time.sleep(seconds)
        con.execute('ROLLBACK')
    finally:
        con.close()


@pytest.mark.parametrize('service', ['glance', 'keystone'])
def test_a_writer_waits_for_the_lock_instead_of_failing(glance, service):
    """While another connection holds the write lock for longer than
    Python's default busy timeout, a write through the API waits for it
    and succeeds: the URL's timeout reached the service's connections.
    """
    admin = glance.as_admin()
    admin.token()     # before the lock: Keystone needs no write for it
    glance.token()
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(
        _databases(glance)[service], locked, HOLD))
    holder.start()
    try:
        assert locked.wait(30)
        t0 = time.monotonic()
        if service == 'glance':
            status, body = glance.json('POST', '/v2/images', {
                'name': 'locked', 'disk_format': 'raw',
                'container_format': 'bare'})
        else:
            status, body = _keystone_post(admin, '/projects', {
                'project': {'name': 'locked-%d' % time.time_ns(),
                            'domain_id': 'default'}})
        waited = time.monotonic() - t0
    finally:
        holder.join()
    assert status == 201, body
    assert waited > HOLD - 2, 'the write did not meet the lock'


def _burst_job(glance, start, path, entry):
    image_id = glance.create(entry['disk_format'])
    start.wait(120)
    status, body = glance.upload(image_id, path, 'stage')
    assert status == 204, (entry['file'], status, body)
    status, body = glance.import_(image_id)
    assert status == 202, (entry['file'], status, body)
    return image_id, glance.wait(image_id, timeout=300)


def test_burst_of_glance_direct_imports(glance, corpus):
    outdir, entries = corpus
    safe = [e for e in entries if e['safe']
            and e['disk_format'] in GLANCE_FORMATS
            and not e['file'].startswith('qcow2-l2ext')
            and os.path.getsize(os.path.join(outdir, e['file'])) < 8 << 20]
    # Round-robin over the formats, so that every inspector runs.
    by_format = {}
    for e in sorted(safe, key=lambda e: e['file']):
        by_format.setdefault(e['disk_format'], []).append(e)
    picked = []
    while len(picked) < BURST:
        for group in by_format.values():
            if group and len(picked) < BURST:
                picked.append(group.pop(0))
    start = threading.Barrier(BURST)
    with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
        futures = [pool.submit(_burst_job, glance, start,
                               os.path.join(outdir, e['file']), e)
                   for e in picked]
        results = [f.result(timeout=600) for f in futures]
    misses = []
    for entry, (image_id, image) in zip(picked, results):
        tasks = glance._tasks(image_id)
        got = (image['status'], image['virtual_size'],
               [t['status'] for t in tasks])
        if got != ('active', entry['virtual_size'], ['success']):
            misses.append((entry['file'], got,
                           glance.task_messages(image_id)))
    assert misses == []
    with open(os.path.join(glance.data_dir, 'log', 'access.log')) as f:
        errors = [line for line in f if re.search(r'" 5\d\d ', line)]
    assert errors == []
    with open(os.path.join(glance.data_dir, 'log', 'keystone.log')) as f:
        keystone_log = f.read()
    for log in (glance.log(), keystone_log):
        assert 'database is locked' not in log
