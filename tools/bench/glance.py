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

"""Figure 4 of issue 5, end to end against a real Glance: uploads with and
without glance_vsize (create-image and import), the paste filter's CPU in
Glance's body stack, and the bytes of an unsafe upload stored before the
refusal.
"""

import io
import os
import random
import statistics
import time
import warnings

import glance_vsize

from . import profile
from . import REPO
from .images import qemu_img
from .images import qemu_vsize
from .images import read_range
from .refusal import refused_upload
from .report import GiB
from .report import KiB
from .report import MiB
from .report import out
from .report import ratio
from .report import RESULTS
from .report import size
from .report import table
from .report import target
from .report import TARGET_E2E
from .report import TARGET_REFUSED
from .servers import Pair
from .servers import server_cpu
from .streams import filler_bytes
from .uploads import delete
from .uploads import upload_create
from .uploads import upload_import


def filter_stack_cpu(header, total=GiB, chunk=64 * KiB, runs=5):
    """CPU seconds to read ``total`` bytes through the body stack Glance
    reads an upload from (webob's BufferedReader(LimitedLengthFile)), with
    and without the paste filter's readers in it; medians, in process.
    The input costs the same per byte whatever the read size, so that
    this measures the filter, not the input.  (gunicorn's own input is
    cheaper read in the filter's 1 MiB blocks than in Glance's 64 KiB:
    the end-to-end figures show that.)
    """
    import webob.request
    with warnings.catch_warnings():     # eventlet's, through oslo.messaging
        warnings.simplefilter('ignore')
        from glance_vsize.glance import middleware

    block = filler_bytes(MiB)

    class Body:
        """A WSGI input: ``header``, then data, in reads of any size up
        to 1 MiB; every read is full (webob takes a short read for a
        disconnection).
        """

        def __init__(self):
            self.sent = 0

        def read(self, size):
            size = min(size, total - self.sent)
            if size <= 0:
                return b''
            if self.sent < len(header):
                data = (header[self.sent:] + block)[:size]
            else:
                data = block[:size]
            self.sent += size
            return data

    def run(wrap):
        body = io.BufferedReader(webob.request.LimitedLengthFile(
            wrap(Body()), total))
        t0 = time.process_time()
        while body.read(chunk):
            pass
        return time.process_time() - t0

    def filtered(src):
        return middleware._RefusingReader(glance_vsize.InspectingReader(
            src, 'qcow2', fail_fast=True, expected_size=total), 'bench',
            'qcow2')
    bare, ours = [], []
    for _ in range(runs):
        bare.append(run(lambda src: src))
        ours.append(run(filtered))
    return statistics.median(bare), statistics.median(ours)


def run_glance_supports_no_vsize():
    for path in (('tools', 'run-glance'), ('tools', 'lab', 'cli.py')):
        try:
            with open(os.path.join(REPO, *path)) as f:
                if '--no-vsize' in f.read():
                    return True
        except FileNotFoundError:
            pass
    return False


