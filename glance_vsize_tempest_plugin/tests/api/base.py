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

"""What every glance_vsize test class shares: the test images, uploads
through Tempest's image client, and waits that fail fast with the import
task's message."""

import shutil
import time
import uuid

from tempest.api.image import base
from tempest import config
from tempest.lib.common.utils import data_utils
from tempest.lib import decorators

from glance_vsize_tempest_plugin import httpserver
from glance_vsize_tempest_plugin import images

CONF = config.CONF

# The formats whose virtual size every path must record (images.py).
FORMATS = ('qcow2', 'vhd_dynamic', 'vhd_fixed', 'vmdk', 'vhdx', 'vdi',
           'ploop', 'iso', 'ova', 'compressed')

# Test method ids are derived from their names (a fixed namespace), so
# they are stable from run to run.
_ID_NAMESPACE = uuid.UUID('5e3b1a2c-7f44-4a58-9d1e-0c6b2f7a9e13')


def per_image(keys):
    """Class decorator: one ``test_<key>`` per test image, each calling
    ``self.check(key)``.
    """
    def decorate(cls):
        for key in keys:
            def test(self, key=key):
                self.check(key)
            test.__name__ = test.__qualname__ = 'test_%s' % key
            test.__doc__ = 'The %s test image (see %s).' % (
                key, cls.__name__)
            test_id = str(uuid.uuid5(_ID_NAMESPACE,
                                     '%s.%s' % (cls.__name__, key)))
            setattr(cls, test.__name__, decorators.idempotent_id(test_id)(
                test))
        return cls
    return decorate


class VirtualSizeTest(base.BaseV2ImageTest):
    """Base class: a non-admin project member uploads the images."""

    credentials = ['primary']

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not shutil.which(CONF.glance_vsize.qemu_img):
            raise cls.skipException(
                '%s is not installed ([glance_vsize] qemu_img)'
                % CONF.glance_vsize.qemu_img)

    @classmethod
    def resource_setup(cls):
        super().resource_setup()
        cls.images = images.build()
        stores = cls.get_available_stores()
        cls.writable_stores = [s['id'] for s in stores
                               if s.get('read-only') != 'true']
        cls.default_store = next(
            (s['id'] for s in stores if s.get('default') == 'true'
             and s['id'] in cls.writable_stores),
            cls.writable_stores[0] if cls.writable_stores else None)

    # -------------------------------------------------------------- helpers
    def image(self, key):
        made = self.images[key]
        if made.path is None:
            raise self.skipException('cannot make the %s test image: %s'
                                     % (key, made.missing))
        return made

    def new_image(self, made, **properties):
        return self.create_image(
            name=data_utils.rand_name(prefix=CONF.resource_name_prefix,
                                      name='vsize-%s' % made.name),
            disk_format=made.disk_format,
            container_format=made.container_format,
            visibility='private', **properties)

    def upload(self, image_id, made):
        with open(made.path, 'rb') as data:
            self.client.store_image_file(image_id, data)

    def stage(self, image_id, made):
        with open(made.path, 'rb') as data:
            self.client.stage_image_file(image_id, data)

    def web_download_uri(self, made):
        base_url = httpserver.serve(images.directory())
        return '%s/%s' % (base_url, made.file_name)

    def start_import(self, image_id, method, **params):
        """Import into the default store (all stores of a cloud without
        multiple stores).
        """
        stores = [self.default_store] if self.default_store else None
        # Tasks of earlier imports of the same image are not waited for.
        self.earlier_tasks = getattr(self, 'earlier_tasks', set()) | {
            t['id'] for t in self.tasks(image_id)}
        self.client.image_import(
            image_id, method=method, stores=stores,
            import_params=params or None)
        return stores

    def tasks(self, image_id, new=False, client=None):
        """The image's import tasks (as ``client`` sees them: a task is
        listed to its own project); with new=True only those started by
        the last start_import.
        """
        tasks = (client or self.client).show_image_tasks(image_id)['tasks']
        if new:
            tasks = [t for t in tasks
                     if t['id'] not in getattr(self, 'earlier_tasks', ())]
        return tasks

    def wait_for_tasks(self, image_id, client=None):
        """Wait until every import task of the image has ended; return the
        image and its tasks.
        """
        deadline = time.monotonic() + self.client.build_timeout
        while True:
            image = self.client.show_image(image_id)
            tasks = self.tasks(image_id, new=True, client=client)
            # The task ends before its flow releases the image's import
            # lock (os_glance_import_task), a last write to the image.
            if tasks and all(t['status'] in ('success', 'failure')
                             for t in tasks) and \
                    image['status'] not in ('importing', 'saving') and \
                    not image.get('os_glance_importing_to_stores') and \
                    not image.get('os_glance_import_task'):
                return image, tasks
            if time.monotonic() > deadline:
                self.fail('image %s: import still running after %d s: %s'
                          % (image_id, self.client.build_timeout, tasks))
            time.sleep(self.client.build_interval)

    def wait_for_import(self, image_id, stores=None, client=None):
        """Wait for a successful import; fail with the task's message."""
        image, tasks = self.wait_for_tasks(image_id, client)
        failed = [t.get('message') for t in tasks if t['status'] != 'success']
        self.assertEqual([], failed, 'import of image %s failed' % image_id)
        self.assertEqual('active', image['status'])
        for store in stores or ():
            self.assertIn(store, image['stores'].split(','))
        return image

    def assert_virtual_size(self, image, made):
        """The image is active with qemu-img's virtual size."""
        self.assertEqual('active', image['status'])
        self.assertEqual(
            made.expected_virtual_size(), image['virtual_size'],
            'virtual_size of image %s (%s, disk_format %s, container_format'
            ' %s) is not what "qemu-img info" says' % (
                image['id'], made.name, made.disk_format,
                made.container_format))


class ImportTest(VirtualSizeTest):
    """Base class of the tests of the interoperable image import."""

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not CONF.image_feature_enabled.import_image:
            raise cls.skipException(
                'image import is disabled ([image-feature-enabled] '
                'import_image)')
