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


"""container_format in the public API and the CLI."""

import io
import json
import os

import pytest

import glance_vsize
from glance_vsize.cmd import cli
from glance_vsize import containers
from glance_vsize import inspection
from glance_vsize import stream
from tests import containergen
from tests import helpers

pytestmark = helpers.requires_qemu_img


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp('api')
    qcow2 = helpers.create(out / 'disk.qcow2', 'qcow2', 5 << 30)
    gz = containergen.compress(qcow2, 'gzip')
    ova = containergen.ova(out / 'vm.ova', out,
                           [('disk.qcow2', 5 << 30, '')])
    return {'qcow2': qcow2, 'gz': gz, 'ova': ova}


@pytest.mark.parametrize('container', [None, 'bare', 'ami', 'aki', 'ari'])
def test_bare_like_containers_keep_the_bare_path(files, container):
    reader = glance_vsize.InspectingReader(
        helpers.chunked(files['qcow2'], 4096), 'qcow2',
        container_format=container)
    assert type(reader._inspector) is stream.StreamInspector
    for _chunk in reader:
        pass
    assert reader.result == glance_vsize.inspect_file(files['qcow2'],
                                                      'qcow2')
    assert glance_vsize.inspect_file(files['qcow2'], 'qcow2',
                                     container_format=container) == \
        reader.result


@pytest.mark.parametrize('container', ['docker', 'ovf', 'zip'])
def test_other_containers_are_not_inspected(files, container):
    with pytest.raises(ValueError) as exc:
        glance_vsize.InspectingReader(iter([]), container_format=container)
    assert 'is not inspected' in str(exc.value)
    with pytest.raises(ValueError):
        glance_vsize.inspect_file(files['qcow2'], container_format=container)


def test_container_formats_list():
    assert containers.CONTAINER_FORMATS == ('aki', 'ami', 'ari', 'bare',
                                            'compressed', 'ova')


@pytest.mark.parametrize('key,container', [('gz', 'compressed'),
                                           ('ova', 'ova')])
def test_read_and_expected_size(files, key, container):
    """read(n) hands the container on unchanged; with its length known the
    verdict comes with the last byte.
    """
    data = open(files[key], 'rb').read()
    reader = glance_vsize.InspectingReader(
        io.BytesIO(data), 'qcow2', fail_fast=True, expected_size=len(data),
        container_format=container)
    got = b''
    while len(got) < len(data):
        got += reader.read(1000)
    assert got == data
    assert reader.result is not None
    assert reader.result.virtual_size == 5 << 30
    assert reader.bytes_read == len(data)


def test_policy_caps_are_validated():
    with pytest.raises(ValueError):
        inspection.Policy(max_expanded_size=-1)
    assert inspection.Policy().max_expanded_size == 1 << 40
    assert inspection.Policy().max_compression_ratio == 1000
    assert inspection.Policy().ratio_exempt_size == 4 << 30


def _cli(*argv, stdin=None):
    out = io.StringIO()
    code = cli.main(list(argv), stdin=stdin, stdout=out)
    return code, out.getvalue()


def test_cli_container_format(files):
    code, out = _cli('inspect', '--container-format', 'ova', files['ova'])
    assert code == cli.EXIT_OK
    assert 'virtual size: %d' % (5 << 30) in out
    assert "container:    ova (disk disk.qcow2, other_disks [], " \
        "ovf_capacity %d)" % (5 << 30) in out
    code, out = _cli('inspect', '--json', '--container-format',
                     'compressed', '--disk-format', 'qcow2', '-',
                     stdin=open(files['gz'], 'rb'))
    verdict = json.loads(out)
    assert code == cli.EXIT_OK
    assert verdict['virtual_size'] == 5 << 30
    assert verdict['container'] == {
        'container': 'compressed', 'compression': 'gzip',
        'expanded_size': os.path.getsize(files['qcow2'])}
    code, out = _cli('inspect', '--json', files['qcow2'])
    assert 'container' not in json.loads(out)
    code, out = _cli('inspect', '--container-format', 'compressed',
                     files['qcow2'])
    assert code == cli.EXIT_REFUSED
    assert 'refused:      compression: the data is no known compression' \
        in out
