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


"""Every image of the project's own generator, in both modes, against
qemu-img: safe images get qemu-img's virtual size, unsafe ones are refused.
"""

import os

import pytest

from tests import helpers
from tests import imagegen

FORMATS = ('raw', 'iso', 'qcow2', 'vmdk', 'vhd', 'vhdx', 'vdi', 'ploop',
           'qed')


@pytest.fixture(scope='session')
def generated(tmp_path_factory):
    outdir = tmp_path_factory.mktemp('generated')
    return outdir, imagegen.build(str(outdir))


def _misses(outdir, entry, declared):
    path = os.path.join(outdir, entry['file'])
    for mode, result in helpers.all_modes(path, declared):
        where = '%s [%s, declared %s]' % (entry['file'], mode, declared)
        if not entry['safe']:
            if result.safe:
                yield '%s: accepted an unsafe image (%s)' % (where,
                                                             entry['why'])
        elif not result.safe:
            yield '%s: refused: %s' % (where, result.describe())
        elif (result.virtual_size, result.format) != (
                entry['virtual_size'], entry['disk_format']):
            yield '%s: %s %s, qemu-img says %s %s' % (
                where, result.format, result.virtual_size,
                entry['disk_format'], entry['virtual_size'])


@helpers.requires_qemu_img
@pytest.mark.parametrize('disk_format', FORMATS)
def test_generated_images_match_qemu_img(generated, disk_format):
    outdir, entries = generated
    chosen = [e for e in entries if e['disk_format'] == disk_format]
    assert chosen, 'the generator made no %s image' % disk_format
    misses = []
    for entry in chosen:
        for declared in (disk_format, None):
            misses.extend(_misses(outdir, entry, declared))
    assert misses == []


@helpers.requires_qemu_img
def test_generator_covers_unsafe_cases(generated):
    _outdir, entries = generated
    unsafe = {e['why'] for e in entries if not e['safe']}
    assert {'backing file', 'external data file',
            'descriptor naming extent files'} <= unsafe
