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
``qemu-img info -f raw`` says.

LUKS version 2 is tested in a ``compressed`` container only: in a ``bare``
one, Glance 33 itself (oslo.utils' LUKS inspector, after glance_vsize)
refuses it ("Image failed safety checks"), with or without glance_vsize."""

from tempest.lib.common.utils import data_utils
from tempest.lib import decorators

from glance_vsize_tempest_plugin.tests.api import base

CINDER = 'cinder'
# The 2026.1 cinder spec "Standardize Image Encryption and Decryption".
OS_ENCRYPT = 'os_encrypt'


class EncryptedVolumeUploadTest(base.ImportTest):
    """An encrypted volume's upload is accepted as raw."""

    def new_encrypted_image(self, made, style=CINDER):
        prefix = 'cinder_encryption' if style == CINDER else 'os_encrypt'
        # Cinder's other policy, on_image_deletion, has Glance delete the
        # key from the key manager (Barbican) with the image; the test's
        # key ID names no key there.
        properties = {prefix + '_key_id': data_utils.rand_uuid(),
                      prefix + '_key_deletion_policy': 'do_not_delete'}
        if style == OS_ENCRYPT:
            properties.update(os_encrypt_format='luks', os_decrypt_size='1')
        image = self.new_image(made, **properties)
        self.assertEqual('raw', image['disk_format'])
        for key, value in properties.items():
            self.assertEqual(value, image.get(key), key)
        return image

    def check_create_image(self, key, style=CINDER):
        made = self.image(key)
        image = self.new_encrypted_image(made, style)
        self.upload(image['id'], made)
        self.assert_virtual_size(self.client.show_image(image['id']), made)

    @decorators.idempotent_id('0b9f7d7e-5a0e-4c55-9a0e-7f3f2d4c8b11')
    def test_luks1_create_image(self):
        """LUKS version 1 made by qemu-img, uploaded as raw."""
        self.check_create_image('luks1')

    @decorators.idempotent_id('6c1a4e52-1f0b-4d8f-8a8e-2b7d0e9c4f22')
    def test_luks1_cryptsetup_create_image(self):
        """LUKS version 1 made by cryptsetup, uploaded as raw."""
        self.check_create_image('luks1_cryptsetup')

    @decorators.idempotent_id('7d2b5f63-2a1c-4e9a-9b9f-3c8e1fa05d23')
    def test_luks1_os_encrypt_properties_create_image(self):
        """LUKS version 1 with the os_encrypt_* properties."""
        self.check_create_image('luks1', OS_ENCRYPT)

    @decorators.idempotent_id('a3d2c8f4-9e61-4b1a-b7c5-5d0e8f1a6c33')
    def test_luks1_compressed_create_image(self):
        """LUKS version 1 in gzip, container_format compressed."""
        self.check_create_image('luks1_compressed')

    @decorators.idempotent_id('b81e6a07-4c2d-4f3b-a0d6-8e9f2b1c7a34')
    def test_luks2_compressed_create_image(self):
        """LUKS version 2 made by cryptsetup, in gzip."""
        self.check_create_image('luks2_cryptsetup_compressed')

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