class E2EImages:
    """The images of figure 4, made once in ``workdir``: :attr:`image`, a
    1 GiB qcow2 of random data, and its qemu-img virtual size
    :attr:`expect`; :attr:`warm`, a small qcow2 that warms up a fresh
    Glance; :attr:`header`, an unsafe qcow2 naming a backing file.
    """

    def __init__(self, workdir):
        raw = os.path.join(workdir, 'e2e.raw')
        self.image = os.path.join(workdir, 'e2e.qcow2')
        if not os.path.exists(self.image):
            rnd = random.Random(4)
            with open(raw, 'wb') as f:
                for _ in range(GiB // MiB):
                    f.write(rnd.randbytes(MiB))
            qemu_img('convert', '-q', '-f', 'raw', '-O', 'qcow2', raw,
                     self.image)
            os.unlink(raw)
        self.expect = qemu_vsize(self.image, 'qcow2')
        self.warm = os.path.join(workdir, 'warm.qcow2')
        if not os.path.exists(self.warm):
            qemu_img('create', '-q', '-f', 'qcow2', self.warm, str(GiB))
        base = os.path.join(workdir, 'base.raw')
        child = os.path.join(workdir, 'child.qcow2')
        with open(base, 'wb') as f:
            f.truncate(GiB)
        if not os.path.exists(child):
            qemu_img('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw',
                     child, str(GiB))
        with open(child, 'rb') as f:
            self.header = f.read()


UPLOADS = (('create', upload_create), ('import', upload_import))


def timed_runs(workdir, images, runs):
    """``runs`` runs, each with both Glances started afresh: the uploads
    alternate with and without glance_vsize, the order swapped every run.
    Returns wall seconds, the gunicorn processes' CPU seconds and the
    virtual sizes, by (path, name).
    """
    times, cpu, sizes = {}, {}, {}
    for run in range(runs):
        order = ['without', 'with'] if run % 2 else ['with', 'without']
        with Pair(workdir, images.warm, verbose=not run) as glances:
            for path, upload in UPLOADS:
                for name in order:
                    glance = glances[name]
                    cpu0 = server_cpu(glance)
                    elapsed, img = upload(glance, images.image, 'qcow2')
                    cpu1 = server_cpu(glance)
                    delete(glance, img['id'])
                    sizes[(path, name)] = img.get('virtual_size')
                    times.setdefault((path, name), []).append(elapsed)
                    if cpu0 is not None and cpu1 is not None:
                        cpu.setdefault((path, name), []).append(cpu1 - cpu0)
    return times, cpu, sizes


def report_runs(times, cpu, sizes, expect):
    """The wall-clock table and target; returns the median create-image
    CPU seconds without glance_vsize.
    """
    rows = []
    worst = 0
    for path, _fn in UPLOADS:
        walls = times[(path, 'with')], times[(path, 'without')]
        without = statistics.median(walls[1])
        with_ = statistics.median(walls[0])
        r = with_ / without
        worst = max(worst, r)
        paired = statistics.median(a / b for a, b in zip(*walls))
        cpus = cpu.get((path, 'with')), cpu.get((path, 'without'))
        cpu_with = statistics.median(cpus[0]) if cpus[0] else None
        cpu_without = statistics.median(cpus[1]) if cpus[1] else None
        cpu_r = ratio(cpu_with, cpu_without) if cpus[0] and cpus[1] \
            else None
        rows.append([path, '%.2f s' % without, '%.2f s' % with_,
                     '%.3f' % r, '%.3f' % paired,
                     '%.2f s' % cpu_without if cpu_without else 'n/a',
                     '%.2f s' % cpu_with if cpu_with else 'n/a',
                     '%.3f' % cpu_r if cpu_r else 'n/a',
                     '%s / %s' % (sizes[(path, 'with')],
                                  sizes[(path, 'without')])])
        RESULTS.setdefault('glance', []).append({
            'path': path, 'without_s': without, 'with_s': with_,
            'ratio': r, 'paired_ratio': paired,
            'with_runs': walls[0], 'without_runs': walls[1],
            'cpu_without_s': cpu_without, 'cpu_with_s': cpu_with,
            'cpu_ratio': cpu_r, 'cpu_with_runs': cpus[0],
            'cpu_without_runs': cpus[1]})
    table(['path', 'wall without', 'wall with', 'with/without',
           'paired', 'Glance CPU without', 'CPU with', 'with/without',
           'virtual_size with / without'], rows)
    for path, _fn in UPLOADS:
        out('   %s runs (wall s), with: %s; without: %s' % (
            path, ' '.join('%.2f' % t for t in times[(path, 'with')]),
            ' '.join('%.2f' % t for t in times[(path, 'without')])))
    out('   qemu-img info: virtual size %d; worst wall-clock ratio %.3f '
        '(target <= %.2f: %s)' % (expect, worst, TARGET_E2E, target(
            '4. upload with / without glance_vsize', worst,
            worst <= TARGET_E2E, '%.3f' % worst)))
    out('   (ratio of the medians; "paired": median of the ratios of the '
        'two uploads of each run.  Glance CPU: user+system seconds of its '
        'gunicorn processes during the upload.  With glance_vsize, the '
        'body is read from gunicorn in 1 MiB blocks where Glance reads '
        '64 KiB, and gunicorn 27 copies all it holds buffered on every '
        'read: that saves more than inspecting costs.  What inspecting '
        'costs on its own: the next two figures.)')
    without = cpu.get(('create', 'without'))
    return statistics.median(without) if without else None


def report_share(glance, image, workdir):
    """glance_vsize's share of the Glance worker's CPU samples (py-spy)
    while it serves one upload of each path, after the timed runs.
    """
    if profile.py_spy() is None:
        out('   glance_vsize\'s share of Glance\'s CPU: n/a (py-spy is not '
            'installed; it is in test-requirements.txt)')
        return
    with open(os.path.join(glance.data_dir, 'gunicorn.pid')) as f:
        master = int(f.read().strip())
    shares = []
    for path, upload in UPLOADS:
        output = os.path.join(workdir, 'py-spy-%s.txt' % path)
        with profile.Recorder(master, output) as recorder:
            _elapsed, img = upload(glance, image, 'qcow2')
        delete(glance, img['id'])
        if recorder.share is None:
            shares.append('%s: n/a (py-spy: %s)' % (path, recorder.error))
            continue
        total, ours = recorder.share
        RESULTS.setdefault('cpu_share', []).append(
            {'path': path, 'samples': total, 'glance_vsize': ours})
        shares.append('%s %.2f%% (%d of %d samples)' % (
            path, 100 * ours / total if total else 0, ours, total))
    out('   py-spy in the Glance worker, one more upload with glance_vsize: '
        'its own code (inspecting chunks and staged files, reading the '
        'image and setting virtual_size) takes %s of the samples'
        % '; '.join(shares))


def report_filter_stack(image, cpu_create):
    bare, ours = filter_stack_cpu(read_range(image, 0, MiB))
    out('   In process, reading 1 GiB in 64 KiB chunks through Glance\'s '
        'body stack (webob) costs %.0f ms CPU; with the paste filter\'s '
        'readers in it %.0f ms: %+.1f ms per GiB, %s of Glance\'s CPU '
        'for a create-image upload' % (
            bare * 1e3, ours * 1e3, (ours - bare) * 1e3,
            '%+.2f%%' % (100 * (ours - bare) / cpu_create)
            if cpu_create else 'n/a'))
    RESULTS['filter_stack'] = {'bare_s': bare, 'with_filter_s': ours,
                               'glance_create_cpu_s': cpu_create}


def report_refused(glances, header):
    out()
    out('   Unsafe 1 GiB upload (a qcow2 naming a backing file, then '
        '1 GiB of data), create-image path:')
    rows = []
    refused = {}
    for name in ('with', 'without'):
        status, logged, largest, after, _ = refused_upload(
            glances[name], header, GiB)
        refused[name] = (logged, largest)
        rows.append([name, status, after, size(logged) if logged
                     is not None else '-', size(largest)])
    table(['glance_vsize', 'HTTP', 'status after',
           'read before refusal (log)', 'largest store file seen'], rows)
    logged, largest = refused['with']
    reached = max(logged or 0, largest)
    anchor = refused['without'][1]
    out('   with glance_vsize the refusal came after the filter read %s of '
        'the body (it hands Glance none of a block it refuses); largest '
        'store file seen: %s; the larger of the two: '
        '%s (target <= %s: %s); without: %s (%s of it)' % (
            size(logged) if logged is not None else '-', size(largest),
            size(reached), size(TARGET_REFUSED), target(
                '4. bytes stored before an unsafe upload is refused',
                reached, logged is not None and reached <= TARGET_REFUSED,
                size(reached)),
            size(anchor), '%.4f%%' % (100 * reached / anchor)
            if anchor else 'n/a'))


def section_glance(args, workdir):
    runs = args.runs or (3 if args.quick else 5)
    out()
    out('4. End to end against a real Glance (tools/run-glance), 1 GiB '
        'qcow2 (random data), median of %d runs, each with both Glances '
        'started afresh and warmed up' % runs)
    out('   data directories in %s' % workdir)
    if not run_glance_supports_no_vsize():
        out('   n/a: tools/run-glance has no --no-vsize option')
        return
    images = E2EImages(workdir)
    times, cpu, sizes = timed_runs(workdir, images, runs)
    cpu_create = report_runs(times, cpu, sizes, images.expect)
    with Pair(workdir, images.warm) as glances:
        report_share(glances['with'], images.image, workdir)
        report_filter_stack(images.image, cpu_create)
        report_refused(glances, images.header)
