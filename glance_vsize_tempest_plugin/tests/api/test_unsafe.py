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

"""Unsafe images (a qcow2 naming a backing file) are refused on every
path, whatever disk_format they are declared as, with the name of the
check in the error, and leave nothing behind: the image is back to
``queued`` with no data, and takes a safe image afterwards."""

from tempest import config
from tempest.lib.common.utils import data_utils
from tempest.lib import decorators
from tempest.lib import exceptions as lib_exc

from glance_vsize_tempest_plugin.tests.api import base

CONF = config.CONF
CHECK = 'backing_file'


class UnsafeImageTest(base.ImportTest):
    """Unsafe images are refused and leave nothing behind."""

    def new_unsafe_image(self, disk_format='qcow2'):
        made = self.image('backing_file')
        image = self.create_image(
            name=data_utils.rand_name(prefix=CONF.resource_name_prefix,
                                      name='vsize-unsafe'),
            disk_format=disk_format,
            container_format='bare', visibility='private')
        return made, image

    def assert_nothing_left(self, image_id):
        image = self.client.show_image(image_id)
        self.assertEqual('queued', image['status'])
        for field in ('size', 'virtual_size', 'checksum', 'os_hash_value'):
            self.assertIsNone(image.get(field), field)
        self.assertFalse(image.get('stores'))
        data = self.client.show_image_file(image_id)
        self.assertEqual(204, data.response.status)
        self.assertEqual(b'', data.data)

    def assert_refused(self, call, *args):
        error = self.assertRaises(lib_exc.ClientRestClientException,
                                  call, *args)
        self.assertIn(error.resp.status, (400, 415))
        self.assertIn(CHECK, str(error.resp_body))

    @decorators.idempotent_id('1f6a0d3e-8b2c-4e7d-a5f1-3c9e0b7d2a66')
    def test_create_image_refused(self):
        """Create-image of a qcow2 with a backing file is refused."""
        made, image = self.new_unsafe_image()
        with open(made.path, 'rb') as data:
            self.assert_refused(self.client.store_image_file, image['id'],
                                data)
        self.assert_nothing_left(image['id'])

    @decorators.idempotent_id('2a7b1e4f-9c3d-4f8e-b6a2-4d0f1c8e3b77')
    def test_declared_raw_refused(self):
        """A qcow2 with a backing file declared raw is refused too."""
        made, image = self.new_unsafe_image('raw')
        with open(made.path, 'rb') as data:
            self.assert_refused(self.client.store_image_file, image['id'],
                                data)
        self.assert_nothing_left(image['id'])

    @decorators.idempotent_id('3b8c2f5a-0d4e-4a9f-87b3-5e1a2d9f4c88')
    def test_stage_refused(self):
        """Staging it for glance-direct is refused; nothing stays staged:
        a safe image can be staged and imported into the same image.
        """
        made, image = self.new_unsafe_image()
        with open(made.path, 'rb') as data:
            self.assert_refused(self.client.stage_image_file, image['id'],
                                data)
        self.assert_nothing_left(image['id'])
        safe = self.image('qcow2')
        self.stage(image['id'], safe)
        stores = self.start_import(image['id'], 'glance-direct')
        self.assert_virtual_size(
            self.wait_for_import(image['id'], stores), safe)

    @decorators.idempotent_id('4c9d3a6b-1e5f-4b0a-98c4-6f2b3e0a5d99')
    def test_web_download_refused(self):
        """web-download of it fails the import task with the check's name
        and leaves the image queued; a safe image imports after it.
        """
        made, image = self.new_unsafe_image()
        self.start_import(image['id'], 'web-download',
                          uri=self.web_download_uri(made))
        image, tasks = self.wait_for_tasks(image['id'])
        self.assertEqual(['failure'], [t['status'] for t in tasks])
        self.assertIn(CHECK, tasks[0]['message'])
        self.assert_nothing_left(image['id'])
        safe = self.image('qcow2')
        self.start_import(image['id'], 'web-download',
                          uri=self.web_download_uri(safe))
        self.assert_virtual_size(self.wait_for_import(image['id']), safe)
