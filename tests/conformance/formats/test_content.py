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


"""ISO, MBR and GPT: content signatures of raw disks (qemu reads them as
raw), and how they combine with image formats.
"""

import subprocess

from tests import helpers
from tests import imagegen


def _iso(tmp_path, name='x.iso', *extra):
    tree = tmp_path / 'tree'
    tree.mkdir(exist_ok=True)
    (tree / 'a.txt').write_text('a' * 5000)
    path = tmp_path / name
    subprocess.run(['xorriso', '-as', 'mkisofs', '-quiet', *extra, '-o',
                    str(path), str(tree)], check=True,
                   stderr=subprocess.DEVNULL)
    return path


@helpers.requires_qemu_img
def test_iso_is_sized_as_raw_like_qemu(tmp_path):
    helpers.assert_like_qemu(_iso(tmp_path), 'iso', variant='iso9660')


@helpers.requires_qemu_img
def test_hybrid_iso_with_mbr_and_gpt_in_front_is_an_iso(tmp_path):
    path = _iso(tmp_path, 'h.iso', '-partition_offset', '16')
    with open(path, 'r+b') as f:
        f.truncate(1 << 20)
        imagegen.write_gpt(f, 1 << 20)
    helpers.assert_like_qemu(path, 'iso')
    for _mode, result in helpers.all_modes(path, 'raw'):
        assert result.safe and result.format == 'iso'


@helpers.requires_qemu_img
def test_gpt_and_mbr_disks_are_raw_with_a_variant(tmp_path):
    gpt = tmp_path / 'gpt.raw'
    with open(gpt, 'wb') as f:
        f.truncate(4 << 20)
        imagegen.write_gpt(f, 4 << 20)
    helpers.assert_like_qemu(gpt, 'raw', variant='gpt')
    mbr = tmp_path / 'mbr.raw'
    with open(mbr, 'wb') as f:
        f.truncate((4 << 20) + 100)
        imagegen.write_mbr(f, 4 << 20)
    helpers.assert_like_qemu(mbr, 'raw', variant='mbr')


def test_gpt_with_a_bad_crc_is_just_raw(tmp_path):
    path = tmp_path / 'bad.raw'
    with open(path, 'wb') as f:
        f.truncate(1 << 20)
        imagegen.write_gpt(f, 1 << 20)
        f.seek(512 + 16)
        f.write(b'\xde\xad\xbe\xef')
    for _mode, result in helpers.all_modes(path):
        assert result.safe and result.variant == 'mbr' or \
            result.variant == 'protective'


def test_fat_boot_sector_is_not_an_mbr(tmp_path):
    sector = bytearray(512)
    sector[446:510] = bytes(range(64))
    sector[510:512] = b'\x55\xaa'
    path = tmp_path / 'fat.raw'
    path.write_bytes(bytes(sector) * 8)
    for _mode, result in helpers.all_modes(path):
        assert (result.format, result.variant, result.safe) == (
            'raw', None, True)


def test_iso_declared_but_absent_is_a_mismatch(tmp_path):
    path = tmp_path / 'zero.raw'
    path.write_bytes(b'\0' * 65536)
    for _mode, result in helpers.all_modes(path, 'iso'):
        assert 'format_mismatch' in result.failures
