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

tools/run-glance serves Glance with ``--workers 2 --database postgresql``:
the lab's private PostgreSQL cluster (tools/lab/postgres.py: Debian's
postgresql, installed when missing, under DIR/postgres on 127.0.0.1).
32 clients start together over loopback (tests/functional/mixed.py): half
create-image (PUT .../file), half glance-direct import (PUT .../stage,
POST .../import), a quarter of them unsafe.  Every safe image must end
``active`` with qemu-img's virtual size, every unsafe one must be refused
on upload or stage, and nothing of the refused ones may stay in the store
or staging directories.
"""

import concurrent.futures
import os
import re
import sys
import threading
import time

import pytest

from tests.functional import glance as glance_mod
from tests.functional import mixed
from tests import helpers

sys.path.insert(0, os.path.join(glance_mod.REPO, 'tools'))
from lab import postgres  # noqa: E402

pytestmark = helpers.requires_qemu_img

#: Bound of one HTTP request, in seconds.
REQUEST_TIMEOUT = 120


class _Bounded(glance_mod.Glance):
    """Glance whose every request is bounded in time."""

    def request(self, method, path, body=None, headers=None,
                timeout=REQUEST_TIMEOUT):
        return super().request(method, path, body, headers, timeout)


@pytest.fixture(scope='module')
def glance(pg_lab_dir):
    api = _Bounded(pg_lab_dir, extra_args=['--workers', '2',
                                           '--database', 'postgresql'])
    yield api
    api.stop()


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
def test_concurrent_uploads_on_postgresql_with_two_workers(glance, corpus):
    outdir, entries = corpus
    jobs = mixed.plan(outdir, entries)
    assert len(jobs) == mixed.CLIENTS
    start = threading.Barrier(mixed.CLIENTS)
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(mixed.CLIENTS) as pool:
        futures = [pool.submit(mixed.run_job, glance, glance, start, *job,
                               timeout=REQUEST_TIMEOUT) for job in jobs]
        done, late = concurrent.futures.wait(futures,
                                             timeout=mixed.DEADLINE)
        assert not late, '%d clients still running after %d s' % (
            len(late), mixed.DEADLINE)
    elapsed = time.monotonic() - t0
    outcomes = [f.result() for f in futures]
    misses = mixed.wrong(outcomes)
    assert misses == [], '%d of %d wrong after %.1f s' % (
        len(misses), mixed.CLIENTS, elapsed)

    # Nothing staged is left (imports done, refusals removed); the store
    # holds exactly the safe images.
    assert glance.files_in('staging') == []
    stored = set(glance.files_in('images'))
    safe_ids = {o.image_id for o in outcomes if o.entry['safe']}
    assert stored == safe_ids

    # PostgreSQL agrees: safe images active, refused ones queued.
    pg = postgres.Cluster(os.path.join(glance.data_dir, 'postgres'))
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
