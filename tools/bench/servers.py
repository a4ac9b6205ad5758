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

"""Figure 4 of issue 5: the two real Glance APIs compared, one with
glance_vsize and one without (``tools/run-glance --no-vsize``), started
afresh for every run, pinned to one CPU, and the CPU they use.

Runs of the same upload moved by 10-25% (Glance's CPU as much as the wall
clock): gunicorn copies what it holds buffered on every read, and how much
it holds depends on how full the socket is.  Fresh processes every run,
in alternating order, spread whatever a server's history does over both
configurations; pinning keeps the scheduler from moving the server and
from putting the client that uploads on the same CPU.
"""

import os
import time

from .report import out
from .uploads import delete
from .uploads import upload_create
from .uploads import upload_import

CONFIGS = (('without', ['--no-vsize']), ('with', []))


def _processes(glance):
    """{pid: CPU ticks} of the Glance's gunicorn master and workers, or
    None when it has no pid file.
    """
    try:
        with open(os.path.join(glance.data_dir, 'gunicorn.pid')) as f:
            root = int(f.read().strip())
    except (OSError, ValueError):
        return None
    procs = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        # proc(5): ppid is field 4, utime 14, stime 15 (state is field 3).
        procs[int(entry)] = (int(fields[1]),
                             int(fields[11]) + int(fields[12]))
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        tree[pid] = procs.get(pid, (0, 0))[1]
        todo.extend(p for p, (ppid, _) in procs.items() if ppid == pid)
    return tree


def server_cpu(glance):
    """CPU seconds used so far by the Glance's gunicorn processes."""
    tree = _processes(glance)
    if tree is None:
        return None
    return sum(tree.values()) / os.sysconf('SC_CLK_TCK')


def pin(glance, cpu):
    """Run every thread of the Glance's gunicorn processes on ``cpu`` only
    (threads and processes they start later inherit it): the scheduler
    no longer moves the server, and the client that uploads, pinned to
    another CPU, does not share one with it.  False where it cannot.
    """
    if not hasattr(os, 'sched_setaffinity'):
        return False
    for pid in _processes(glance) or ():
        try:
            for task in os.listdir('/proc/%d/task' % pid):
                os.sched_setaffinity(int(task), {cpu})
        except OSError:
            return False
    return True


def pin_apart(glances):
    """Both Glances on the last CPU, this process (the client) on the
    others, when there are two or more; returns this process's CPUs as
    they were, or None.
    """
    if not hasattr(os, 'sched_getaffinity'):
        return None
    mine = os.sched_getaffinity(0)
    if len(mine) < 2:
        return None
    server = max(mine)
    if not all(pin(g, server) for g in glances.values()):
        return None
    os.sched_setaffinity(0, mine - {server})
    return mine


class Pair:
    """Both Glances, as a context manager: started (data in
    ``workdir/glance-with`` and ``-without``), pinned apart from this
    process, warmed up with one small upload on each path; stopped, and
    this process's CPUs restored, on exit.
    """

    def __init__(self, workdir, warm_image, verbose=False, extra=()):
        self.workdir = workdir
        self.extra = list(extra)    # run-glance options for both
        self.warm_image = warm_image
        self.verbose = verbose
        self.glances = {}
        self.pinned = None

    def __enter__(self):
        from tests.functional.glance import Glance
        try:
            for name, extra in CONFIGS:
                t0 = time.perf_counter()
                self.glances[name] = Glance(
                    os.path.join(self.workdir, 'glance-' + name),
                    extra_args=extra + self.extra)
                if self.verbose:
                    out('   Glance %s glance_vsize ready on port %d (%.0f s)'
                        % (name, self.glances[name].port,
                           time.perf_counter() - t0))
            self.pinned = pin_apart(self.glances)
            if self.verbose:
                out('   Glance pinned to CPU %s, this client to the others'
                    % max(self.pinned) if self.pinned else
                    '   (Glance not pinned: one CPU, or not allowed)')
            for glance in self.glances.values():
                for upload in (upload_create, upload_import):
                    _elapsed, img = upload(glance, self.warm_image, 'qcow2')
                    delete(glance, img['id'])
        except BaseException:
            self.__exit__()
            raise
        return self.glances

    def __exit__(self, *exc):
        for glance in self.glances.values():
            glance.stop()
        self.glances = {}
        if self.pinned:
            os.sched_setaffinity(0, self.pinned)
            self.pinned = None
        return False
