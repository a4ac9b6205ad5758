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

"""Output shared by every section: the targets of issue 5, the figures
beside them (``RESULTS``, which ``--json`` writes), the machine they were
measured on and its load.
"""

import importlib.metadata
import os
import platform
import shutil
import subprocess

import glance_vsize


KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

#: Targets from issue 5.
TARGET_CHUNK_NS = 1000          # per chunk, after the header phase
TARGET_VS_OSLO = 20             # times lower than oslo.utils
TARGET_VS_SHA = 0.01            # fraction of a sha512 pass
TARGET_MEMORY = 2 * MiB
TARGET_SEEK = 5                 # times faster than qemu-img info
TARGET_E2E = 1.02
TARGET_REFUSED = 4 * MiB

RESULTS = {'targets': []}


# --------------------------------------------------------------- output

def out(line=''):
    print(line, flush=True)


def table(header, rows):
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows
              else len(str(h)) for i, h in enumerate(header)]
    fmt = '  '.join('%%-%ds' if i == 0 else '%%%ds' for i in
                    range(len(header))) % tuple(widths)
    out(fmt % tuple(header))
    out(fmt % tuple('-' * w for w in widths))
    for r in rows:
        out(fmt % tuple(r))


def target(name, value, ok, shown):
    RESULTS['targets'].append({'target': name, 'value': value,
                               'pass': bool(ok), 'shown': shown})
    return 'PASS' if ok else 'MISS'


def ns(value):
    if value is None:
        return 'n/a'
    if abs(value) >= 10000:
        return '%.1f us' % (value / 1000)
    return '%.0f ns' % value


def size(value):
    if value is None:
        return 'n/a'
    for unit, name in ((TiB, 'TiB'), (GiB, 'GiB'), (MiB, 'MiB'),
                       (KiB, 'KiB')):
        if abs(value) >= unit:
            return '%.3g %s' % (value / unit, name)
    return '%d B' % value


def ratio(a, b):
    if not b:
        return None
    return a / b


def fx(value, digits=1):
    if value is None:
        return 'n/a'
    if value == float('inf'):
        return 'inf'
    return '%.*fx' % (digits, value)


# --------------------------------------------------------------- machine

def machine():
    cpu = 'unknown'
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open('/proc/meminfo') as f:
            mem = int(f.readline().split()[1]) * KiB
    except (OSError, ValueError, IndexError):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()

    def version(dist):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return 'not installed'

    qemu = 'not installed'
    if shutil.which('qemu-img'):
        qemu = subprocess.run(['qemu-img', '--version'], capture_output=True,
                              text=True).stdout.splitlines()[0]
    info = {
        'cpu': cpu, 'cores': os.cpu_count(), 'usable_cores': usable,
        'memory': size(mem), 'kernel': platform.release(),
        'python': '%s %s' % (platform.python_implementation(),
                             platform.python_version()),
        'oslo.utils': version('oslo.utils'), 'glance': version('glance'),
        'qemu-img': qemu,
    }
    RESULTS['machine'] = info
    out('Machine: %s, %d cores (%d usable), %s RAM, Linux %s'
        % (cpu, info['cores'], usable, info['memory'], info['kernel']))
    out('         %s; oslo.utils %s; glance %s; %s'
        % (info['python'], info['oslo.utils'], info['glance'], qemu))
    engine = os.path.dirname(os.path.abspath(glance_vsize.__file__))
    rev = subprocess.run(['git', '-C', engine, 'describe', '--always',
                          '--dirty=+uncommitted changes'],
                         capture_output=True, text=True).stdout.strip()
    RESULTS['engine'] = {'path': engine, 'git': rev or None}
    out('Engine:  %s (git %s)' % (engine, rev or 'n/a'))
    load()


def load():
    """The load average: other work on the machine skews every figure."""
    try:
        avg = os.getloadavg()
    except OSError:
        return
    RESULTS.setdefault('load', []).append(avg)
    out('Load average: %.2f %.2f %.2f' % avg)
