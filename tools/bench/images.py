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

"""The images sections 1 to 3 measure: sparse qemu-img images (xorriso for
ISO) and, for the streams of figures 1 and 2, their :class:`Layout`: the
real bytes, filler, and the trailer.
"""

import json
import os
import subprocess

from .report import GiB
from .report import MiB


QEMU_NAME = {'vhd': 'vpc', 'ploop': 'parallels'}


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
    VHD is capped at its largest size (the label says so).
    """
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
