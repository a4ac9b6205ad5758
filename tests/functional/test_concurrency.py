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


"""Concurrent uploads to a real Glance with 2 workers on PostgreSQL.

tools/run-glance serves Glance with ``--workers 2`` on a private PostgreSQL
cluster (tests/functional/postgres.py: Debian's postgresql, installed when
missing, started on 127.0.0.1 in a temporary directory, removed after).
32 clients start together over loopback: half create-image (PUT .../file),
half glance-direct import (PUT .../stage, POST .../import), a quarter of
them unsafe.  Every safe image must end ``active`` with qemu-img's virtual
size, every unsafe one must be refused on upload or stage, and nothing of
the refused ones may stay in the store or staging directories.
"""

import collections
import concurrent.futures
import os
import re
import threading
import time

import pytest

from tests.functional import glance as glance_mod
from tests.functional import postgres
from tests import helpers

pytestmark = helpers.requires_qemu_img

CLIENTS = 32
UNSAFE = CLIENTS // 4
#: Wall-clock bound of the whole concurrent run, in seconds.
DEADLINE = 300
#: Bound of one HTTP request, in seconds.
REQUEST_TIMEOUT = 120
GLANCE_FORMATS = ('raw', 'iso', 'qcow2', 'vmdk', 'vhd', 'vhdx', 'vdi',
                  'ploop')
#: Round-robin order of formats; those oslo.utils sizes wrongly first
#: (VHD, hybrid ISO), so that Glance's set_data must take our verdict.
FORMAT_ORDER = ('vhd', 'iso', 'qcow2', 'vmdk', 'vhdx', 'vdi', 'ploop', 'raw')
#: Images picked first within their format.
PREFERRED = ('vhd-dynamic-forceoff-s1.vhd', 'data-vhd-fixed.vhd',
             'hybrid.iso')
MAX_FILE = 32 << 20


class _Bounded(glance_mod.Glance):
    """Glance whose every request is bounded in time."""

    def request(self, method, path, body=None, headers=None,
                timeout=REQUEST_TIMEOUT):
        return super().request(method, path, body, headers, timeout)


@pytest.fixture(scope='module')
def pg():
    try:
        cluster = postgres.PostgreSQL()
    except postgres.Unavailable as exc:
        pytest.skip(str(exc))
    yield cluster
    cluster.stop()


@pytest.fixture(scope='module')
def glance(tmp_path_factory, pg):
    api = _Bounded(tmp_path_factory.mktemp('glance-pg'),
                   extra_args=['--workers', '2', '--database', pg.url])
    yield api
    api.stop()


def _rank(entry):
    name = entry['file']
    return (name not in PREFERRED, not name.startswith('data-'), name)


def plan(outdir, entries):
    """32 jobs ``(method, path, entry)``: 12 safe images each uploaded both
    ways, and 8 unsafe ones, 4 per way.
    """
    groups = collections.defaultdict(list)
    for e in entries:
        size = os.path.getsize(os.path.join(outdir, e['file']))
        if (e['safe'] and e['disk_format'] in GLANCE_FORMATS
                and not e['file'].startswith('qcow2-l2ext')
                and size <= MAX_FILE):
            groups[e['disk_format']].append(e)
    for group in groups.values():
        group.sort(key=_rank)
    safe = []
    while len(safe) < (CLIENTS - UNSAFE) // 2:
        took = False
        for fmt in FORMAT_ORDER:
            if groups[fmt] and len(safe) < (CLIENTS - UNSAFE) // 2:
                safe.append(groups[fmt].pop(0))
                took = True
        assert took, 'not enough safe images in the corpus'
    unsafe = sorted((e for e in entries if not e['safe']),
                    key=lambda e: (not e['file'].startswith('unsafe-'),
                                   e['file']))[:UNSAFE]
    assert len(unsafe) == UNSAFE
    jobs = []
    for e in safe:
        jobs.append(('file', e))
        jobs.append(('import', e))
    for i, e in enumerate(unsafe):
        jobs.append(('file' if i % 2 else 'import', e))
    return [(m, os.path.join(outdir, e['file']), e) for m, e in jobs]


