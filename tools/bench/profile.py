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

"""Figure 4 of issue 5, the part a busy machine does not blur: which share
of a real Glance's CPU an upload spends in glance_vsize's own code.

Wall-clock ratios of two uploads move by several percent from run to run
on a shared 2-core machine, more than the 2% target.  py-spy samples the
stacks of the Glance worker while it serves an upload; a sample counts as
glance_vsize's when the innermost glance_vsize frame on its stack is doing
the work itself (inspecting a chunk, reading the database to set
virtual_size), not passing the request on to Glance (the paste filter's
``__call__``) or waiting on the WSGI server's request body that Glance
would read anyway.  What the share leaves out is indirect (caches, the
GIL); what it counts is an upper bound of the inspection's direct cost.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

#: "func (path:line)", as py-spy writes frames in its raw format.
_FRAME = re.compile(r'^(?P<func>.*) \((?P<path>[^()]*?)(?::\d+)?\)$')
#: glance_vsize frames that only pass the request on to Glance.
_PASS_ON = {
    ('VirtualSizeMiddleware.__call__', 'glance_vsize/glance/middleware.py'),
}
#: What glance_vsize's readers read from: the WSGI server's request body
#: (gunicorn), which Glance reads without glance_vsize too.
_SOURCE = ('gunicorn/http/',)
#: The oslo.utils-compatible InspectWrapper's reads: what they call is
#: Glance's own data source (the staged file, a store), which Glance reads
#: through oslo.utils' InspectWrapper without glance_vsize.
_WRAPPER_READS = {
    ('InspectWrapper.read', 'glance_vsize/glance/format_inspector.py'),
    ('InspectWrapper.__next__', 'glance_vsize/glance/format_inspector.py'),
}


def py_spy():
    """The py-spy executable (test-requirements.txt), or None."""
    here = os.path.join(os.path.dirname(sys.executable), 'py-spy')
    return here if os.access(here, os.X_OK) else shutil.which('py-spy')


def _frame(text):
    m = _FRAME.match(text)
    return (m.group('func'), m.group('path')) if m else (text, '')


def attribute(lines):
    """(samples, glance_vsize's samples) of py-spy raw (folded) output."""
    total = ours = 0
    for line in lines:
        stack, _, count = line.rstrip('\n').rpartition(' ')
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_frame(f) for f in stack.split(';')]
        deepest = None
        for i, (_func, path) in enumerate(frames):
            if path.startswith('glance_vsize/'):
                deepest = i
        if deepest is None or frames[deepest] in _PASS_ON:
            continue
        if any(path.startswith(_SOURCE) for _f, path in frames[deepest + 1:]):
            continue
        if frames[deepest] in _WRAPPER_READS and frames[deepest + 1:]:
            continue
        ours += samples
    return total, ours


class Recorder:
    """py-spy recording a gunicorn master's workers, as a context manager;
    :attr:`share` is (samples, glance_vsize's samples) once it exits.
    """

    def __init__(self, master_pid, output, rate=250):
        self.output = output
        self.share = None
        self.error = None
        if os.path.exists(output):
            os.unlink(output)       # never read a previous run's samples
        self.proc = subprocess.Popen(
            [py_spy(), 'record', '--pid', str(master_pid), '--subprocesses',
             '--rate', str(rate), '--format', 'raw', '--nonblocking',
             '--output', output],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def __enter__(self):
        time.sleep(1)       # py-spy attaches to the workers
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGINT)
        try:
            _out, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            self.error = 'py-spy did not stop within 60 s'
            return False
        if os.path.exists(self.output):
            with open(self.output) as f:
                self.share = attribute(f)
        else:
            self.error = (err.strip().splitlines() or ['no output'])[-1]
        return False
