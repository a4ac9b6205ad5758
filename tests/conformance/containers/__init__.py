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


"""Containers in both modes: what the container tests share."""

from tests import helpers


def all_modes(path, container_format, disk_format=None, policy=None):
    """Yield ``(mode, Inspection)``: seekable, then every chunk size."""
    return helpers.all_modes(path, disk_format, policy, container_format)


def assert_inner(path, container_format, inner_path, disk_format,
                 policy=None):
    """Every mode finds the image at ``inner_path`` (as qemu-img sizes
    it), with and without the declared disk_format; returns a verdict.
    """
    info = helpers.qemu_info(inner_path, disk_format)
    assert info is not None
    for declared in (disk_format, None):
        for mode, result in all_modes(path, container_format, declared,
                                      policy):
            where = '%s [%s, declared %s]' % (path, mode, declared)
            assert result.failures == {}, where + ': ' + result.describe()
            assert result.safe, where
            assert result.format == disk_format, where
            assert result.virtual_size == info['virtual-size'], where
            assert result.details['container'] == container_format
    return result


def assert_refused(path, container_format, check, disk_format=None,
                   policy=None, text=None):
    """Every mode refuses, naming ``check`` (and ``text`` in its reason)."""
    for mode, result in all_modes(path, container_format, disk_format,
                                  policy):
        where = '%s [%s]: %s' % (path, mode, result.describe())
        assert not result.safe, where
        assert check in result.failures, where
        if text is not None:
            assert text in result.failures[check], where
    return result
