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

"""The per-release facts of glance_vsize/glance/releases.py that the
integration acts on, checked against the Glance and glance_store
installed here (tools/run-release-tests runs this in every release's
venv).
"""

import importlib.util

import pytest

from glance_vsize.glance import releases

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec('glance') is None
    or importlib.util.find_spec('glance_store') is None,
    reason='Glance is not installed here')


def test_the_installed_glance_is_a_supported_release():
    version = releases.installed_glance()
    assert releases.by_glance_version(version) is releases.running(), version


def test_location_uri_check_is_the_one_glance_has():
    # Glance 33 checks a new http location with validate_uri; before, it
    # has only web-download's validate_import_uri.
    from glance.common import utils
    check = releases.running().location_uri_check
    assert callable(getattr(utils, check, None)), check
    assert (check == 'validate_uri') == hasattr(utils, 'validate_uri')


def test_store_group_config_says_what_glance_store_has():
    import glance_store.driver
    assert releases.running().store_group_config == hasattr(
        glance_store.driver, 'BackendGroupConfiguration')
