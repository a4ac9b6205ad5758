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


"""The streaming tar reader on archives written by GNU tar and Python's
tarfile, in every format they write, and on hostile ones.
"""

import hashlib
import io
import os
import random
import subprocess
import tarfile

import pytest

from glance_vsize.containers import base
from glance_vsize.containers import tar
from tests import containergen

CHUNKS = (1, 7, 512, 4096 + 7, 65536)
#: Longer than the 100 bytes of ``name``: ustar splits it into ``prefix``
#: and ``name``; pax and GNU tar write it in an extended header.
LONG = 'a-rather-long-directory-name-' * 4 + '/' + 'file-' * 18 + '.vmdk'
#: One component longer than 100 bytes: pax and GNU only.
LONGER = 'n' * 150 + '.raw'


class _Sink:
    def __init__(self, record, name):
        self.record, self.name = record, name
        self.hash = hashlib.sha256()
        self.size = 0

    def feed(self, data):
        self.hash.update(data)
        self.size += len(data)

    def end(self):
        self.record.ended.append(self.name)
        self.record.data[self.name] = (self.size, self.hash.hexdigest())


class Record:
    """Parse an archive in chunks; remember members and their data."""

    def __init__(self, data, chunk=65536):
        self.members, self.ended, self.data = [], [], {}
        parser = tar.TarParser(self.on_member)
        for i in range(0, len(data), chunk):
            parser.feed(data[i:i + chunk])
        parser.finish()

    def on_member(self, member):
        self.members.append(member)
        return _Sink(self, member.name) if member.type == 'file' else None


def _error(data, chunk=65536):
    with pytest.raises(base.ContainerError) as exc:
        Record(data, chunk)
    return exc.value


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / 'src'
    os.makedirs(src / os.path.dirname(LONG))
    rnd = random.Random(5)
    files = {'small.txt': b'hello\n', 'empty': b'',
             'odd.bin': rnd.randbytes(1000), LONG: rnd.randbytes(70000),
             'block.bin': rnd.randbytes(1 << 16), LONGER: b'x' * 513}
    for name, data in files.items():
        with open(src / name, 'wb') as f:
            f.write(data)
    return src, {n: (len(d), hashlib.sha256(d).hexdigest())
                 for n, d in files.items()}


@pytest.mark.parametrize('fmt', ['ustar', 'pax', 'gnu', 'oldgnu'])
def test_gnu_tar_formats_with_long_names(tree, tmp_path, fmt):
    src, files = tree
    if fmt == 'ustar':
        del files[LONGER]
    path = containergen.tar(tmp_path / 'a.tar', src, list(files), fmt)
    data = open(path, 'rb').read()
    for chunk in CHUNKS:
        record = Record(data, chunk)
        assert record.data == files, (fmt, chunk)
        assert record.ended == list(files)
        offsets = [m.offset for m in record.members]
        assert all(o % 512 == 0 for o in offsets)


@pytest.mark.parametrize('fmt', [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT,
                                 tarfile.PAX_FORMAT])
def test_python_tarfile_formats(tree, tmp_path, fmt):
    src, files = tree
    if fmt == tarfile.USTAR_FORMAT:
        del files[LONGER]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=fmt) as archive:
        archive.add(str(src / os.path.dirname(LONG)),
                    arcname=os.path.dirname(LONG), recursive=False)
        for name in files:
            archive.add(str(src / name), arcname='./' + name)
    for chunk in CHUNKS:
        record = Record(buf.getvalue(), chunk)
        assert record.data == files
        assert record.members[0].type == 'directory'
        assert record.members[0].name == os.path.dirname(LONG)


