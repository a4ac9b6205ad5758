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


"""container_format=ova: OVAs made with GNU tar and Python's tarfile from
qemu-img disks and a DSP0243 descriptor; hostile descriptors and members.
"""

import io
import os
import shutil
import tarfile

import pytest

import glance_vsize
from glance_vsize.containers import ova
from glance_vsize.containers import ovf
from tests.conformance import containers as common
from tests import containergen
from tests import helpers
from tests import imagegen

pytestmark = helpers.requires_qemu_img

G = 1 << 30
STREAM = containergen.VMDK_STREAM


@pytest.fixture(scope='module')
def disks(tmp_path_factory):
    out = tmp_path_factory.mktemp('disks')
    raw = imagegen.payload(str(out / 'data.raw'), 16 << 20, 3, mbr=True)
    helpers.qemu_img('convert', '-q', '-f', 'raw', '-O', 'vmdk', '-o',
                     'subformat=streamOptimized', raw, str(out / 'boot.vmdk'))
    helpers.create(out / 'data.qcow2', 'qcow2', 3 * G + 512)
    helpers.create(out / 'big.vmdk', 'vmdk', 10 * G,
                   'subformat=streamOptimized')
    helpers.create(out / 'base.qcow2', 'qcow2', G)
    helpers.create(out / 'child.qcow2', 'qcow2', G,
                   'backing_file=base.qcow2,backing_fmt=qcow2')
    os.unlink(raw)
    return out


def _size(path, fmt):
    return helpers.qemu_info(path, fmt)['virtual-size']


def _package(tmp_path, disks, names):
    """A directory holding copies of the named disks."""
    pkg = tmp_path / 'pkg'
    os.makedirs(pkg, exist_ok=True)
    for name, src in names.items():
        shutil.copy(disks / src, pkg / name)
    return pkg


@pytest.mark.parametrize('fmt', ['ustar', 'pax', 'gnu'])
def test_ova_with_a_streamoptimized_disk(disks, tmp_path, fmt):
    pkg = _package(tmp_path, disks, {'vm-disk1.vmdk': 'boot.vmdk'})
    src = str(pkg / 'vm-disk1.vmdk')
    path = containergen.ova(tmp_path / 'vm.ova', pkg, [
        ('vm-disk1.vmdk', _size(src, 'vmdk'), STREAM)], fmt)
    result = common.assert_inner(path, 'ova', src, 'vmdk')
    assert result.variant == 'streamOptimized'
    assert result.details['disk'] == 'vm-disk1.vmdk'
    assert result.details['other_disks'] == []
    assert result.details['ovf_capacity'] == result.virtual_size


def test_multi_disk_ova_reports_the_boot_disk_and_names_the_others(
        disks, tmp_path):
    long_name = 'data-' + 'x' * 120 + '.qcow2'
    pkg = _package(tmp_path, disks, {'boot.vmdk': 'big.vmdk',
                                     long_name: 'data.qcow2',
                                     'third.vmdk': 'boot.vmdk'})
    table = [('boot.vmdk', 10 * G, STREAM),
             (long_name, 3 * G + 512, containergen.QCOW2_URI),
             ('third.vmdk', 16 << 20, STREAM)]
    for fmt in ('pax', 'gnu'):
        path = containergen.ova(tmp_path / ('vm-%s.ova' % fmt), pkg, table,
                                fmt)
        result = common.assert_inner(path, 'ova', pkg / 'boot.vmdk', 'vmdk')
        assert result.details['other_disks'] == [long_name, 'third.vmdk']
    # The descriptor's first Disk is the boot disk, whatever the order of
    # the files in the archive and in References.
    path = containergen.ova(
        tmp_path / 'reordered.ova', pkg, table, 'pax',
        order=['vm.ovf', 'third.vmdk', long_name, 'boot.vmdk'])
    result = common.assert_inner(path, 'ova', pkg / 'boot.vmdk', 'vmdk')
    # ... and a qcow2 boot disk, declared qcow2.
    path = containergen.ova(tmp_path / 'q.ova', pkg, table[1:2] + table[:1],
                            'pax')
    common.assert_inner(path, 'ova', pkg / long_name, 'qcow2')


