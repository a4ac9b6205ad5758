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


"""Build this project's own conformance images, with qemu-img as the oracle.

Every image is made by qemu-img (xorriso for ISO; a few raw disks get a
partition table written here), and ``qemu-img info`` is asked for its
virtual size.  The variety covers every subformat and option of every
format the engine knows, at sizes that exercise qemu's rounding rules
(odd sector counts, 2 GiB - 512, 3 TiB), plus images that must be refused.

Usage as a script: ``python -m tests.imagegen OUTDIR`` writes the images
and a manifest.json (file, disk_format, virtual_size, safe, why).
"""

import json
import os
import random
import struct
import subprocess
import sys
import uuid
import zlib

GIB = 1 << 30
QEMU_NAME = {'vhd': 'vpc', 'ploop': 'parallels', 'iso': 'raw', 'raw': 'raw'}
#: Sizes: tiny, odd sector counts around and above 1 GiB, 2 GiB - 512.
SIZES = (1 << 20, GIB + 512, 10 * GIB + 12345 * 512, 2 * GIB - 512)
#: 3 TiB, for formats whose metadata for it stays small.
HUGE = 3 << 40


class Generator:
    def __init__(self, outdir):
        self.outdir = outdir
        self.entries = []
        os.makedirs(outdir, exist_ok=True)

    def path(self, name):
        return os.path.join(self.outdir, name)

    def _qemu(self, *args):
        subprocess.run(('qemu-img',) + args, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def record(self, name, fmt, safe=True, why='', qemu_fmt=None):
        out = subprocess.run(
            ['qemu-img', 'info', '--output=json', '-f',
             qemu_fmt or QEMU_NAME.get(fmt, fmt), self.path(name)],
            check=True, capture_output=True, text=True).stdout
        self.entries.append({'file': name, 'disk_format': fmt,
                             'virtual_size': json.loads(out)['virtual-size'],
                             'safe': safe, 'why': why})

    def create(self, name, fmt, size, opts='', safe=True, why='',
               extra=()):
        cmd = ['create', '-q', '-f', QEMU_NAME.get(fmt, fmt)] + list(extra)
        if opts:
            cmd += ['-o', opts]
        self._qemu(*(cmd + [self.path(name), str(size)]))
        self.record(name, fmt, safe, why)

    def convert(self, name, fmt, src, opts='', compress=False):
        cmd = ['convert', '-q', '-f', 'raw', '-O', QEMU_NAME.get(fmt, fmt)]
        if opts:
            cmd += ['-o', opts]
        if compress:
            cmd.append('-c')
        self._qemu(*(cmd + [src, self.path(name)]))
        self.record(name, fmt)

    def write_manifest(self):
        with open(self.path('manifest.json'), 'w') as f:
            json.dump(self.entries, f, indent=1)


def payload(path, size, seed, mbr=False):
    """A raw disk of ``size`` bytes with random data at scattered places."""
    rnd = random.Random(seed)
    with open(path, 'wb') as f:
        f.truncate(size)
        for _ in range(4):
            off = rnd.randrange(1 << 20, size - (1 << 20)) & ~0xFFFF
            f.seek(off)
            f.write(rnd.randbytes(256 << 10))
        if mbr:
            write_mbr(f, size)
    return path


def write_mbr(f, size, part_type=0x83, first=2048):
    """One primary partition from sector ``first`` to the end (UEFI 5.2.1;
    a protective MBR starts at LBA 1).
    """
    sectors = size // 512
    record = struct.pack('<B3sB3sII', 0, b'\0\2\0', part_type,
                         b'\xff\xff\xff', first,
                         min(sectors - first, 0xFFFFFFFF))
    f.seek(446)
    f.write(record + b'\0' * 48 + b'\x55\xaa')


def write_gpt(f, size):
    """A protective MBR and a primary GPT header with one empty entry
    array (UEFI 5.3.2), as a partitioning tool would write them.
    """
    write_mbr(f, size, part_type=0xEE, first=1)
    last = size // 512 - 1
    entries = b'\0' * (128 * 128)
    header = struct.pack('<8sIIIIQQQQ16sQIII', b'EFI PART', 0x10000, 92, 0,
                         0, 1, last, 34, last - 33, uuid.uuid4().bytes, 2,
                         128, 128, zlib.crc32(entries))
    header = header[:16] + struct.pack('<I', zlib.crc32(header)) + header[20:]
    f.seek(512)
    f.write(header)
    f.seek(1024)
    f.write(entries)


def build(outdir, huge=True):
    g = Generator(outdir)
    sizes = SIZES + ((HUGE,) if huge else ())
    for i, size in enumerate(sizes):
        tag = 's%d' % i
        small = size <= 2 * GIB
        for compat in ('0.10', '1.1'):
            for cl in (('512', '64k', '2M') if small else ('64k', '2M')):
                g.create('qcow2-v%s-c%s-%s.qcow2' % (compat, cl, tag),
                         'qcow2', size,
                         'compat=%s,cluster_size=%s' % (compat, cl))
        g.create('qcow2-l2ext-%s.qcow2' % tag, 'qcow2', size,
                 'extended_l2=on,cluster_size=128k')
        g.create('qcow2-lazy-r64-%s.qcow2' % tag, 'qcow2', size,
                 'lazy_refcounts=on,refcount_bits=64')
        g.create('qcow2-zstd-%s.qcow2' % tag, 'qcow2', size,
                 'compression_type=zstd')
        for sub in ('monolithicSparse', 'streamOptimized'):
            for adapter in ('ide', 'lsilogic', 'buslogic'):
                g.create('vmdk-%s-%s-%s.vmdk' % (sub, adapter, tag), 'vmdk',
                         size, 'subformat=%s,adapter_type=%s'
                         % (sub, adapter))
        g.create('vmdk-compat6-%s.vmdk' % tag, 'vmdk', size, 'compat6=on')
        if size < 2040 * GIB:
            for force in ('off', 'on'):
                g.create('vhd-dynamic-force%s-%s.vhd' % (force, tag), 'vhd',
                         size, 'subformat=dynamic,force_size=%s' % force)
                if size <= (1 << 20):
                    g.create('vhd-fixed-force%s-%s.vhd' % (force, tag),
                             'vhd', size,
                             'subformat=fixed,force_size=%s' % force)
        for bs in ('1M', '32M', '256M'):
            g.create('vhdx-b%s-%s.vhdx' % (bs, tag), 'vhdx', size,
                     'block_size=%s' % bs)
        g.create('vdi-%s.vdi' % tag, 'vdi', size)
        g.create('ploop-%s.ploop' % tag, 'ploop', size)
        g.create('qed-%s.qed' % tag, 'qed', size, safe=False,
                 why='QED is not a Glance disk format')

    # Small preallocated/static subformats (their files are full size).
    g.create('vhdx-fixed.vhdx', 'vhdx', 1 << 20, 'subformat=fixed')
    g.create('vdi-static.vdi', 'vdi', 1 << 20, 'static=on')
    g.create('qcow2-prealloc.qcow2', 'qcow2', 1 << 20,
             'preallocation=metadata')
    g.create('ploop-c64k.ploop', 'ploop', GIB, 'cluster_size=64k')

    # Images holding data, converted from raw disks (one with an MBR).
    raw = payload(g.path('_payload.raw'), 16 << 20, 11, mbr=True)
    for fmt, opts, comp in (
            ('qcow2', '', False), ('qcow2', '', True),
            ('qcow2', 'compression_type=zstd', True),
            ('vmdk', 'subformat=streamOptimized', False),
            ('vmdk', '', False), ('vhd', '', False),
            ('vhd', 'subformat=fixed', False), ('vhdx', '', False),
            ('vdi', '', False), ('ploop', '', False)):
        name = 'data-%s%s-%s.%s' % (fmt, '-z' if comp else '',
                                    opts.split('=')[-1] or 'default', fmt)
        g.convert(name, fmt, raw, opts, comp)
    os.unlink(raw)

    # Raw disks: odd length, MBR, GPT.
    with open(g.path('raw-odd.raw'), 'wb') as f:
        f.write(random.Random(3).randbytes(1000))
    g.record('raw-odd.raw', 'raw')
    payload(g.path('raw-mbr.raw'), 4 << 20, 5, mbr=True)
    g.record('raw-mbr.raw', 'raw')
    with open(g.path('raw-gpt.raw'), 'wb') as f:
        f.truncate(8 << 20)
        write_gpt(f, 8 << 20)
    g.record('raw-gpt.raw', 'raw')

    # ISO images from xorriso; a hybrid one with an MBR in front.
    tree = g.path('_iso')
    os.makedirs(tree, exist_ok=True)
    with open(os.path.join(tree, 'hello.txt'), 'w') as f:
        f.write('hello\n' * 4000)
    subprocess.run(['xorriso', '-as', 'mkisofs', '-quiet', '-V', 'GEN',
                    '-o', g.path('plain.iso'), tree], check=True,
                   stderr=subprocess.DEVNULL)
    g.record('plain.iso', 'iso')
    subprocess.run(['xorriso', '-as', 'mkisofs', '-quiet', '-V', 'HYB',
                    '-partition_offset', '16', '-o', g.path('hybrid.iso'),
                    tree], check=True, stderr=subprocess.DEVNULL)
    with open(g.path('hybrid.iso'), 'r+b') as f:
        f.truncate(1 << 20)
        write_mbr(f, 1 << 20, part_type=0x17)
    g.record('hybrid.iso', 'iso')
    os.unlink(os.path.join(tree, 'hello.txt'))
    os.rmdir(tree)

    # Images that must be refused.
    g.create('base.qcow2', 'qcow2', GIB)
    g.create('unsafe-qcow2-backing.qcow2', 'qcow2', GIB,
             'backing_file=base.qcow2,backing_fmt=qcow2',
             safe=False, why='backing file')
    g.create('unsafe-qcow2-datafile.qcow2', 'qcow2', GIB,
             'data_file=%s' % g.path('unsafe-qcow2-datafile.data'),
             safe=False, why='external data file')
    os.unlink(g.path('unsafe-qcow2-datafile.data'))
    for sub in ('monolithicFlat', 'twoGbMaxExtentSparse',
                'twoGbMaxExtentFlat'):
        name = 'unsafe-vmdk-%s.vmdk' % sub
        g.create(name, 'vmdk', 1 << 20, 'subformat=%s' % sub, safe=False,
                 why='descriptor naming extent files')
        for leftover in os.listdir(outdir):
            if leftover.startswith(name[:-5] + '-'):
                os.unlink(g.path(leftover))
    g.create('unsafe-qed-backing.qed', 'qed', GIB,
             'backing_file=base.qcow2,backing_fmt=qcow2',
             safe=False, why='backing file')
    g.write_manifest()
    return g.entries


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print('%d images in %s' % (len(build(sys.argv[1])), sys.argv[1]))
