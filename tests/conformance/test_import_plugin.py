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


"""The import plugin's revert, run by a real taskflow engine.

The flow is the plugin's own (``get_flow``) between a task that provides
the staged file's ``file_path``, as Glance's _VerifyStaging does, and
optionally a task that fails after it, as _ImportToStore does when the
store fails.  Glance's import action wrapper is stood in for by a recorder
of the calls the plugin makes on it.
"""

import os

import pytest
from taskflow import engines
from taskflow.patterns import linear_flow as lf
from taskflow import task

pytest.importorskip('glance')

from glance_vsize.glance import import_plugin  # noqa: E402
from tests import helpers  # noqa: E402


class _Actions:
    def __init__(self, status, disk_format):
        self.image_status = status
        self.image_disk_format = disk_format
        self.image_container_format = 'bare'
        self.attributes = {}
        self.calls = []
        self.importing = {'local'}
        self.failed = set()

    def set_image_attribute(self, **kwargs):
        self.calls.append(kwargs)
        self.attributes.update(kwargs)
        self.image_status = kwargs.get('status', self.image_status)

    def remove_importing_stores(self, stores):
        self.importing -= set(stores)

    def add_failed_stores(self, stores):
        self.failed |= set(stores)


class _Wrapper:
    def __init__(self, actions):
        self.actions = actions

    def __enter__(self):
        return self.actions

    def __exit__(self, *exc):
        return False


class _Stage(task.Task):
    default_provides = 'file_path'

    def __init__(self, path):
        super().__init__(name='stage')
        self.path = path

    def execute(self):
        return 'file://' + self.path


class _StoreFails(task.Task):
    def execute(self):
        raise IOError('[Errno 27] File too large')


def _run(path, disk_format, status='importing', later_failure=False):
    actions = _Actions(status, disk_format)
    flow = lf.Flow('import').add(_Stage(path), import_plugin.get_flow(
        task_id='t1', task_type='api_image_import', image_id='img',
        action_wrapper=_Wrapper(actions), backend=['local'],
        import_req={'method': {'name': 'glance-direct'}}))
    if later_failure:
        flow.add(_StoreFails(name='store'))
    with pytest.raises(Exception):
        engines.run(flow)
    return actions


@helpers.requires_qemu_img
def test_refusal_requeues_and_removes_the_staged_file(tmp_path):
    helpers.create(tmp_path / 'base.qcow2', 'qcow2', 1 << 20)
    staged = helpers.create(tmp_path / 'img', 'qcow2', 1 << 20,
                            'backing_file=base.qcow2,backing_fmt=qcow2')
    actions = _run(staged, 'qcow2')
    assert actions.attributes == {'status': 'queued'}
    assert (actions.importing, actions.failed) == (set(), {'local'})
    assert not os.path.exists(staged)


@helpers.requires_qemu_img
def test_store_failure_after_it_requeues_and_removes_the_staged_file(
        tmp_path):
    staged = helpers.create(tmp_path / 'img', 'qcow2', 1 << 20)
    size = helpers.qemu_info(staged)['virtual-size']
    actions = _run(staged, 'qcow2', later_failure=True)
    # The size was set, then reset to null: Glance alone leaves a failed
    # import queued with no virtual_size.
    assert {'virtual_size': size} in actions.calls
    assert actions.attributes == {'virtual_size': None, 'status': 'queued'}
    assert (actions.importing, actions.failed) == (set(), set())
    assert not os.path.exists(staged)


@helpers.requires_qemu_img
def test_store_failure_after_glance_requeued_is_left_alone(tmp_path):
    staged = helpers.create(tmp_path / 'img', 'qcow2', 1 << 20)
    actions = _run(staged, 'qcow2', status='queued', later_failure=True)
    assert actions.attributes == {'virtual_size': None}
    assert os.path.exists(staged)


@helpers.requires_qemu_img
def test_web_download_failure_after_it_resets_the_virtual_size(tmp_path):
    """The download task requeues the image itself; the plugin still
    resets the size it set.
    """
    staged = helpers.create(tmp_path / 'img', 'qcow2', 1 << 20)
    actions = _Actions('importing', 'qcow2')
    flow = lf.Flow('import').add(_Stage(staged), import_plugin.get_flow(
        task_id='t1', task_type='api_image_import', image_id='img',
        action_wrapper=_Wrapper(actions), backend=['local'],
        import_req={'method': {'name': 'web-download'}}),
        _StoreFails(name='store'))
    with pytest.raises(Exception):
        engines.run(flow)
    assert actions.attributes == {'virtual_size': None}


def test_loading_the_plugin_puts_the_engine_in_glance():
    from glance.async_.flows.plugins import image_conversion
    from glance import location

    from glance_vsize.glance import format_inspector
    assert location.format_inspector is format_inspector
    assert image_conversion.format_inspector is format_inspector
