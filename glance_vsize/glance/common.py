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


"""What both Glance hooks share: which images are inspected, and how a
refusal is worded."""

#: Container formats whose payload is the disk image itself.  Non-bare
#: containers (ova, compressed, docker) are not inspected as disks.
BARE_CONTAINERS = frozenset({'bare', 'ami', 'aki', 'ari'})


def inspectable(image):
    return (image.container_format in BARE_CONTAINERS
            and image.disk_format is not None)


def refusal_message(image_id, inspection):
    """The message a user reads when an upload or import is refused."""
    return ('Image %s refused by glance_vsize (disk_format %s): %s'
            % (image_id, inspection.details.get('declared') or '?',
               inspection.describe()))