class Outcome:
    def __init__(self, method, entry):
        self.method, self.entry = method, entry
        self.image_id = None
        self.status = None      # HTTP status of the upload or stage
        self.body = b''
        self.import_status = None
        self.image = None
        self.error = None

    def __repr__(self):
        image = self.image or {}
        return '%s %s %s: %s %s %s/%s %s' % (
            self.method, self.entry['file'], self.image_id, self.status,
            self.body[:300], image.get('status'), image.get('virtual_size'),
            self.error or '')


def _run_job(glance, start, method, path, entry):
    out = Outcome(method, entry)
    try:
        disk_format = entry['disk_format']
        out.image_id = glance.create(disk_format if disk_format in
                                     GLANCE_FORMATS else 'raw')
        start.wait(60)
        out.status, out.body = glance.upload(
            out.image_id, path, 'file' if method == 'file' else 'stage')
        if method == 'import' and out.status == 204:
            out.import_status, body = glance.import_(out.image_id)
            assert out.import_status == 202, body
        out.image = glance.wait(out.image_id, timeout=REQUEST_TIMEOUT)
    except Exception as exc:
        out.error = repr(exc)
    return out


def _log_lines(glance, pattern):
    """``(pid, match)`` of glance-api.log lines whose logger name and
    message match ``pattern`` (its groups are numbered from 2).
    """
    rx = re.compile(r'^\S+ \S+ (\d+) \S+ ' + pattern)
    found = []
    for line in glance.log().splitlines():
        m = rx.match(line)
        if m:
            found.append((int(m.group(1)), m))
    return found


@pytest.mark.slow_newest_only
def test_concurrent_uploads_on_postgresql_with_two_workers(glance, corpus,
                                                           pg):
    outdir, entries = corpus
    jobs = plan(outdir, entries)
    assert len(jobs) == CLIENTS
    start = threading.Barrier(CLIENTS)
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(_run_job, glance, start, *job)
                   for job in jobs]
        done, late = concurrent.futures.wait(futures, timeout=DEADLINE)
        assert not late, '%d clients still running after %d s' % (
            len(late), DEADLINE)
    elapsed = time.monotonic() - t0
    outcomes = [f.result() for f in futures]

    misses = []
    for out in outcomes:
        image = out.image or {}
        if out.error:
            misses.append(out)
        elif out.entry['safe']:
            want_http = 204
            if (out.status, image.get('status'), image.get(
                    'virtual_size')) != (want_http, 'active',
                                         out.entry['virtual_size']):
                misses.append(out)
        elif (out.status not in (400, 415)
              or b'refused by glance_vsize' not in out.body
              or image.get('status') != 'queued'
              or image.get('virtual_size') is not None):
            misses.append(out)
    assert misses == [], '%d of %d wrong after %.1f s' % (
        len(misses), CLIENTS, elapsed)

    # Nothing staged is left (imports done, refusals removed); the store
    # holds exactly the safe images.
    assert glance.files_in('staging') == []
    stored = set(glance.files_in('images'))
    safe_ids = {o.image_id for o in outcomes if o.entry['safe']}
    assert stored == safe_ids

    # PostgreSQL agrees: safe images active, refused ones queued.
    rows = dict(line.split('|') for line in pg.psql(
        "SELECT id, status FROM images WHERE deleted = false").split())
    assert rows == {o.image_id: 'active' if o.entry['safe'] else 'queued'
                    for o in outcomes}

    # Both workers served uploads, and Glance's set_data took
    # glance_vsize's verdict in each (no second inspection disagreed).
    pids = {pid for pid, _m in _log_lines(
        glance, r'glance_vsize\.glance\.(?:middleware|import_plugin) ')}
    assert len(pids) == 2, pids
    assert 'filter inspected' not in glance.log()
    assert 'OperationalError' not in glance.log()
