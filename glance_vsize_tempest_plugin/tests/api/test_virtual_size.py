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

"""virtual_size is what ``qemu-img info`` says, for every disk format and
container glance_vsize inspects, on every way data reaches Glance."""

from tempest import config

from glance_vsize_tempest_plugin.tests.api import base

CONF = config.CONF


@base.per_image(base.FORMATS)
class CreateImageTest(base.VirtualSizeTest):
    """Create-image (PUT /v2/images/{id}/file, chunked) records qemu-img's
    virtual size.
    """

    def check(self, key):
        made = self.image(key)
        image = self.new_image(made)
        self.upload(image['id'], made)
        self.assert_virtual_size(self.client.show_image(image['id']), made)


@base.per_image(base.FORMATS)
class GlanceDirectImportTest(base.ImportTest):
    """glance-direct import (stage, then import) records qemu-img's virtual
    size.
    """

    def check(self, key):
        made = self.image(key)
        image = self.new_image(made)
        self.stage(image['id'], made)
        stores = self.start_import(image['id'], 'glance-direct')
        self.assert_virtual_size(
            self.wait_for_import(image['id'], stores), made)


@base.per_image(base.FORMATS)
class WebDownloadImportTest(base.ImportTest):
    """web-download import from the plugin's HTTP server records qemu-img's
    virtual size.
    """

    def check(self, key):
        made = self.image(key)
        image = self.new_image(made)
        stores = self.start_import(image['id'], 'web-download',
                                   uri=self.web_download_uri(made))
        self.assert_virtual_size(
            self.wait_for_import(image['id'], stores), made)


@base.per_image(base.FORMATS)
class CopyImageTest(base.ImportTest):
    """copy-image to the other stores keeps qemu-img's virtual size."""

    # copy-image is an admin action in Glance's default policy; the
    # member still uploads.
    credentials = ['primary', 'admin']

    @classmethod
    def setup_clients(cls):
        super().setup_clients()
        cls.admin_client = cls.os_admin.image_client_v2

    @classmethod
    def resource_setup(cls):
        super().resource_setup()
        if len(cls.writable_stores) < 2:
            raise cls.skipException(
                'copy-image needs two writable stores; GET /v2/info/stores '
                'lists %s' % (cls.writable_stores or 'none'))

    def check(self, key):
        made = self.image(key)
        image = self.new_image(made)
        self.upload(image['id'], made)
        image = self.client.show_image(image['id'])
        self.assert_virtual_size(image, made)
        others = [s for s in self.writable_stores
                  if s not in image['stores'].split(',')]
        self.earlier_tasks = {t['id'] for t in self.tasks(
            image['id'], client=self.admin_client)}
        self.admin_client.image_import(image['id'], method='copy-image',
                                       stores=others,
                                       all_stores_must_succeed=True)
        # The copy task is the admin's: the member does not see it.
        image = self.wait_for_import(image['id'], others, self.admin_client)
        self.assertFalse(image.get('os_glance_failed_import'))
        self.assertEqual(sorted(self.writable_stores),
                         sorted(image['stores'].split(',')))
        self.assert_virtual_size(image, made)
