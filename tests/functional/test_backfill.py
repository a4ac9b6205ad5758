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


"""``glance-vsize backfill`` on the catalogue of a Glance that ran without
glance_vsize: every disk format, ova and compressed containers, and an
unsafe qcow2 that Glance 33 accepts.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests import containergen
from tests.functional import backfill_cli
from tests.functional import glance as glance_mod
from tests import helpers
from tests import rangeserver

G = 1 << 30
MiB = 1 << 20
BUDGET = helpers.READ_BUDGET
CLI = os.path.join(glance_mod.VENV_BIN, 'glance-vsize')
#: A hybrid ISO in the catalogue: Glance 30 and 31 alone refuse it (415,
#: "Multiple formats detected: gpt,iso"), so there it has none to backfill.
HYBRID_ISO = (set() if glance_mod.RELEASE.glance_release.refuses_hybrid_iso
              else {'hybrid.iso'})


@pytest.fixture(scope='module')
def glance(tmp_path_factory):
    api = glance_mod.Glance(tmp_path_factory.mktemp('glance-novsize'),
                            extra_args=['--no-vsize'])
    yield api
    api.stop()


def backfill(glance, *args):
    """Run the command on the deployment's own configuration; returns
    (exit status, {image id: report}, stderr).
    """
    proc = subprocess.run(
        [CLI, 'backfill', '--config-dir', os.path.join(glance.data_dir,
                                                       'etc'),
         '--json'] + list(args), capture_output=True, text=True,
        timeout=600)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    return proc.returncode, {row['id']: row for row in rows}, proc.stderr


def _extra_images(out):
    """(name, path, disk_format, container_format, qemu-img's size or
    None for an unsafe image).
    """
    helpers.create(out / 'v3.qcow2', 'qcow2', G)
    # Header length past its 64 KiB cluster: qemu-img cannot open it;
    # Glance 33 makes it active with 1 GiB.
    unsafe = helpers.mutated_copy(out / 'v3.qcow2', out / 'hdrlen.qcow2',
                                  [(100, '>I', 65544)])
    assert helpers.qemu_info(unsafe, 'qcow2') is None
    yield 'hdrlen.qcow2', unsafe, 'qcow2', 'bare', None
    pkg = out / 'pkg'
    pkg.mkdir()
    boot = helpers.create(pkg / 'boot.vmdk', 'vmdk', 20 * G,
                          'subformat=streamOptimized')
    size = helpers.qemu_info(boot, 'vmdk')['virtual-size']
    ova = containergen.ova(out / 'vm.ova', pkg, [
        ('boot.vmdk', size, containergen.VMDK_STREAM)])
    yield 'vm.ova', ova, 'vmdk', 'ova', size
    data = helpers.create(out / 'data.qcow2', 'qcow2', 3 * G + 512)
    for tool in ('gzip', 'xz'):
        yield ('data.qcow2.' + tool, containergen.compress(data, tool),
               'qcow2', 'compressed', 3 * G + 512)


@pytest.fixture(scope='module')
def catalogue(glance, corpus, tmp_path_factory):
    """{image id: (name, disk_format, container_format, qemu-img size or
    None)}: the images Glance without glance_vsize made active.
    """
    outdir, entries = corpus
    cases = [(e['file'], os.path.join(outdir, e['file']), e['disk_format'],
              'bare', e['virtual_size'] if e['safe'] else None)
             for e in entries if e['disk_format'] != 'qed']
    cases += list(_extra_images(tmp_path_factory.mktemp('extra')))
    made = {}
    for name, path, disk, container, size in cases:
        image_id = glance.create(disk, container, name=name)
        glance.upload(image_id, path)
        if glance.show(image_id)['status'] == 'active':
            made[image_id] = (name, disk, container, size)
    names = {name for name, *_ in made.values()}
    # A stock Glance (require_image_format_match = True) refuses a fixed
    # VHD as raw, but not these.
    assert {'hdrlen.qcow2', 'vm.ova', 'data.qcow2.gzip',
            'data-ploop-default.ploop'} | HYBRID_ISO <= names
    return made


def test_backfill_sets_qemu_img_sizes_and_reports_unsafe_images(
        glance, catalogue):
    nulls = {i for i in catalogue if glance.show(i)['virtual_size'] is None}
    assert nulls, 'Glance alone left no virtual_size null'
    unsafe_id = next(i for i, c in catalogue.items()
                     if c[0] == 'hdrlen.qcow2')
    glance_said = glance.show(unsafe_id)['virtual_size']

    # --dry-run: the same report, nothing written.
    status, dry, err = backfill(glance, '--dry-run')
    assert set(dry) == nulls
    assert {i for i in nulls if glance.show(i)['virtual_size'] is None} \
        == nulls

    # The images whose virtual_size is null.
    status, report, err = backfill(glance)
    assert set(report) == nulls
    misses = []
    for image_id, row in report.items():
        name, disk, container, want = catalogue[image_id]
        assert (row['disk_format'], row['container_format']) == (
            disk, container)
        assert row['action'] == dry[image_id]['action'], name
        if container == 'bare' and row['bytes_read'] > BUDGET:
            misses.append('%s: read %d bytes' % (name, row['bytes_read']))
        if want is None:
            continue
        if (row['action'], row['virtual_size'], row['old_virtual_size'],
                row['safe']) != ('set', want, None, True):
            misses.append('%s: %s, qemu-img says %d' % (name, row, want))
        elif glance.show(image_id)['virtual_size'] != want:
            misses.append('%s: Glance shows %s' % (
                name, glance.show(image_id)['virtual_size']))
    assert misses == []
    assert status == (3 if unsafe_id in nulls else 0), err

    # --all: also the sizes Glance got wrong (a hybrid ISO, an odd-length
    # raw disk), and the unsafe image Glance made active with a size.
    status, report, err = backfill(glance, '--all', '--concurrency', '2')
    assert status == 3, err
    assert set(report) == set(catalogue)
    for image_id, (name, _disk, container, want) in catalogue.items():
        row = report[image_id]
        if container == 'bare':
            assert row['bytes_read'] <= BUDGET, (name, row)
        if want is not None:
            assert glance.show(image_id)['virtual_size'] == want, name
            assert row['action'] in ('set', 'unchanged'), (name, row)
    assert {catalogue[i][0] for i, row in report.items()
            if row['action'] == 'set'} >= {'raw-odd.raw'} | HYBRID_ISO
    unsafe = [row for row in report.values() if row['action'] == 'unsafe']
    assert [row['id'] for row in unsafe] == [unsafe_id]
    assert 'header_length' in unsafe[0]['failures']
    assert (unsafe[0]['safe'], unsafe[0]['virtual_size']) == (False, None)
    # Reported, and otherwise left alone.
    assert glance.show(unsafe_id)['virtual_size'] == glance_said

    # Idempotent: a second run sets nothing.
    status, again, err = backfill(glance)
    assert (status, again) == (0, {}), err
    status, again, err = backfill(glance, '--all')
    assert status == 3, err
    assert {row['action'] for row in again.values()} == {'unchanged',
                                                         'unsafe'}


def test_backfill_named_images_and_table(glance, catalogue):
    image_id = next(i for i, c in catalogue.items() if c[0] == 'vm.ova')
    proc = subprocess.run(
        [CLI, 'backfill', '--config-dir', os.path.join(glance.data_dir,
                                                       'etc'),
         '--image', image_id], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    header, row = proc.stdout.splitlines()
    assert header.split()[:3] == ['id', 'disk_format', 'container_format']
    assert row.split()[:3] == [image_id, 'vmdk', 'ova']
    assert '1 images' in proc.stderr


def test_backfill_skips_images_gone_and_reports_config_errors(
        glance, tmp_path):
    status, report, _err = backfill(glance, '--image', 'no-such-image')
    assert status == 0
    assert report['no-such-image']['action'] == 'skipped'
    proc = subprocess.run([CLI, 'backfill', '--config-dir', str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert 'glance-api.conf' in proc.stderr
    proc = subprocess.run([CLI, 'backfill'], capture_output=True, text=True)
    assert proc.returncode == 2


@helpers.requires_qemu_img
def test_backfill_reads_an_http_location_by_ranges(glance, tmp_path):
    """Glance alone leaves an image added by location over http without a
    virtual size; backfill reads it with Range requests.
    """
    path = helpers.create(tmp_path / 'big.qcow2', 'qcow2', 900 * G)
    want = helpers.qemu_info(path, 'qcow2')['virtual-size']
    with rangeserver.RangeServer(tmp_path) as server:
        image_id = glance.create('qcow2')
        from tests.functional import test_locations
        status, body = test_locations.add_location_as_service(
            glance, image_id, server.url('big.qcow2'))
        assert status == 202, body
        for _ in range(600):
            if glance.show(image_id)['status'] == 'active':
                break
            time.sleep(0.1)
        assert glance.show(image_id)['virtual_size'] is None
        ranged_before = [r for r in server.requests if r is not None]
        status, report, err = backfill(glance, '--image', image_id)
        ranged = [r for r in server.requests if r is not None]
    assert status == 0, err
    row = report[image_id]
    assert (row['action'], row['virtual_size']) == ('set', want)
    assert glance.show(image_id)['virtual_size'] == want
    assert ranged_before == []
    assert sum(n for _o, n in ranged) == row['bytes_read'] <= BUDGET


@helpers.requires_qemu_img
def test_backfill_reports_an_unreadable_image_as_an_error(glance, tmp_path):
    path = helpers.create(tmp_path / 'gone.ploop', 'ploop', G)
    image_id = glance.create('ploop')
    assert glance.upload(image_id, path)[0] == 204
    before = glance.show(image_id)['virtual_size']
    os.unlink(os.path.join(glance.data_dir, 'images', image_id))
    status, report, err = backfill(glance, '--image', image_id)
    assert status == 0, err
    row = report[image_id]
    assert (row['action'], row['virtual_size']) == ('error', None)
    assert row['failures']['error']
    assert glance.show(image_id)['virtual_size'] == before


#: Runs a command with SIGINT at its default, as at a terminal: a suite
#: started in the background by a non-interactive shell ignores SIGINT,
#: and a child inherits an ignored signal (Python then installs no
#: KeyboardInterrupt handler), so Ctrl-C would not reach it.
WITH_SIGINT = [sys.executable, '-c',
               'import os, signal, sys; '
               'signal.signal(signal.SIGINT, signal.SIG_DFL); '
               'os.execv(sys.argv[1], sys.argv[1:])']


def test_backfill_interrupted_reports_what_it_did(glance, catalogue):
    proc = subprocess.Popen(
        WITH_SIGINT + [CLI, 'backfill', '--config-dir',
                       os.path.join(glance.data_dir, 'etc'),
                       '--all', '--json', '--concurrency', '1'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = json.loads(proc.stdout.readline())
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert 'interrupted; run it again' in err
    done = [first] + [json.loads(line) for line in out.splitlines()]
    assert 0 < len(done) < len(catalogue)
    assert first['id'] in catalogue


@helpers.requires_qemu_img
def test_backfill_skips_images_deleted_or_changed_while_inspected(
        glance, tmp_path):
    """While backfill reads four images (their http server holds the
    reads), one is deleted by its owner, one gets its virtual_size from
    another backfill run, one is deactivated by an admin (Glance's
    deactivate policy is admin only); the first run then writes nothing
    to any of the three and reports each skipped with its reason.
    """
    names = ('deleted', 'sized', 'deactivated', 'kept')
    for name in names:
        path = helpers.create(tmp_path / (name + '.qcow2'), 'qcow2', G)
    want = helpers.qemu_info(path, 'qcow2')['virtual-size']
    admin = glance.as_admin()
    with rangeserver.RangeServer(tmp_path) as server:
        ids = backfill_cli.add_http_images(glance, server, names)
        gates = [server.hold(name + '.qcow2') for name in names]
        args = [CLI, 'backfill', '--config-dir',
                os.path.join(glance.data_dir, 'etc'), '--json',
                '--concurrency', str(len(names))]
        proc = subprocess.Popen(
            args + [a for name in names for a in ('--image', ids[name])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while any(gate.waiting == 0 for gate in gates):
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
            status, body = glance.request('DELETE',
                                          '/v2/images/%s' % ids['deleted'])
            assert status == 204, body
            server.let_through('sized.qcow2')
            status, other, err = backfill(glance, '--image', ids['sized'])
            assert (status, other[ids['sized']]['action']) == (0, 'set'), err
            sized = glance.show(ids['sized'])
            status, body = admin.request(
                'POST', '/v2/images/%s/actions/deactivate'
                % ids['deactivated'])
            assert status == 204, body
            deactivated = admin.show(ids['deactivated'])
            # Glance shows updated_at to the second: a write by the first
            # run, were it made, would show.
            time.sleep(1.1)
        finally:
            for gate in gates:
                gate.release()
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    report = {row['id']: row for row in map(json.loads, out.splitlines())}
    rows = {name: report[ids[name]] for name in names}
    assert {name: row['action'] for name, row in rows.items()} == {
        'deleted': 'skipped', 'sized': 'skipped', 'deactivated': 'skipped',
        'kept': 'set'}
    assert rows['deleted']['failures'] == {
        'skipped': 'the image was deleted while it was inspected'}
    assert 'virtual_size None -> %d' % want in \
        rows['sized']['failures']['skipped']
    assert 'status active -> deactivated' in \
        rows['deactivated']['failures']['skipped']
    # Nothing written to them: not even the same value again.
    assert glance.request('GET', '/v2/images/%s' % ids['deleted'])[0] == 404
    assert glance.show(ids['sized']) == sized
    assert sized['virtual_size'] == want
    assert admin.show(ids['deactivated']) == deactivated
    assert deactivated['virtual_size'] is None
    assert glance.show(ids['kept'])['virtual_size'] == want


@helpers.requires_qemu_img
def test_backfill_shows_progress_on_a_terminal_only(glance, tmp_path):
    ids = []
    for n in range(3):
        path = helpers.create(tmp_path / ('p%d.vhd' % n), 'vhd', G)
        image_id = glance.create('vhd')
        assert glance.upload(image_id, str(path))[0] == 204
        ids.append(image_id)
    args = [CLI, 'backfill', '--config-dir',
            os.path.join(glance.data_dir, 'etc'), '--dry-run']
    args += [a for image_id in ids for a in ('--image', image_id)]

    # On a terminal: the progress line (images done, bytes read, rate),
    # redrawn in place; stdout, not a terminal, stays the JSON lines.
    status, shown, out = backfill_cli.on_a_terminal(args + ['--json'])
    assert status == 0, shown
    rows = [json.loads(line) for line in out.splitlines()]
    assert sorted(row['id'] for row in rows) == sorted(ids)
    progress = backfill_cli.PROGRESS.findall(shown)
    assert [int(done) for done, _mib, _rate in progress] == [1, 2, 3], shown
    read = sum(row['bytes_read'] for row in rows)
    assert read > 0
    assert progress[-1][1] == '%.1f' % (read / MiB)
    assert float(progress[-1][2]) > 0
    assert '3 images: ' in shown        # the summary, after the progress
    assert shown.rindex('3 images: ') > shown.rindex('images/s')

    # Without a terminal: no progress line; stdout is the table alone.
    proc = subprocess.run(args, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert '\r' not in proc.stderr and 'images/s' not in proc.stderr
    assert '3 images: ' in proc.stderr
    header, *table = proc.stdout.splitlines()
    assert header.split()[:3] == ['id', 'disk_format', 'container_format']
    assert sorted(line.split()[0] for line in table) == sorted(ids)