@pytest.mark.parametrize('fmt', [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_members_of_8_gib_and_more(fmt):
    """GNU base-256 and pax ``size`` records: the header is read right
    (10 GiB), and an archive that ends early is truncated.
    """
    info = tarfile.TarInfo('huge.raw')
    info.size = 10 << 30
    data = info.tobuf(fmt) + bytes(4096)
    seen = []

    def on_member(member):
        seen.append(member)
    parser = tar.TarParser(on_member)
    parser.feed(data)
    with pytest.raises(base.ContainerError) as exc:
        parser.finish()
    assert seen[0].size == 10 << 30
    assert exc.value.check == 'truncated'
    assert "inside the data of member 'huge.raw'" in exc.value.reason


def _tarfile(*infos, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=fmt) as archive:
        for info, payload in infos:
            archive.addfile(info, io.BytesIO(payload) if payload else None)
    return buf.getvalue()


def _info(name, kind=tarfile.REGTYPE, size=0, **kw):
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    for key, value in kw.items():
        setattr(info, key, value)
    return info


@pytest.mark.parametrize('kind,what', [
    (tarfile.SYMTYPE, 'symbolic link'), (tarfile.LNKTYPE, 'hard link'),
    (tarfile.CHRTYPE, 'character device'), (tarfile.BLKTYPE, 'block device'),
    (tarfile.FIFOTYPE, 'FIFO')])
def test_links_devices_and_fifos_are_unsafe(kind, what):
    data = _tarfile((_info('disk.vmdk', kind, linkname='/etc/shadow'), None))
    exc = _error(data)
    assert exc.check == 'unsafe_member'
    assert what in exc.reason


@pytest.mark.parametrize('name', ['/etc/passwd', '../disk.vmdk',
                                  'a/../../disk.vmdk'])
def test_names_outside_the_archive_are_unsafe(name):
    exc = _error(_tarfile((_info(name, size=3), b'abc')))
    assert exc.check == 'unsafe_member'
    assert 'outside the archive' in exc.reason


def test_gnu_tar_symlink_and_sparse_members(tmp_path):
    src = tmp_path / 'src'
    os.makedirs(src)
    os.symlink('/etc/passwd', src / 'link.vmdk')
    with open(src / 'sparse.raw', 'wb') as f:
        f.truncate(64 << 20)
        f.seek(32 << 20)
        f.write(b'data')
    path = containergen.tar(tmp_path / 'l.tar', src, ['link.vmdk'])
    assert _error(open(path, 'rb').read()).check == 'unsafe_member'
    for fmt in ('gnu', 'pax'):
        path = containergen.tar(tmp_path / ('s-%s.tar' % fmt), src,
                                ['sparse.raw'], fmt, extra=['--sparse'])
        exc = _error(open(path, 'rb').read())
        assert exc.check == 'unsafe_member', fmt
        assert 'sparse' in exc.reason


def test_pre_posix_archives_are_refused(tree, tmp_path):
    src, _files = tree
    path = containergen.tar(tmp_path / 'v7.tar', src, ['small.txt'], 'v7')
    exc = _error(open(path, 'rb').read())
    assert exc.check == 'tar_header'
    assert 'no ustar magic' in exc.reason


def test_bad_checksum_and_numbers():
    data = bytearray(_tarfile((_info('a.vmdk', size=3), b'abc')))
    data[0] ^= 1
    assert 'bad header checksum at offset 0' in _error(bytes(data)).reason
    info = _info('a.vmdk', size=3)
    block = bytearray(info.tobuf(tarfile.USTAR_FORMAT))
    block[124:136] = b'0000000z003\0'
    block[148:156] = b'        '
    block[148:155] = b'%06o\0' % sum(block)
    exc = _error(bytes(block) + b'abc'.ljust(512, b'\0') + bytes(1024))
    assert exc.check == 'tar_header'
    assert 'not an octal number' in exc.reason


def test_end_marker_and_what_follows(tree, tmp_path):
    src, files = tree
    data = open(containergen.tar(tmp_path / 'a.tar', src, ['small.txt']),
                'rb').read()
    assert Record(data + bytes(4096)).data  # zero padding is fine
    exc = _error(data + b'PK\x03\x04')
    assert exc.check == 'trailing_data'
    assert 'offset %d' % len(data) in exc.reason
    # Cut after the member: no end-of-archive marker.
    exc = _error(data[:1024])
    assert exc.check == 'truncated'
    assert 'end-of-archive marker' in exc.reason
    for cut in (100, 600):
        assert _error(data[:cut]).check == 'truncated'


def test_pax_header_bounds():
    info = _info('x' * 50, size=3)
    info.pax_headers = {'comment': 'c' * (tar.MAX_META + 10)}
    exc = _error(_tarfile((info, b'abc'), fmt=tarfile.PAX_FORMAT))
    assert exc.check == 'tar_header'
    assert 'more than' in exc.reason
    # A malformed record.
    block = _info('././@PaxHeader', tarfile.XHDTYPE, size=12)
    raw = block.tobuf(tarfile.USTAR_FORMAT) + b'99 path=x\n'.ljust(512, b'\0')
    exc = _error(raw + _tarfile((_info('a', size=0), None)))
    assert exc.check == 'tar_header'
    assert 'malformed pax' in exc.reason


def test_pax_path_overrides_and_global_headers():
    info = _info('short', size=3)
    info.pax_headers = {'path': 'dir/' + 'n' * 150 + '.vmdk'}
    data = _tarfile((info, b'abc'), fmt=tarfile.PAX_FORMAT)
    assert list(Record(data).data) == ['dir/' + 'n' * 150 + '.vmdk']
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT,
                      pax_headers={'comment': 'global'}) as archive:
        archive.addfile(_info('a.vmdk', size=3), io.BytesIO(b'abc'))
    assert Record(buf.getvalue()).data['a.vmdk'][0] == 3


def test_duplicates_are_announced_both(tree, tmp_path):
    """GNU tar writes a file named twice as a hard link (unsafe); tarfile
    writes it twice; the parser announces both, the OVA layer refuses.
    """
    src, _files = tree
    path = containergen.tar(tmp_path / 'd.tar', src, ['small.txt',
                                                      'small.txt'])
    exc = _error(open(path, 'rb').read())
    assert exc.check == 'unsafe_member'
    assert 'hard link' in exc.reason
    data = _tarfile((_info('a.vmdk', size=3), b'abc'),
                    (_info('a.vmdk', size=3), b'xyz'))
    assert [m.name for m in Record(data).members] == ['a.vmdk', 'a.vmdk']


def test_gnu_tar_reads_what_the_reader_accepts(tree, tmp_path):
    """Cross-check with GNU tar's own listing."""
    src, files = tree
    path = containergen.tar(tmp_path / 'a.tar', src, list(files), 'gnu')
    listing = subprocess.run(['tar', '-tf', path], capture_output=True,
                             text=True, check=True).stdout.split('\n')[:-1]
    assert [m.name for m in Record(open(path, 'rb').read()).members] == \
        listing
