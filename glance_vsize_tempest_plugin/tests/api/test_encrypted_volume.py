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

"""Cinder's "upload volume to image" of an encrypted volume: the volume's
LUKS bytes declared ``disk_format=raw`` with Cinder's encryption
properties, sent chunked (gzip in a ``compressed`` container when Cinder
compresses uploads). Glance records them as raw: virtual_size is what
``qemu-img info -f raw`` says."""

from tempest.lib.common.utils import data_utils
from tempest.lib import decorators

from glance_vsize_tempest_plugin.tests.api import base


class EncryptedVolumeUploadTest(base.ImportTest):
    """An encrypted volume's upload is accepted as raw."""

    def new_encrypted_image(self, made):
        image = self.new_image(
            made, cinder_encryption_key_id=data_utils.rand_uuid(),
            cinder_encryption_key_deletion_policy='on_image_deletion')
        self.assertEqual('raw', image['disk_format'])
        return image

    def check_create_image(self, key):
        made = self.image(key)
        image = self.new_encrypted_image(made)
        self.upload(image['id'], made)
        image = self.client.show_image(image['id'])
        self.assert_virtual_size(image, made)
        self.assertEqual('on_image_deletion',
                         image['cinder_encryption_key_deletion_policy'])

    @decorators.idempotent_id('0b9f7d7e-5a0e-4c55-9a0e-7f3f2d4c8b11')
    def test_luks1_create_image(self):
        """LUKS version 1 (qemu-img) uploaded as raw."""
        self.check_create_image('luks1')

    @decorators.idempotent_id('6c1a4e52-1f0b-4d8f-8a8e-2b7d0e9c4f22')
    def test_luks2_create_image(self):
        """LUKS version 2 (cryptsetup) uploaded as raw."""
        self.check_create_image('luks2')

    @decorators.idempotent_id('a3d2c8f4-9e61-4b1a-b7c5-5d0e8f1a6c33')
    def test_luks1_compressed_create_image(self):
        """LUKS version 1 in gzip, container_format compressed."""
        self.check_create_image('luks1_compressed')

    @decorators.idempotent_id('d47e0b95-2c3a-4f6e-8d1b-9a2f5c7e0d44')
    def test_luks1_glance_direct_import(self):
        """LUKS version 1 staged and imported as raw."""
        made = self.image('luks1')
        image = self.new_encrypted_image(made)
        self.stage(image['id'], made)
        stores = self.start_import(image['id'], 'glance-direct')
        self.assert_virtual_size(
            self.wait_for_import(image['id'], stores), made)

    @decorators.idempotent_id('e58f1ca6-3d4b-4a7f-9e2c-0b3a6d8f1e55')
    def test_luks1_web_download_import(self):
        """LUKS version 1 fetched by web-download as raw."""
        made = self.image('luks1')
        image = self.new_encrypted_image(made)
        stores = self.start_import(image['id'], 'web-download',
                                   uri=self.web_download_uri(made))
        self.assert_virtual_size(
            self.wait_for_import(image['id'], stores), made)