def test_ova_written_by_python_tarfile(disks, tmp_path):
    pkg = _package(tmp_path, disks, {'disk.vmdk': 'big.vmdk'})
    text = containergen.descriptor([('disk.vmdk', 10 * G, STREAM)])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w',
                      format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo('./vm.ovf')
        info.size = len(text)
        archive.addfile(info, io.BytesIO(text.encode()))
        archive.add(str(pkg / 'disk.vmdk'), arcname='./disk.vmdk')
    path = tmp_path / 'py.ova'
    path.write_bytes(buf.getvalue())
    common.assert_inner(str(path), 'ova', pkg / 'disk.vmdk', 'vmdk')


def test_gzip_compressed_member(disks, tmp_path):
    """ovf:compression="gzip" (DSP0243): the member is decompressed as it
    passes; a member that is not gzip is refused.
    """
    pkg = _package(tmp_path, disks, {'disk.vmdk': 'boot.vmdk'})
    containergen.compress(pkg / 'disk.vmdk', 'gzip', pkg / 'disk.vmdk.gz')
    table = [('disk.vmdk.gz', 16 << 20, STREAM, 'gzip')]
    path = containergen.ova(tmp_path / 'gz.ova', pkg, table)
    result = common.assert_inner(path, 'ova', pkg / 'disk.vmdk', 'vmdk')
    assert result.details['compression'] == 'gzip'
    table = [('disk.vmdk', 16 << 20, STREAM, 'gzip')]
    path = containergen.ova(tmp_path / 'nogz.ova', pkg, table)
    common.assert_refused(path, 'ova', 'compression',
                          text="member 'disk.vmdk'")


def test_descriptor_after_the_disks(disks, tmp_path):
    pkg = _package(tmp_path, disks, {'b.vmdk': 'boot.vmdk',
                                     'a.qcow2': 'data.qcow2'})
    table = [('b.vmdk', 16 << 20, STREAM), ('a.qcow2', 3 * G + 512, '')]
    path = containergen.ova(tmp_path / 'late.ova', pkg, table,
                            order=['a.qcow2', 'b.vmdk', 'vm.ovf'])
    result = common.assert_inner(path, 'ova', pkg / 'b.vmdk', 'vmdk')
    assert result.details['other_disks'] == ['a.qcow2']
    containergen.compress(pkg / 'b.vmdk', 'gzip', pkg / 'b.vmdk.gz')
    path = containergen.ova(tmp_path / 'lategz.ova', pkg,
                            [('b.vmdk.gz', 16 << 20, STREAM, 'gzip')],
                            order=['b.vmdk.gz', 'vm.ovf'])
    common.assert_refused(path, 'ova', 'stream_order',
                          text='DSP0243 puts the descriptor first')


def test_without_a_usable_descriptor_the_first_disk_member(disks, tmp_path):
    pkg = _package(tmp_path, disks, {'a.qcow2': 'data.qcow2',
                                     'b.vmdk': 'boot.vmdk'})
    (pkg / 'README.txt').write_text('not a disk\n')
    path = containergen.tar(tmp_path / 'nodesc.ova', pkg,
                            ['README.txt', 'a.qcow2', 'b.vmdk'])
    result = common.assert_inner(path, 'ova', pkg / 'a.qcow2', 'qcow2')
    assert result.details['other_disks'] == ['b.vmdk']
    # A descriptor without DiskSection names no disk either.
    text = ('<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/2">'
            '<References/></Envelope>')
    path = containergen.ova(tmp_path / 'nodisks.ova', pkg, [],
                            descriptor_text=text,
                            order=['vm.ovf', 'b.vmdk', 'a.qcow2'])
    common.assert_inner(path, 'ova', pkg / 'b.vmdk', 'vmdk')
    path = containergen.tar(tmp_path / 'readme.ova', pkg, ['README.txt'])
    common.assert_refused(path, 'ova', 'ova_disk')


@pytest.mark.parametrize('href', ['/etc/passwd', '../disk.vmdk',
                                  'sub/../../disk.vmdk',
                                  'http://198.51.100.7/disk.vmdk',
                                  'file:///var/lib/glance/disk.vmdk',
                                  '%2E%2E/disk.vmdk', 'disk.vmdk#frag'])
