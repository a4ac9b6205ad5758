#!/usr/bin/env python3
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

"""What inspection costs, side by side with what it is measured against.

Usage (after ``tools/setup-venv`` or one ``tools/run-glance``, which create
``.venv``)::

    .venv/bin/python tools/benchmark.py [--quick] [--only 1,2,3,4]
                                        [--runs N] [--workdir DIR]
                                        [--json FILE]

Four sections, each figure printed beside its anchor as a ratio, with the
issue's target and PASS/MISS (the script always exits 0: it measures, it
does not test):

1. Streaming overhead per chunk (64 KiB and 1 MiB chunks) over a 4 GiB
   in-memory stream per format: a bare ``read`` loop, the same loop through
   ``glance_vsize.InspectingReader`` (as the paste filter builds it) and
   through oslo.utils' ``InspectWrapper`` (as Glance builds it), and a
   sha512 pass.  The stream is the real bytes of a qemu-img image (xorriso
   for ISO) followed by one reused chunk-sized buffer, and the image's
   trailer where it has one: never 4 GiB in RAM.  Figures are the median
   per-chunk cost over batches of chunks after the header phase, minus the
   bare loop's.
2. Extra memory held (tracemalloc peak minus the bare loop's) streaming
   1 GiB and 3 TiB images: the real files of the sparse formats (read in
   fresh 1 MiB chunks, as a WSGI input does), a generator for raw-data
   formats, and the ova and compressed containers when ``InspectingReader``
   takes ``container_format``.
3. Seekable inspection (``glance_vsize.inspect_file``) against a
   ``qemu-img info --output=json`` subprocess on sparse images of 1 GiB,
   100 GiB and 3 TiB virtual size.
4. End to end against a real Glance (``tools/run-glance``, and
   ``tools/run-glance --no-vsize`` for the same Glance without
   glance_vsize): a 1 GiB qcow2 through create-image and through import,
   median of ``--runs``; and how many bytes of an unsafe 1 GiB upload reach
   the store before the refusal.

``--quick`` shortens sections 1 and 2 (1 GiB streams, fewer sha512
batches, 4 MiB chunks for the 3 TiB generators) and runs section 4 three
times.  Section 4 needs a free minute and about 4 GiB in the work
directory (default: a temporary directory in /dev/shm when it has room, so
the figures measure CPU, not disk).
"""

import argparse
import gc
import gzip
import hashlib
import http.client
import importlib.metadata
import inspect as pyinspect
import io
import itertools
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import tracemalloc
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PY = os.path.join(REPO, '.venv', 'bin', 'python')

try:
    from oslo_utils.imageutils import format_inspector
except ImportError:
    if os.path.exists(VENV_PY) and \
            os.path.realpath(sys.executable) != os.path.realpath(VENV_PY):
        os.execv(VENV_PY, [VENV_PY] + sys.argv)
    sys.exit('benchmark: oslo.utils is not installed; run tools/setup-venv, '
             'then .venv/bin/python tools/benchmark.py')

if REPO not in sys.path:
    sys.path.insert(0, REPO)

import glance_vsize  # noqa: E402

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
QEMU_NAME = {'vhd': 'vpc', 'ploop': 'parallels'}

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


# --------------------------------------------------------------- images

