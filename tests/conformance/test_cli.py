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


"""``glance-vsize inspect``, run as a user runs it: a separate process."""

import json
import subprocess
import sys

from tests import helpers

pytestmark = helpers.requires_qemu_img


def run(*args, stdin=None):
    return subprocess.run(
        [sys.executable, '-m', 'glance_vsize.cmd.cli'] + list(args),
        input=stdin, capture_output=True)


def test_safe_image_exit_0_with_qemu_size_in_json(tmp_path):
    path = helpers.create(tmp_path / 'x.vhd', 'vhd', (1 << 30) + 512)
    proc = run('inspect', '--json', '--disk-format', 'vhd', path)
    assert proc.returncode == 0, proc.stderr
    verdict = json.loads(proc.stdout)
    assert verdict == {'format': 'vhd', 'safe': True, 'failures': {},
                       'virtual_size': helpers.qemu_info(path, 'vhd')[
                           'virtual-size']}


def test_stdin_is_inspected_in_streaming_mode(tmp_path):
    path = helpers.create(tmp_path / 'x.qcow2', 'qcow2', 10 << 30)
    with open(path, 'rb') as f:
        proc = run('inspect', '--json', '-', stdin=f.read())
    assert proc.returncode == 0
    assert json.loads(proc.stdout)['virtual_size'] == 10 << 30


def test_unsafe_image_exit_3_naming_the_check(tmp_path):
    helpers.create(tmp_path / 'base.qcow2', 'qcow2', 1 << 20)
    path = helpers.create(tmp_path / 'top.qcow2', 'qcow2', 1 << 20,
                          'backing_file=base.qcow2,backing_fmt=qcow2')
    proc = run('inspect', path)
    assert proc.returncode == 3
    assert b"refused:      backing_file: backing file 'base.qcow2'" in \
        proc.stdout


def test_mismatch_exit_3(tmp_path):
    path = helpers.create(tmp_path / 'x.vdi', 'vdi', 1 << 20)
    proc = run('inspect', '--json', '--disk-format', 'qcow2', path)
    assert proc.returncode == 3
    assert 'format_mismatch' in json.loads(proc.stdout)['failures']


def test_usage_and_io_errors_exit_2_with_one_line(tmp_path):
    proc = run('inspect', str(tmp_path / 'missing'))
    assert proc.returncode == 2
    assert proc.stderr.decode().count('\n') == 1
    assert b'No such file or directory' in proc.stderr
    proc = run('inspect', '--disk-format', 'nosuch', 'x')
    assert proc.returncode == 2
    assert b'invalid choice' in proc.stderr


def test_qcow2_header_hidden_in_an_iso_is_refused(tmp_path):
    tree = tmp_path / 'tree'
    tree.mkdir()
    (tree / 'a.txt').write_text('a' * 5000)
    iso = tmp_path / 'x.iso'
    subprocess.run(['xorriso', '-as', 'mkisofs', '-quiet', '-o', str(iso),
                    str(tree)], check=True, stderr=subprocess.DEVNULL)
    qcow = helpers.create(tmp_path / 'h.qcow2', 'qcow2', 1 << 20)
    with open(qcow, 'rb') as f:
        header = f.read(512)
    with open(iso, 'r+b') as f:
        f.write(header)     # the system area is free for anything
    for declared in ('iso', 'qcow2', None):
        for _mode, result in helpers.all_modes(iso, declared):
            assert 'multiple_formats' in result.failures
            assert 'iso' in result.failures['multiple_formats']