def test_references_outside_the_archive_are_refused(disks, tmp_path, href):
    pkg = _package(tmp_path, disks, {'disk.vmdk': 'boot.vmdk'})
    text = containergen.descriptor([('disk.vmdk', 16 << 20, STREAM)],
                                   extra_files=[('nvram', href)])
    path = containergen.ova(tmp_path / 'out.ova', pkg, [],
                            descriptor_text=text,
                            order=['vm.ovf', 'disk.vmdk'])
    common.assert_refused(path, 'ova', 'ova_reference',
                          text='outside the archive')
    text = containergen.descriptor([(href, 16 << 20, STREAM)])
    path = containergen.ova(tmp_path / 'disk-out.ova', pkg, [],
                            descriptor_text=text,
                            order=['vm.ovf', 'disk.vmdk'])
    common.assert_refused(path, 'ova', 'ova_reference')


def test_referenced_file_missing_and_unknown_file_ref(disks, tmp_path):
    pkg = _package(tmp_path, disks, {'disk.vmdk': 'boot.vmdk'})
    table = [('disk.vmdk', 16 << 20, STREAM), ('gone.vmdk', G, STREAM)]
    path = containergen.ova(tmp_path / 'missing.ova', pkg, table,
                            order=['vm.ovf', 'disk.vmdk'])
    common.assert_refused(path, 'ova', 'ova_reference',
                          text="(ovf:href 'gone.vmdk') is not in the archive")
    text = containergen.descriptor(table[:1]).replace(
        'ovf:fileRef="file1"', 'ovf:fileRef="nosuch"')
    path = containergen.ova(tmp_path / 'ref.ova', pkg, [],
                            descriptor_text=text,
                            order=['vm.ovf', 'disk.vmdk'])
    common.assert_refused(path, 'ova', 'ova_reference',
                          text="ovf:fileRef 'nosuch'")


BILLION_LAUGHS = '''<?xml version="1.0"?>
<!DOCTYPE Envelope [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">&lol3;</Envelope>
'''

EXTERNAL_ENTITY = '''<?xml version="1.0"?>
<!DOCTYPE Envelope SYSTEM "file:///etc/passwd">
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"/>
'''


@pytest.mark.parametrize('text,reason', [
    (BILLION_LAUGHS, 'DOCTYPE'), (EXTERNAL_ENTITY, 'DOCTYPE'),
    ('<Envelope><References>', 'not well-formed'),
    ('<Other/>', 'not Envelope'),
    ('<Envelope>&undefined;</Envelope>', 'not well-formed'),
    ('<Envelope><References><File ovf:href="a" xmlns:ovf="x"/>'
     '</References></Envelope>', 'no ovf:id')])
def test_hostile_or_broken_descriptors(disks, tmp_path, text, reason):
    pkg = _package(tmp_path, disks, {'disk.vmdk': 'boot.vmdk'})
    path = containergen.ova(tmp_path / 'bad.ova', pkg, [],
                            descriptor_text=text,
                            order=['vm.ovf', 'disk.vmdk'])
    common.assert_refused(path, 'ova', 'ova_descriptor', text=reason)


def test_descriptor_parser_directly():
    text = containergen.descriptor(
        [('a.vmdk', 5 * G, STREAM), ('./b%20c.vmdk', 1, '', 'gzip')])
    desc = ovf.parse(text.replace('UTF-8', 'UTF-16').encode('utf-16'))
    assert [f.member for f in desc.files.values()] == ['a.vmdk', 'b c.vmdk']
    assert desc.disks[0].capacity == 5 * G
    assert desc.files['file2'].compression == 'gzip'
    assert ovf.capacity_bytes('4', 'byte * 2^30') == 4 * G
    assert ovf.capacity_bytes('${size}', 'byte') is None
    assert ovf.capacity_bytes('4', 'KiloBytes') is None
    with pytest.raises(Exception):
        ovf.parse(b'<Envelope/>' + b' ' * ovf.MAX_DESCRIPTOR)


