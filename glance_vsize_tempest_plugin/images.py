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

"""The test images, made at setup by the real tools: qemu-img (every disk
format and LUKS version 1), cryptsetup (LUKS version 2), xorriso (ISO),
tar (OVA) and gzip (compressed); and qemu-img's answer about them."""

import atexit
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import threading
from typing import Optional

from tempest import config

CONF = config.CONF

# Glance disk_format -> qemu-img's driver name.
QEMU_DRIVER = {'vhd': 'vpc', 'ploop': 'parallels', 'iso': 'raw'}

# Virtual sizes asked of qemu-img: not a multiple of 1 MiB, so every
# format's rounding (VHD's CHS geometry, VDI's blocks...) shows.
SIZE = '1000000000'
SMALL = '10000000'     # images whose file is as large as the disk
LUKS_PASSPHRASE = 'glance-vsize-tempest'


@dataclasses.dataclass(frozen=True)
class TestImage:
    """One image file and how Glance is told about it."""
    name: str
    disk_format: str
    container_format: str
    path: Optional[str]          # None: the tool to make it is missing
    disk: Optional[str] = None   # the disk inside a container
    missing: str = ''            # why path is None

    @property
    def file_name(self) -> str:
        return os.path.basename(self.path or '')

    def expected_virtual_size(self) -> int:
        """What ``qemu-img info --output=json`` says of the disk."""
        return qemu_virtual_size(self.disk or self.path, self.disk_format)


def qemu_virtual_size(path: str, disk_format: str) -> int:
    """``qemu-img info -f DRIVER --output=json PATH``'s virtual-size."""
    out = subprocess.run(
        [CONF.glance_vsize.qemu_img, 'info', '--output=json', '-f',
         QEMU_DRIVER.get(disk_format, disk_format), path],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)['virtual-size']


def _qemu_img(*args: str) -> None:
    # qemu's PBKDF benchmark (LUKS key slots) fails now and then where the
    # thread CPU clock is coarse ("Unable to get accurate CPU usage").
    for _ in range(5):
        proc = subprocess.run((CONF.glance_vsize.qemu_img,) + args,
                              capture_output=True, text=True)
        if proc.returncode == 0:
            return
        if 'accurate CPU usage' not in proc.stderr:
            break
    raise RuntimeError('qemu-img %s: %s' % (' '.join(args), proc.stderr))


def _run(*args: str, **kwargs) -> None:
    kwargs.setdefault('stdout', subprocess.DEVNULL)
    proc = subprocess.run(args, stderr=subprocess.PIPE, **kwargs)
    if proc.returncode:
        raise RuntimeError('%s: exit status %d: %s' % (
            ' '.join(args), proc.returncode,
            proc.stderr.decode('utf-8', 'replace')))


OVF = '''<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References>
    <File ovf:id="file1" ovf:href="%(href)s"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="%(size)s"
        ovf:capacityAllocationUnits="byte"
        ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="tempest">
    <Info>A virtual machine</Info>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <Item>
        <rasd:ElementName>disk1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
'''


