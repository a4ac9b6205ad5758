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

"""Section 5 (issue 13): a 2 GiB upload to the RBD store of a real Glance
(``tools/run-glance --store rbd``: Ceph from Debian's packages, BlueStore
on a file), with and without glance_vsize, median of ``--runs``.

Two labs, each with its own Ceph cluster, started afresh for every run
(the clusters are made once and started again on their data), pinned as
section 4 pins them (Glance on one CPU, this client on the others; the
Ceph daemons are not pinned).  Both paths: create-image (``PUT .../file``
straight into RBD) and glance-direct import (staged to a file, then
copied into RBD by the import task)."""

import os
import random
import statistics

from .images import qemu_img
from .images import qemu_vsize
from .report import GiB
from .report import MiB
from .report import out
from .report import RESULTS
from .report import table
from .servers import Pair
from .servers import server_cpu
from .uploads import delete
from .uploads import upload_create
from .uploads import upload_import

UPLOADS = (('create', upload_create), ('import', upload_import))
SIZE = 2 * GiB


def make_image(workdir):
    """A 2 GiB qcow2 of random data, and a small one for warming up.

    Every cluster of the large one is allocated.
    """
    image = os.path.join(workdir, 'rbd-2g.qcow2')
    if not os.path.exists(image):
        raw = os.path.join(workdir, 'rbd-2g.raw')
        rnd = random.Random(13)
        with open(raw, 'wb') as f:
            for _ in range(SIZE // MiB):
                f.write(rnd.randbytes(MiB))
        qemu_img('convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, image)
        os.unlink(raw)
    warm = os.path.join(workdir, 'rbd-warm.qcow2')
    if not os.path.exists(warm):
        qemu_img('create', '-q', '-f', 'qcow2', warm, str(GiB))
    return image, warm


def section_rbd(args, workdir):
    runs = args.runs or (3 if args.quick else 5)
    out()
    out('5. A 2 GiB qcow2 (random data) uploaded to the RBD store of a real '
        'Glance (tools/run-glance --store rbd), median of %d runs, both '
        'labs started afresh every run' % runs)
    image, warm = make_image(workdir)
    expect = qemu_vsize(image, 'qcow2')
    base = os.path.join(workdir, 'rbd')
    times, cpu, sizes = {}, {}, {}
    for run in range(runs):
        order = ['without', 'with'] if run % 2 else ['with', 'without']
        with Pair(base, warm, verbose=not run,
                  extra=['--store', 'rbd']) as glances:
            for path, upload in UPLOADS:
                for name in order:
                    glance = glances[name]
                    cpu0 = server_cpu(glance)
                    elapsed, img = upload(glance, image, 'qcow2')
                    cpu1 = server_cpu(glance)
                    delete(glance, img['id'])
                    sizes[(path, name)] = img.get('virtual_size')
                    times.setdefault((path, name), []).append(elapsed)
                    cpu.setdefault((path, name), []).append(cpu1 - cpu0)
    rows = []
    for path, _fn in UPLOADS:
        w, wo = times[(path, 'with')], times[(path, 'without')]
        r = statistics.median(w) / statistics.median(wo)
        cw = statistics.median(cpu[(path, 'with')])
        cwo = statistics.median(cpu[(path, 'without')])
        rows.append([path, '%.2f s' % statistics.median(wo),
                     '%.2f s' % statistics.median(w), '%.3f' % r,
                     '%.2f s' % cwo, '%.2f s' % cw, '%.3f' % (cw / cwo),
                     '%s / %s' % (sizes[(path, 'with')],
                                  sizes[(path, 'without')])])
        RESULTS.setdefault('rbd', []).append({
            'path': path, 'with_runs': w, 'without_runs': wo, 'ratio': r,
            'cpu_with_runs': cpu[(path, 'with')],
            'cpu_without_runs': cpu[(path, 'without')]})
        out('   %s runs (wall s), with: %s; without: %s' % (
            path, ' '.join('%.2f' % t for t in w),
            ' '.join('%.2f' % t for t in wo)))
    table(['path', 'wall without', 'wall with', 'with/without',
           'Glance CPU without', 'CPU with', 'with/without',
           'virtual_size with / without'], rows)
    out('   qemu-img info: virtual size %d.  (Glance CPU: user+system '
        'seconds of its gunicorn processes during the upload; the Ceph '
        'daemons are not counted.)' % expect)
