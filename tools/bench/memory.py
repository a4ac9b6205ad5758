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

"""Figure 2 of issue 5: the extra memory held (tracemalloc peak over the
bare loop's) streaming 1 GiB and 3 TiB images, containers included when
InspectingReader takes ``container_format``.
"""

import gc
import gzip
import inspect as pyinspect
import io
import os
import shutil
import tarfile
import tracemalloc

import glance_vsize

from .images import image_layout
from .images import Layout
from .images import make_image
from .images import SPARSE_FORMATS
from .images import STREAM_FORMATS
from .report import fx
from .report import GiB
from .report import MiB
from .report import out
from .report import ratio
from .report import RESULTS
from .report import size
from .report import table
from .report import target
from .report import TARGET_MEMORY
from .report import TiB
from .streams import filler_bytes
from .streams import glance_vsize_reader
from .streams import Source
from .streams import SyntheticStream


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
        ' raw-data formats: a generator, %s chunks'
        % (size(file_chunk), size(gen_chunk)))
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
