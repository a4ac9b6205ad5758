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


"""Fixtures shared by the functional tests."""

import pytest

from tests import imagegen


@pytest.fixture(scope='session')
def corpus(tmp_path_factory):
    """``(outdir, entries)``: the generator's images (no 3 TiB ones), made
    once for every functional test module; read-only for the tests."""
    outdir = str(tmp_path_factory.mktemp('images'))
    return outdir, imagegen.build(outdir, huge=False)