class _Builder:
    def __init__(self, directory: str):
        self.dir = directory
        self.images: dict[str, TestImage] = {}

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def add(self, key: str, disk_format: str, container_format: str,
            path: Optional[str], disk: Optional[str] = None,
            missing: str = '') -> None:
        self.images[key] = TestImage(key, disk_format, container_format,
                                     path, disk, missing)

    def create(self, key: str, disk_format: str, size: str = SIZE,
               opts: str = '') -> str:
        path = self.path('%s.%s' % (key, disk_format))
        cmd = ['create', '-q', '-f',
               QEMU_DRIVER.get(disk_format, disk_format)]
        if opts:
            cmd += ['-o', opts]
        _qemu_img(*(cmd + [path, size]))
        self.add(key, disk_format, 'bare', path)
        return path

    def disks(self) -> None:
        self.create('qcow2', 'qcow2')
        self.create('vhd_dynamic', 'vhd', opts='subformat=dynamic')
        self.create('vhd_fixed', 'vhd', SMALL, 'subformat=fixed')
        self.create('vmdk', 'vmdk')
        self.create('vhdx', 'vhdx')
        self.create('vdi', 'vdi')
        self.create('ploop', 'ploop')

    def iso(self) -> None:
        tool = next((t for t in ('xorriso', 'genisoimage', 'mkisofs')
                     if shutil.which(t)), None)
        if tool is None:
            self.add('iso', 'iso', 'bare', None,
                     missing='no xorriso, genisoimage or mkisofs')
            return
        tree = self.path('iso-tree')
        os.mkdir(tree)
        with open(os.path.join(tree, 'hello.txt'), 'w') as f:
            f.write('glance_vsize tempest\n' * 5000)
        cmd = [tool] + (['-as', 'mkisofs'] if tool == 'xorriso' else [])
        path = self.path('image.iso')
        _run(*cmd, '-quiet', '-V', 'TEMPEST', '-o', path, tree)
        self.add('iso', 'iso', 'bare', path)

    def ova(self) -> None:
        disk = self.path('disk.vmdk')
        _qemu_img('create', '-q', '-f', 'vmdk', '-o',
                  'subformat=streamOptimized', disk, SIZE)
        with open(self.path('vm.ovf'), 'w') as f:
            f.write(OVF % {'href': 'disk.vmdk', 'size': SIZE})
        path = self.path('vm.ova')
        # The descriptor first, as DSP0243 requires.
        _run('tar', '--format=ustar', '-cf', path, '-C', self.dir,
             'vm.ovf', 'disk.vmdk')
        self.add('ova', 'vmdk', 'ova', path, disk)

    def gzip(self, key: str, source: TestImage) -> None:
        path = source.path + '.gz'
        with open(path, 'wb') as out:
            _run('gzip', '-c', '-n', source.path, stdout=out)
        self.add(key, source.disk_format, 'compressed', path, source.path)

    def luks(self) -> None:
        """Encrypted volumes as Cinder uploads them: LUKS 1 made by
        qemu-img (Cinder's image conversion) and by cryptsetup (os-brick),
        LUKS 2 by cryptsetup; gzip as Cinder's compressed uploads.
        """
        path = self.path('luks1.raw')
        _qemu_img('create', '-q', '-f', 'luks', '--object',
                  'secret,id=sec0,data=%s' % LUKS_PASSPHRASE, '-o',
                  'key-secret=sec0,iter-time=10', path, SMALL)
        self.add('luks1', 'raw', 'bare', path)
        self.gzip('luks1_compressed', self.images['luks1'])
        for version in ('luks1', 'luks2'):
            key = '%s_cryptsetup' % version
            if not shutil.which('cryptsetup'):
                self.add(key, 'raw', 'bare', None,
                         missing='no cryptsetup (Debian cryptsetup-bin)')
                self.add(key + '_compressed', 'raw', 'compressed', None,
                         missing='no cryptsetup (Debian cryptsetup-bin)')
                continue
            path = self.path('%s.raw' % key)
            with open(path, 'wb') as f:
                f.truncate(int(SMALL))
            _run('cryptsetup', 'luksFormat', '--batch-mode', '--type',
                 version, '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations',
                 '1000', '--key-file', '-', path,
                 input=LUKS_PASSPHRASE.encode())
            self.add(key, 'raw', 'bare', path)
            self.gzip(key + '_compressed', self.images[key])

    def unsafe(self) -> None:
        self.create('base', 'qcow2')
        _qemu_img('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F',
                  'qcow2', self.path('child.qcow2'), SIZE)
        self.add('backing_file', 'qcow2', 'bare', self.path('child.qcow2'))


_lock = threading.Lock()
_built: dict[str, TestImage] = {}


def build() -> dict[str, TestImage]:
    """Every test image, made once per test process in a temporary
    directory that is removed when the process exits.
    """
    with _lock:
        if not _built:
            directory = tempfile.mkdtemp(prefix='glance-vsize-tempest-')
            atexit.register(shutil.rmtree, directory, True)
            builder = _Builder(directory)
            builder.disks()
            builder.iso()
            builder.ova()
            builder.gzip('compressed', builder.images['qcow2'])
            builder.luks()
            builder.unsafe()
            _built.update(builder.images)
        return _built


def directory() -> str:
    """Where the images are (served over HTTP for web-download)."""
    return os.path.dirname(next(i.path for i in build().values() if i.path))