def test_unsafe_members_refuse_the_ova(disks, tmp_path):
    pkg = _package(tmp_path, disks, {'boot.vmdk': 'boot.vmdk',
                                     'child.qcow2': 'child.qcow2'})
    table = [('boot.vmdk', 16 << 20, STREAM), ('child.qcow2', G, '')]
    path = containergen.ova(tmp_path / 'unsafe.ova', pkg, table)
    result = common.assert_refused(
        path, 'ova', 'backing_file', disk_format='vmdk',
        text="member 'child.qcow2': backing file 'base.qcow2'")
    assert result.virtual_size == 16 << 20      # the boot disk's
    # A symbolic link, and a member named twice.
    os.symlink('boot.vmdk', pkg / 'link.vmdk')
    path = containergen.tar(tmp_path / 'link.ova', pkg,
                            ['vm.ovf', 'boot.vmdk', 'link.vmdk'])
    common.assert_refused(path, 'ova', 'unsafe_member', text='link')
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w') as archive:
        archive.add(str(pkg / 'boot.vmdk'), arcname='boot.vmdk')
        archive.add(str(pkg / 'child.qcow2'), arcname='boot.vmdk')
    path = tmp_path / 'dup.ova'
    path.write_bytes(buf.getvalue())
    common.assert_refused(str(path), 'ova', 'duplicate_member',
                          text="'boot.vmdk' twice")


def test_disk_format_is_checked_against_the_boot_disk(disks, tmp_path):
    pkg = _package(tmp_path, disks, {'boot.vmdk': 'boot.vmdk'})
    path = containergen.ova(tmp_path / 'vm.ova', pkg,
                            [('boot.vmdk', 16 << 20, STREAM)])
    common.assert_refused(path, 'ova', 'format_mismatch', disk_format='qcow2',
                          text="disk_format is qcow2 but member 'boot.vmdk' "
                               "is vmdk")


def test_truncated_ova_and_early_refusal(disks, tmp_path):
    pkg = _package(tmp_path, disks, {'boot.vmdk': 'boot.vmdk',
                                     'child.qcow2': 'child.qcow2'})
    path = containergen.ova(tmp_path / 'vm.ova', pkg,
                            [('boot.vmdk', 16 << 20, STREAM)])
    data = open(path, 'rb').read()
    cut = tmp_path / 'cut.ova'
    cut.write_bytes(data[:len(data) // 2])
    common.assert_refused(str(cut), 'ova', 'truncated')
    # An unsafe first member, then 64 MiB: refused from the member's end.
    (pkg / 'big.raw').write_bytes(bytes(64 << 20))
    path = containergen.tar(tmp_path / 'early.ova', pkg,
                            ['child.qcow2', 'big.raw'])
    reader = glance_vsize.InspectingReader(
        helpers.chunked(path, 65536), 'qcow2', fail_fast=True,
        container_format='ova')
    with pytest.raises(glance_vsize.ImageRejected) as exc:
        for _chunk in reader:
            pass
    assert 'backing_file' in exc.value.inspection.failures
    assert reader.bytes_read < 1 << 20


def test_too_many_members(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w') as archive:
        for i in range(ova.MAX_MEMBERS + 1):
            archive.addfile(tarfile.TarInfo('f%d.txt' % i))
    path = tmp_path / 'many.ova'
    path.write_bytes(buf.getvalue())
    common.assert_refused(str(path), 'ova', 'ova_members')


def test_two_descriptors_and_chunked_files(disks, tmp_path):
    pkg = _package(tmp_path, disks, {'boot.vmdk': 'boot.vmdk'})
    path = containergen.ova(tmp_path / 'vm.ova', pkg,
                            [('boot.vmdk', 16 << 20, STREAM)])
    shutil.copy(pkg / 'vm.ovf', pkg / 'other.ovf')
    path = containergen.tar(tmp_path / 'two.ova', pkg,
                            ['vm.ovf', 'other.ovf', 'boot.vmdk'])
    common.assert_refused(path, 'ova', 'ova_descriptor',
                          text='two OVF descriptors')
    text = containergen.descriptor([('boot.vmdk', 16 << 20, STREAM)]).replace(
        'ovf:href="boot.vmdk"', 'ovf:href="boot.vmdk" ovf:chunkSize="1024"')
    path = containergen.ova(tmp_path / 'chunk.ova', pkg, [],
                            descriptor_text=text,
                            order=['vm.ovf', 'boot.vmdk'])
    common.assert_refused(path, 'ova', 'ova_reference', text='chunks')