def qemu_img(*args):
    subprocess.run(('qemu-img',) + args, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def qemu_create(path, fmt, vsize, *opts):
    if not os.path.exists(path):
        qemu_img('create', '-q', '-f', QEMU_NAME.get(fmt, fmt), *opts,
                 path, str(vsize))
    return path


def qemu_vsize(path, fmt):
    proc = subprocess.run(['qemu-img', 'info', '--output=json', '-f',
                           QEMU_NAME.get(fmt, fmt), path],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)['virtual-size']


def make_iso(path):
    if not os.path.exists(path):
        tree = path + '.d'
        os.makedirs(tree, exist_ok=True)
        with open(os.path.join(tree, 'hello.txt'), 'w') as f:
            f.write('hello\n' * 4000)
        subprocess.run(['xorriso', '-as', 'mkisofs', '-quiet', '-V', 'BENCH',
                        '-o', path, tree], check=True,
                       stderr=subprocess.DEVNULL)
    return path


def read_range(path, offset, length):
    with open(path, 'rb') as f:
        f.seek(offset)
        return f.read(length)


class Layout:
    """A stream of ``total`` bytes: ``head``, filler, ``trailer``."""

    def __init__(self, label, disk_format, head, trailer, total, expect,
                 path=None):
        self.path = path            # the qemu-img file it comes from
        self.label = label
        self.disk_format = disk_format
        self.head = head
        self.trailer = trailer
        self.total = total
        self.expect = expect        # the virtual size qemu-img reports


#: Section 1 and 2 formats: label, disk_format, qemu-img create options,
#: bytes of trailer (the image's last bytes, which come after the data).
STREAM_FORMATS = (
    ('qcow2', 'qcow2', (), 0),
    ('vmdk streamOptimized', 'vmdk', ('-o', 'subformat=streamOptimized'),
     1536),
    ('vhd dynamic', 'vhd', ('-o', 'subformat=dynamic'), 512),
    ('vhd fixed', 'vhd', ('-o', 'subformat=fixed'), 512),
    ('vhdx', 'vhdx', (), 0),
    ('raw', 'raw', (), 0),
    ('iso', 'iso', None, 0),
)

#: Sparse formats whose real file is the stream (section 2): label,
#: disk_format, create options.
SPARSE_FORMATS = (
    ('qcow2', 'qcow2', ()),
    ('vmdk streamOptimized', 'vmdk', ('-o', 'subformat=streamOptimized')),
    ('vmdk monolithicSparse', 'vmdk', ()),
    ('vhd dynamic', 'vhd', ('-o', 'subformat=dynamic')),
    ('vhdx', 'vhdx', ()),
    ('vdi', 'vdi', ()),
    ('ploop', 'ploop', ()),
)

#: VHD's largest disk (qemu block/vpc.c VHD_MAX_SECTORS, 0xff000000).
VHD_MAX = 2040 * GiB


def make_image(workdir, label, disk_format, opts, vsize):
    """A sparse qemu-img image: ``(path, label, qemu-img's virtual size)``.
    VHD is capped at its largest size (the label says so)."""
    if disk_format == 'vhd' and vsize > VHD_MAX:
        vsize = VHD_MAX
        label += ' (2040 GiB: VHD maximum)'
    path = os.path.join(workdir, '%s-%d.img' % (label.split(' (')[0]
                                                .replace(' ', '-'), vsize))
    qemu_create(path, disk_format, vsize, *opts)
    return path, label, qemu_vsize(path, disk_format)


def image_layout(workdir, label, disk_format, opts, trailer_len, vsize):
    """The stream of a ``vsize`` image of this format, as a :class:`Layout`.

    Sparse formats: the real file then filler up to ``vsize`` bytes (data
    clusters/blocks/grains), then the trailer.  Raw-data formats (raw,
    fixed VHD): the file's first MiB and trailer, filler between.  ISO:
    an xorriso image then filler.
    """
    if disk_format == 'iso':
        path = make_iso(os.path.join(workdir, 'bench.iso'))
        head = read_range(path, 0, os.path.getsize(path))
        return Layout(label, 'iso', head, b'', vsize, vsize, path)
    path, label, expect = make_image(workdir, label, disk_format, opts,
                                     vsize)
    length = os.path.getsize(path)
    if length >= expect:        # raw data: the file is the disk
        head = read_range(path, 0, MiB)
        trailer = read_range(path, length - trailer_len, trailer_len)
        return Layout(label, disk_format, head, trailer, length, expect,
                      path)
    data = read_range(path, 0, length)
    cut = length - trailer_len
    return Layout(label, disk_format, data[:cut], data[cut:],
                  max(vsize, length), expect, path)


class SyntheticStream:
    """A file-like object: ``layout.total`` bytes in ``chunk``-sized reads.

    Only the head, the trailer and one chunk of filler exist in memory;
    every chunk that holds nothing but filler is that one buffer.
    """

    def __init__(self, layout, chunk, filler):
        self.layout = layout
        self.chunk = chunk
        self.filler = filler
        self._it = self._chunks()

    def _piece(self, start, end):
        lay = self.layout
        head_end = len(lay.head)
        trail = lay.total - len(lay.trailer)
        parts = []
        pos = start
        while pos < end:
            if pos < head_end:
                stop = min(end, head_end)
                parts.append(lay.head[pos:stop])
            elif pos < trail:
                stop = min(end, trail)
                parts.append(self.filler[:stop - pos])
            else:
                stop = end
                parts.append(lay.trailer[pos - trail:stop - trail])
            pos = stop
        return b''.join(parts)

    def _chunks(self):
        lay, c = self.layout, self.chunk
        first = -(-len(lay.head) // c)                  # first pure-filler
        last = (lay.total - len(lay.trailer)) // c      # one past the last
        for i in range(first):
            yield self._piece(i * c, min((i + 1) * c, lay.total))
        filler = self.filler
        for _ in range(max(0, last - first)):
            yield filler
        pos = max(first, last) * c
        while pos < lay.total:
            yield self._piece(pos, min(pos + c, lay.total))
            pos += c

    def read(self, size=-1):
        return next(self._it, b'')

    def header_chunks(self):
        return -(-len(self.layout.head) // self.chunk)

    def middle_chunks(self):
        return max(0, (self.layout.total - len(self.layout.trailer))
                   // self.chunk - self.header_chunks())


class Source:
    """What the wrappers read from: a synthetic stream's chunks, through
    the cheapest ``read`` (one lambda; the bare loop pays it too)."""

    def __init__(self, stream):
        it = stream._it
        self.read = lambda size=-1: next(it, b'')


def filler_bytes(chunk, seed=5):
    return random.Random(seed).randbytes(chunk)


def glance_vsize_reader(src, layout, container_format=None):
    """An InspectingReader as the paste filter builds it."""
    kwargs = {}
    if container_format:
        kwargs['container_format'] = container_format
    return glance_vsize.InspectingReader(
        src, layout.disk_format if layout else None, fail_fast=True,
        expected_size=layout.total if layout else None, **kwargs)


def oslo_reader(src, layout):
    """oslo.utils' InspectWrapper as Glance builds it (location.py)."""
    return format_inspector.InspectWrapper(src)


# --------------------------------------------------------------- section 1

def header_phase(layout, chunk, filler):
    """How many chunks until the engine's probes have all their regions."""
    stream = SyntheticStream(layout, chunk, filler)
    reader = glance_vsize_reader(Source(stream), layout)
    n = stream.header_chunks()
    for _ in range(n):
        reader.read(chunk)
    pending = getattr(getattr(reader, '_inspector', None), '_pending', None)
    while pending and n < stream.header_chunks() + stream.middle_chunks():
        reader.read(chunk)
        n += 1
    return n + 1


def per_chunk(read, chunk, skip, batches, batch, drain=True):
    """Median ns per chunk over ``batches`` batches after ``skip`` chunks."""
    for _ in range(skip):
        read(chunk)
    times = []
    clock = time.perf_counter_ns
    repeat = itertools.repeat
    for _ in range(batches):
        t0 = clock()
        for _ in repeat(None, batch):
            read(chunk)
        times.append((clock() - t0) / batch)
    if drain:
        while read(chunk):
            pass
    return statistics.median(times)


def sha512_source(src):
    h = hashlib.sha512()
    update, read = h.update, src.read

    def sha_read(size=-1):
        data = read(size)
        update(data)
        return data
    return sha_read


def section_streaming(args, workdir):
    total = GiB if args.quick else 4 * GiB
    out()
    out('1. Streaming overhead per chunk after the header phase, over a %s '
        'stream' % size(total))
    out('   (median of batches of 16 MiB; overhead = wrapper - bare loop; '
        'sha512 over %s of the same stream)'
        % size(256 * MiB if args.quick else GiB))
    rows = []
    res = RESULTS.setdefault('streaming', [])
    worst = {}
    for label, disk_format, opts, trailer in STREAM_FORMATS:
        if disk_format == 'iso' and not shutil.which('xorriso'):
            rows.append([label, '-', 'n/a (xorriso not installed)'] +
                        [''] * 8)
            continue
        layout = image_layout(workdir, label, disk_format, opts, trailer,
                              total)
        for chunk in (64 * KiB, MiB):
            filler = filler_bytes(chunk)
            batch = 16 * MiB // chunk
            skip = header_phase(layout, chunk, filler)
            middle = SyntheticStream(layout, chunk, filler).middle_chunks()
            batches = max(1, (middle - (skip - SyntheticStream(
                layout, chunk, filler).header_chunks())) // batch - 1)
            sha_batches = min(batches, (256 * MiB if args.quick else GiB)
                              // (batch * chunk))
            timings = {}
            verdicts = {}
            for name in ('bare', 'glance_vsize', 'oslo', 'sha512'):
                gc.collect()
                stream = SyntheticStream(layout, chunk, filler)
                src = Source(stream)
                if name == 'bare':
                    timings[name] = per_chunk(src.read, chunk, skip,
                                              batches, batch)
                elif name == 'glance_vsize':
                    reader = glance_vsize_reader(src, layout)
                    timings[name] = per_chunk(reader.read, chunk, skip,
                                              batches, batch)
                    result = reader.result
                    verdicts[name] = (result.format, result.virtual_size,
                                      result.safe)
                elif name == 'oslo':
                    wrapper = oslo_reader(src, layout)
                    timings[name] = per_chunk(wrapper.read, chunk, skip,
                                              batches, batch)
                    wrapper.close()
                    try:
                        fmt = wrapper.format
                        verdicts[name] = ('%s %s' % (fmt, fmt.virtual_size),)
                    except Exception as exc:
                        verdicts[name] = ('error: %s' % exc,)
                else:
                    timings[name] = per_chunk(sha512_source(src), chunk,
                                              skip, sha_batches, batch,
                                              drain=False)
            bare = timings['bare']
            ours = timings['glance_vsize'] - bare
            oslo = timings['oslo'] - bare
            sha = timings['sha512'] - bare
            vs_oslo = oslo / ours if ours > 0 else float('inf')
            vs_sha = ours / sha if sha > 0 else None
            fmt, vsize, safe = verdicts['glance_vsize']
            ok_verdict = safe and vsize == layout.expect and (
                fmt == disk_format or (disk_format == 'raw' and fmt == 'raw'))
            key = size(chunk)
            w = worst.setdefault(key, {'ours': 0, 'vs_oslo': float('inf'),
                                       'vs_sha': 0})
            w['ours'] = max(w['ours'], ours)
            w['vs_oslo'] = min(w['vs_oslo'], vs_oslo)
            w['vs_sha'] = max(w['vs_sha'], vs_sha or 0)
            rows.append([
                label, size(chunk), ns(bare), ns(ours), ns(oslo),
                fx(vs_oslo), ns(sha), '%.3f%%' % (100 * vs_sha)
                if vs_sha is not None else 'n/a',
                '%s %s' % (fmt, vsize) + ('' if ok_verdict else ' (!)'),
                verdicts['oslo'][0]])
            res.append({'format': label, 'chunk': chunk, 'bare_ns': bare,
                        'glance_vsize_ns': ours, 'oslo_ns': oslo,
                        'sha512_ns': sha, 'vs_oslo': vs_oslo,
                        'vs_sha512': vs_sha, 'header_chunks': skip,
                        'verdict': verdicts['glance_vsize'],
                        'expected_virtual_size': layout.expect,
                        'verdict_ok': ok_verdict})
    table(['format', 'chunk', 'bare', 'glance_vsize', 'oslo.utils',
           'oslo/ours', 'sha512', 'ours/sha512', 'glance_vsize verdict',
           'oslo verdict'], rows)
    out('   (!) marks a verdict that differs from qemu-img info; '
        'glance_vsize and oslo.utils columns are the overhead over bare.')
    for key, w in worst.items():
        out('   %s chunks, worst format: %s per chunk (target <= %s: %s), '
            '%s below oslo.utils (target >= %dx: %s), %.3f%% of sha512 '
            '(target < %g%%: %s)' % (
                key, ns(w['ours']), ns(TARGET_CHUNK_NS),
                target('1. per-chunk overhead, %s chunks' % key, w['ours'],
                       w['ours'] <= TARGET_CHUNK_NS, ns(w['ours'])),
                fx(w['vs_oslo']), TARGET_VS_OSLO,
                target('1. vs oslo.utils, %s chunks' % key, w['vs_oslo'],
                       w['vs_oslo'] >= TARGET_VS_OSLO, fx(w['vs_oslo'])),
                100 * w['vs_sha'], 100 * TARGET_VS_SHA,
                target('1. vs sha512, %s chunks' % key, w['vs_sha'],
                       w['vs_sha'] < TARGET_VS_SHA,
                       '%.3f%%' % (100 * w['vs_sha']))))


# --------------------------------------------------------------- section 2

def traced_peak(make, chunk):
    """Peak traced bytes while ``make()``'s reader is drained."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        reader = make()
        read = reader.read
        while read(chunk):
            pass
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak, reader


def file_source(path):
    return open(path, 'rb', buffering=0)


def containers_available():
    try:
        params = pyinspect.signature(
            glance_vsize.InspectingReader.__init__).parameters
    except (TypeError, ValueError):
        return False
    return 'container_format' in params


OVF = '''<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
    <File ovf:id="file1" ovf:href="disk1.vmdk" ovf:size="%d"/>
  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="%d"
        ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="bench">
    <Info>glance_vsize benchmark</Info>
  </VirtualSystem>
</Envelope>
'''


def make_ova(workdir, vmdk_path, vsize, name):
    """A ustar OVA: the descriptor first, then the disk (DSP0243)."""
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
        ovf = (OVF % (os.path.getsize(vmdk_path), vsize)).encode()
        with tarfile.open(path, 'w', format=tarfile.USTAR_FORMAT) as tar:
            info = tarfile.TarInfo('bench.ovf')
            info.size = len(ovf)
            tar.addfile(info, io.BytesIO(ovf))
            tar.add(vmdk_path, 'disk1.vmdk')
    return path


def make_gzip(workdir, src, name):
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
        with open(src, 'rb') as f, gzip.open(path, 'wb', 6) as g:
            shutil.copyfileobj(f, g, MiB)
    return path


def section_memory(args, workdir):
    sizes = (GiB, 3 * TiB)
    file_chunk = MiB
    gen_chunk = 4 * MiB if args.quick else MiB
    out()
    out('2. Extra memory held while streaming (tracemalloc peak of the '
        'wrapper minus the bare loop\'s)')
    out('   sparse formats: the real qemu-img file, read in fresh %s chunks;'
        ' raw-data formats: a generator, %s chunks' % (size(file_chunk),
                                                        size(gen_chunk)))
    # Warm up: module imports and the inspector registry are not per-stream.
    glance_vsize.InspectingReader(iter([b'\0' * 512])).read()
    rows = []
    res = RESULTS.setdefault('memory', [])
    worst = {}

    def measure(label, disk_format, vsize, length, make_src, chunk, expect,
                container_format=None):
        bare, _ = traced_peak(make_src, chunk)
        layout = Layout(label, disk_format, b'', b'', length, expect)

        def wrapped():
            return glance_vsize_reader(make_src(), layout, container_format)
        ours, reader = traced_peak(wrapped, chunk)
        result = reader.result
        extra = ours - bare
        ok = result is not None and result.safe and (
            expect is None or result.virtual_size == expect)
        shown = ('%s %s' % (result.format, result.virtual_size)
                 if result is not None else 'none')
        if result is not None and not result.safe:
            shown += ' UNSAFE: ' + result.describe()[:60]
        rows.append([label, size(vsize), size(bare), size(ours), size(extra),
                     shown + ('' if ok else ' (!)')])
        res.append({'format': label, 'size': vsize, 'bare_peak': bare,
                    'peak': ours, 'extra': extra, 'verdict_ok': ok})
        w = worst.setdefault(vsize, 0)
        worst[vsize] = max(w, extra)
        return result

    for label, disk_format, opts in SPARSE_FORMATS:
        for vsize in sizes:
            path, shown, expect = make_image(workdir, label, disk_format,
                                             opts, vsize)
            measure(shown, disk_format, expect, os.path.getsize(path),
                    lambda p=path: file_source(p), file_chunk, expect)
    for label, disk_format, opts, trailer in STREAM_FORMATS:
        if disk_format not in ('raw', 'iso') and 'fixed' not in label:
            continue
        if disk_format == 'iso' and not shutil.which('xorriso'):
            rows.append([label, '', 'n/a (xorriso not installed)', '', '',
                         ''])
            continue
        filler = filler_bytes(gen_chunk)
        for vsize in sizes:
            layout = image_layout(workdir, label, disk_format, opts, trailer,
                                  vsize)
            measure(layout.label, disk_format, layout.total, layout.total,
                    lambda lay=layout: Source(SyntheticStream(
                        lay, gen_chunk, filler)), gen_chunk, layout.expect)
    # Containers: OVA (a tar with the descriptor and a streamOptimized
    # VMDK) and compressed (a gzip'd qcow2).
    if containers_available():
        for vsize in sizes:
            vmdk, _, vmdk_size = make_image(
                workdir, 'vmdk streamOptimized', 'vmdk',
                ('-o', 'subformat=streamOptimized'), vsize)
            qcow, _, qcow_size = make_image(workdir, 'qcow2', 'qcow2', (),
                                            vsize)
            for label, path, container, expect in (
                    ('ova (vmdk)',
                     make_ova(workdir, vmdk, vsize, 'b-%d.ova' % vsize),
                     'ova', vmdk_size),
                    ('compressed (gzip qcow2)',
                     make_gzip(workdir, qcow, 'b-%d.qcow2.gz' % vsize),
                     'compressed', qcow_size)):
                disk_format = 'vmdk' if container == 'ova' else 'qcow2'
                try:
                    measure(label, disk_format, vsize, os.path.getsize(path),
                            lambda p=path: file_source(p), file_chunk, expect,
                            container_format=container)
                except Exception as exc:
                    rows.append([label, size(vsize), '', '', '',
                                 'error: %r' % exc])
    else:
        rows.append(['ova, compressed', '', '', '', '',
                     'n/a (containers not available)'])
    table(['format', 'virtual size', 'bare peak', 'glance_vsize peak',
           'extra', 'verdict'], rows)
    out('   (!) marks a verdict that differs from qemu-img info.')
    one, big = worst.get(GiB, 0), worst.get(3 * TiB, 0)
    out('   worst extra at 1 GiB: %s, at 3 TiB: %s (target <= %s: %s); '
        '3 TiB / 1 GiB: %s' % (
            size(one), size(big), size(TARGET_MEMORY),
            target('2. extra memory held, 1 GiB and 3 TiB', max(one, big),
                   max(one, big) <= TARGET_MEMORY, size(max(one, big))),
            fx(ratio(big, one), 2)))
    if containers_available():
        out('   containers included (InspectingReader takes '
            'container_format)')
    else:
        out('   ova, compressed: n/a (containers not available: '
            'InspectingReader has no container_format)')


# --------------------------------------------------------------- section 3

SEEK_FORMATS = (
    ('qcow2', 'qcow2', ()),
    ('vmdk monolithicSparse', 'vmdk', ()),
    ('vmdk streamOptimized', 'vmdk', ('-o', 'subformat=streamOptimized')),
    ('vhd dynamic', 'vhd', ('-o', 'subformat=dynamic')),
    ('vhdx', 'vhdx', ()),
    ('vdi', 'vdi', ()),
    ('ploop', 'ploop', ()),
    ('raw', 'raw', ()),
)


def median_time(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def section_seekable(args, workdir):
    sizes = (GiB, 100 * GiB, 3 * TiB)
    ours_runs, qemu_runs = (20, 5) if args.quick else (50, 15)
    out()
    out('3. Seekable inspection (inspect_file, in process) vs a qemu-img '
        'info --output=json subprocess')
    out('   (medians of %d and %d runs; sparse images made by qemu-img '
        'create)' % (ours_runs, qemu_runs))
    glance_vsize.inspect_file(__file__)   # warm up the registry
    rows = []
    res = RESULTS.setdefault('seekable', [])
    worst_ratio = float('inf')
    flat = {}
    for label, disk_format, opts in SEEK_FORMATS:
        times = {}
        for vsize in sizes:
            real = vsize
            note = ''
            if disk_format == 'vhd' and vsize > VHD_MAX:
                real, note = VHD_MAX, ' (VHD max 2040 GiB)'
            path = os.path.join(workdir, 'seek-%s-%d.img' % (
                label.replace(' ', '-'), real))
            qemu_create(path, disk_format, real, *opts)
            result = glance_vsize.inspect_file(path, disk_format)
            expect = qemu_vsize(path, disk_format)
            ours = median_time(
                lambda: glance_vsize.inspect_file(path, disk_format),
                ours_runs)
            cmd = ['qemu-img', 'info', '--output=json', '-f',
                   QEMU_NAME.get(disk_format, disk_format), path]
            qemu = median_time(lambda: subprocess.run(
                cmd, capture_output=True, check=True), qemu_runs)
            faster = qemu / ours
            worst_ratio = min(worst_ratio, faster)
            times[vsize] = ours
            ok = result.safe and result.virtual_size == expect
            rows.append([label, size(real) + note, '%.3f ms' % (ours * 1e3),
                         '%.2f ms' % (qemu * 1e3), fx(faster),
                         '%s %s%s' % (result.format, result.virtual_size,
                                      '' if ok else ' (!)')])
            res.append({'format': label, 'size': real, 'ours_s': ours,
                        'qemu_img_s': qemu, 'faster': faster,
                        'verdict_ok': ok})
        flat[label] = times[sizes[-1]] / times[sizes[0]]
    table(['format', 'virtual size', 'inspect_file', 'qemu-img info',
           'faster', 'verdict'], rows)
    worst_flat = max(flat.values())
    out('   worst: %s faster than qemu-img info (target >= %dx: %s); '
        'largest / 1 GiB latency, worst format: %s (flat: %s)' % (
            fx(worst_ratio), TARGET_SEEK,
            target('3. seekable vs qemu-img info', worst_ratio,
                   worst_ratio >= TARGET_SEEK, fx(worst_ratio)),
            fx(worst_flat, 2),
            target('3. flat in the image size (3 TiB / 1 GiB <= 1.5x)',
                   worst_flat, worst_flat <= 1.5, fx(worst_flat, 2))))


# --------------------------------------------------------------- section 4

class StoreWatcher(threading.Thread):
    """Polls a store directory; records the largest file size seen."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.largest = 0
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            try:
                for entry in os.scandir(self.path):
                    try:
                        self.largest = max(self.largest,
                                           entry.stat().st_size)
                    except FileNotFoundError:
                        pass
            except FileNotFoundError:
                pass
            time.sleep(0.001)

    def stop(self):
        self.stopped.set()
        self.join()
        return self.largest


def server_cpu(glance):
    """CPU seconds used so far by the Glance's gunicorn processes."""
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
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += procs.get(pid, (0, 0))[1]
        todo.extend(p for p, (ppid, _) in procs.items() if ppid == pid)
    return total / os.sysconf('SC_CLK_TCK')


def http_put(glance, path, body, length):
    conn = http.client.HTTPConnection('127.0.0.1', glance.port, timeout=900,
                                      blocksize=MiB)
    try:
        conn.request('PUT', path, body=body, headers={
            'Content-Type': 'application/octet-stream',
            'Content-Length': str(length)})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    return resp.status, data


def upload_create(glance, path, disk_format):
    """create-image: POST /v2/images, PUT .../file.  Seconds, image."""
    t0 = time.perf_counter()
    image_id = glance.create(disk_format)
    with open(path, 'rb') as f:
        status, body = http_put(glance, '/v2/images/%s/file' % image_id, f,
                                os.path.getsize(path))
    elapsed = time.perf_counter() - t0
    if status != 204:
        raise RuntimeError('upload: HTTP %d %s' % (status, body[:300]))
    return elapsed, glance.show(image_id)


def upload_import(glance, path, disk_format):
    """import: POST /v2/images, PUT .../stage, POST .../import
    (glance-direct), until active.  Seconds, image."""
    t0 = time.perf_counter()
    image_id = glance.create(disk_format)
    with open(path, 'rb') as f:
        status, body = http_put(glance, '/v2/images/%s/stage' % image_id, f,
                                os.path.getsize(path))
    if status != 204:
        raise RuntimeError('stage: HTTP %d %s' % (status, body[:300]))
    status, body = glance.import_(image_id)
    if status != 202:
        raise RuntimeError('import: HTTP %d %s' % (status, body))
    deadline = time.monotonic() + 900
    while True:
        image = glance.show(image_id)
        if image['status'] == 'active':
            break
        if image.get('os_glance_failed_import') or \
                time.monotonic() > deadline:
            raise RuntimeError('import failed: %s' % image)
        time.sleep(0.02)
    return time.perf_counter() - t0, image


def delete(glance, image_id):
    glance.request('DELETE', '/v2/images/%s' % image_id)


def unsafe_body(header, total, chunk=MiB):
    filler = filler_bytes(chunk)
    yield header
    left = total - len(header)
    while left > 0:
        yield filler[:min(chunk, left)]
        left -= chunk


def refused_upload(glance, header, total):
    """PUT an unsafe image; returns (status, bytes logged, store max)."""
    image_id = glance.create('qcow2')
    watcher = StoreWatcher(os.path.join(glance.data_dir, 'images'))
    watcher.start()
    try:
        status, body = http_put(glance, '/v2/images/%s/file' % image_id,
                                unsafe_body(header, total), total)
    finally:
        largest = watcher.stop()
    logged = None
    for line in glance.log().splitlines():
        if image_id in line:
            m = re.search(r'refused after (\d+) bytes', line)
            if m:
                logged = int(m.group(1))
    status_after = glance.show(image_id)['status']
    delete(glance, image_id)
    return status, logged, largest, status_after, body


def filter_stack_cpu(header, total=GiB, chunk=64 * KiB, runs=5):
    """CPU seconds to read ``total`` bytes through the body stack Glance
    reads an upload from (webob's BufferedReader(LimitedLengthFile)), with
    and without the paste filter's readers in it; medians, in process."""
    import webob.request
    with warnings.catch_warnings():     # eventlet's, through oslo.messaging
        warnings.simplefilter('ignore')
        from glance_vsize.glance import middleware
    filler = filler_bytes(chunk)

    class Body:
        """A WSGI input: ``header``, then data; every read is full (webob
        takes a short read for a disconnection)."""

        def __init__(self):
            self.sent = 0

        def read(self, size):
            size = min(size, total - self.sent)
            if size <= 0:
                return b''
            if self.sent >= len(header) and size == chunk:
                data = filler
            else:
                data = (header[self.sent:self.sent + size] +
                        filler * (size // chunk + 1))[:size]
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
    with open(os.path.join(REPO, 'tools', 'run-glance')) as f:
        return '--no-vsize' in f.read()


def section_glance(args, workdir):
    runs = args.runs or (3 if args.quick else 5)
    out()
    out('4. End to end against a real Glance (tools/run-glance), 1 GiB '
        'qcow2 (random data), median of %d runs after a warm-up' % runs)
    out('   data directories in %s' % workdir)
    if not run_glance_supports_no_vsize():
        out('   n/a: tools/run-glance has no --no-vsize option')
        return
    from tests.functional.glance import Glance
    raw = os.path.join(workdir, 'e2e.raw')
    image = os.path.join(workdir, 'e2e.qcow2')
    if not os.path.exists(image):
        rnd = random.Random(4)
        with open(raw, 'wb') as f:
            for _ in range(GiB // MiB):
                f.write(rnd.randbytes(MiB))
        qemu_img('convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, image)
        os.unlink(raw)
    expect = qemu_vsize(image, 'qcow2')
    base = os.path.join(workdir, 'base.raw')
    child = os.path.join(workdir, 'child.qcow2')
    with open(base, 'wb') as f:
        f.truncate(GiB)
    if not os.path.exists(child):
        qemu_img('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw',
                 child, str(GiB))
    header = open(child, 'rb').read()

    glances = {}
    try:
        for name, extra in (('without', ['--no-vsize']), ('with', [])):
            t0 = time.perf_counter()
            glances[name] = Glance(os.path.join(workdir, 'glance-' + name),
                                   extra_args=extra)
            out('   Glance %s glance_vsize ready on port %d (%.0f s)'
                % (name, glances[name].port, time.perf_counter() - t0))
        times = {(path, name): [] for path in ('create', 'import')
                 for name in glances}
        cpu = {key: [] for key in times}
        sizes = {}
        for run in range(runs + 1):
            order = ['without', 'with'] if run % 2 else ['with', 'without']
            for path, fn in (('create', upload_create),
                             ('import', upload_import)):
                for name in order:
                    glance = glances[name]
                    cpu0 = server_cpu(glance)
                    elapsed, img = fn(glance, image, 'qcow2')
                    cpu1 = server_cpu(glance)
                    delete(glance, img['id'])
                    sizes[(path, name)] = img.get('virtual_size')
                    if run:                     # run 0 is the warm-up
                        times[(path, name)].append(elapsed)
                        if cpu0 is not None and cpu1 is not None:
                            cpu[(path, name)].append(cpu1 - cpu0)
        rows = []
        worst = 0
        for path in ('create', 'import'):
            without = statistics.median(times[(path, 'without')])
            with_ = statistics.median(times[(path, 'with')])
            r = with_ / without
            worst = max(worst, r)
            cpu_without = cpu_with = cpu_r = None
            if cpu[(path, 'with')] and cpu[(path, 'without')]:
                cpu_without = statistics.median(cpu[(path, 'without')])
                cpu_with = statistics.median(cpu[(path, 'with')])
                cpu_r = ratio(cpu_with, cpu_without)
            best = min(times[(path, 'with')]) / min(times[(path, 'without')])
            rows.append([path, '%.2f s' % without, '%.2f s' % with_,
                         '%.3f' % r, '%.3f' % best,
                         '%.2f s' % cpu_without if cpu_without else 'n/a',
                         '%.2f s' % cpu_with if cpu_with else 'n/a',
                         '%.3f' % cpu_r if cpu_r else 'n/a',
                         '%s / %s' % (sizes[(path, 'with')],
                                      sizes[(path, 'without')])])
            RESULTS.setdefault('glance', []).append({
                'path': path, 'without_s': without, 'with_s': with_,
                'ratio': r, 'best_ratio': best,
                'with_runs': times[(path, 'with')],
                'without_runs': times[(path, 'without')],
                'cpu_without_s': cpu_without, 'cpu_with_s': cpu_with,
                'cpu_ratio': cpu_r, 'cpu_with_runs': cpu[(path, 'with')],
                'cpu_without_runs': cpu[(path, 'without')]})
        table(['path', 'wall without', 'wall with', 'with/without',
               'best/best', 'Glance CPU without', 'CPU with',
               'with/without', 'virtual_size with / without'], rows)
        for path in ('create', 'import'):
            out('   %s runs (wall s), with: %s; without: %s' % (
                path, ' '.join('%.2f' % t for t in times[(path, 'with')]),
                ' '.join('%.2f' % t for t in times[(path, 'without')])))
        out('   qemu-img info: virtual size %d; worst wall-clock ratio %.3f '
            '(target <= %.2f: %s)' % (expect, worst, TARGET_E2E, target(
                '4. upload with / without glance_vsize', worst,
                worst <= TARGET_E2E, '%.3f' % worst)))
        out('   (medians, and the ratio of the fastest runs; Glance CPU: '
            'user+system seconds of its gunicorn processes during the '
            'upload.  On a loaded machine runs vary by more than the 2% '
            'target: compare the spread of the runs and the in-process '
            'figure below.)')
        bare, ours = filter_stack_cpu(read_range(image, 0, MiB))
        cpu_create = statistics.median(cpu[('create', 'without')]) \
            if cpu[('create', 'without')] else None
        out('   In process, reading 1 GiB in 64 KiB chunks through Glance\'s '
            'body stack (webob) costs %.0f ms CPU; with the paste filter\'s '
            'readers in it %.0f ms: +%.1f ms per GiB, %s of Glance\'s CPU '
            'for a create-image upload' % (
                bare * 1e3, ours * 1e3, (ours - bare) * 1e3,
                '%.2f%%' % (100 * (ours - bare) / cpu_create)
                if cpu_create else 'n/a'))
        RESULTS['filter_stack'] = {'bare_s': bare, 'with_filter_s': ours,
                                   'glance_create_cpu_s': cpu_create}

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
               'read before refusal (log)', 'largest store file seen'],
              rows)
        logged, largest = refused['with']
        reached = max(logged or 0, largest)
        anchor = refused['without'][1]
        out('   with glance_vsize at most %s reached the store (target <= '
            '%s: %s); without: %s (%s of it)' % (
                size(reached), size(TARGET_REFUSED), target(
                    '4. bytes stored before an unsafe upload is refused',
                    reached, logged is not None and reached <=
                    TARGET_REFUSED, size(reached)),
                size(anchor), '%.4f%%' % (100 * reached / anchor)
                if anchor else 'n/a'))
    finally:
        for g in glances.values():
            g.stop()


# --------------------------------------------------------------- main

def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='Sections: 1 streaming, 2 memory, 3 seekable, 4 Glance.')
    parser.add_argument('--quick', action='store_true',
                        help='smaller streams, fewer runs (a few minutes)')
    parser.add_argument('--only', default='1,2,3,4',
                        help='comma-separated sections to run')
    parser.add_argument('--runs', type=int,
                        help='end-to-end runs per configuration (5; 3 with '
                             '--quick)')
    parser.add_argument('--workdir',
                        help='where images and Glance data go (default: a '
                             'temporary directory, removed at the end)')
    parser.add_argument('--json', help='also write the figures to FILE')
    args = parser.parse_args(argv)
    sections = {s.strip() for s in args.only.split(',') if s.strip()}
    if not shutil.which('qemu-img'):
        sys.exit('benchmark: qemu-img is needed (Debian: qemu-utils)')

    workdir = args.workdir
    cleanup = workdir is None
    if workdir is None:
        parent = None
        try:
            st = os.statvfs('/dev/shm')
            if st.f_bavail * st.f_frsize > 8 * GiB:
                parent = '/dev/shm'
        except OSError:
            pass
        workdir = tempfile.mkdtemp(prefix='glance-vsize-bench-', dir=parent)
    os.makedirs(workdir, exist_ok=True)
    started = time.time()
    out('glance_vsize benchmark (issue 5)%s, %s' % (
        ' --quick' if args.quick else '',
        time.strftime('%Y-%m-%d %H:%M:%S')))
    machine()
    try:
        if '1' in sections:
            section_streaming(args, workdir)
        if '2' in sections:
            section_memory(args, workdir)
        if '3' in sections:
            section_seekable(args, workdir)
        if '4' in sections:
            section_glance(args, workdir)
    finally:
        if cleanup:
            shutil.rmtree(workdir, ignore_errors=True)
    out()
    load()
    out('Targets (issue 5):')
    table(['target', 'measured', 'result'],
          [[t['target'], t['shown'], 'PASS' if t['pass'] else 'MISS']
           for t in RESULTS['targets']])
    out('Total time %.0f s' % (time.time() - started))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(RESULTS, f, indent=1, default=str)
    return 0


if __name__ == '__main__':
    sys.exit(main())
