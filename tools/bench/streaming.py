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

"""Figure 1 of issue 5: streaming overhead per chunk after the header
phase, glance_vsize and oslo.utils against a bare read loop and a sha512
pass.
"""

import gc
import hashlib
import itertools
import shutil
import statistics
import time

from .images import image_layout
from .images import STREAM_FORMATS
from .report import fx
from .report import GiB
from .report import KiB
from .report import MiB
from .report import ns
from .report import out
from .report import RESULTS
from .report import size
from .report import table
from .report import target
from .report import TARGET_CHUNK_NS
from .report import TARGET_VS_OSLO
from .report import TARGET_VS_SHA
from .streams import filler_bytes
from .streams import glance_vsize_reader
from .streams import oslo_reader
from .streams import Source
from .streams import SyntheticStream


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
