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

"""What the hardening tests found, each kept as a test of its own.

Every case is checked the same way (``helpers.assert_hostile``): in every
mode a verdict naming the expected check, never an exception, and a safe
verdict only where qemu-img opens the bytes with the same size.
"""

import os
import struct
import subprocess

import pytest

from glance_vsize.formats import vhd
from tests import helpers

MiB = 1 << 20


def _copy(entries, name, tmp_path):
    path = str(tmp_path / name)
    subprocess.run(['cp', '--sparse=always', entries[name]['path'], path],
                   check=True)
    return path


@pytest.fixture
def entries(corpus):
    return {e['file']: e for e in corpus[1]}


def _assert_refused_like_qemu(path, disk_format, check):
    assert helpers.qemu_info(path, disk_format) is None
    helpers.assert_hostile(path, check, disk_format=disk_format)
    helpers.assert_refused(path, disk_format, check)


# 1. vhd, check table_bounds: a dynamic VHD whose BAT maps a block past the
#    end of the file.  qemu refuses it ("free_data_block_offset points
#    after the end of file. The image has been truncated."); the BAT was
#    not read, so the engine accepted every truncation of a VHD with data.

@pytest.mark.parametrize('length', (2048, 1 << 20, 4000000,
                                    8393216 - 4096))
def test_vhd_truncated_through_its_data(entries, tmp_path, length):
    path = _copy(entries, 'data-vhd-default.vhd', tmp_path)
    os.truncate(path, length)
    _assert_refused_like_qemu(path, 'vhd', 'table_bounds')


def test_vhd_bat_at_offset_0(entries, tmp_path):
    """The BAT pointer at the footer: its "entries" map blocks far away."""
    path = _copy(entries, 'vhd-dynamic-forceoff-s1.vhd', tmp_path)
    with open(path, 'r+b') as f:
        f.seek(512 + 16)
        f.write(struct.pack('>Q', 0))
    _assert_refused_like_qemu(path, 'vhd', 'table_bounds')


def test_vhd_block_ending_in_the_last_partial_sector(entries, tmp_path):
    """qemu compares with the length rounded up to a sector."""
    path = _copy(entries, 'data-vhd-default.vhd', tmp_path)
    size = os.path.getsize(path)
    os.truncate(path, size - 512 - 100)     # the footer copy, mostly
    info = helpers.qemu_info(path, 'vhd')
    assert info is not None
    helpers.assert_hostile(path, None, disk_format='vhd')


def test_vhd_bat_too_large_to_inspect(entries, tmp_path):
    """Max Table Entries of 8 Mi (a 32 MiB BAT, which qemu reads): over
    the bound of what is inspected, refused (table_size)."""
    path = _copy(entries, 'vhd-dynamic-forceoff-s1.vhd', tmp_path)
    with open(path, 'r+b') as f:
        f.seek(512 + 28)
        f.write(struct.pack('>I', vhd.MAX_BAT_BYTES // 4 + 1))
    helpers.assert_hostile(path, 'table_size', disk_format='vhd')
