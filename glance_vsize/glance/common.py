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


"""What both Glance hooks share: which images are inspected, how Glance's
``image_decompression`` import plugin changes that, and how a refusal is
worded.
"""

import logging

from oslo_config import cfg

from glance_vsize import containers
from glance_vsize import inspection

LOG = logging.getLogger(__name__)

#: Container formats whose payload is the disk image itself.
BARE_CONTAINERS = inspection.BARE_CONTAINERS - {None}

#: Container formats inspected: the bare ones and those the engine reads
#: inside (ova, compressed).  Glance's own inspection skips all but bare,
#: so for these glance_vsize's virtual_size is the only one.  docker and
#: ovf (a descriptor alone) are not disk images.
INSPECTED_CONTAINERS = frozenset(containers.CONTAINER_FORMATS)

#: Glance's image_decompression import plugin
#: (glance/async_/flows/plugins/image_decompression.py, MAGIC_NUMBERS):
#: the staged data it replaces by what it extracts, by magic and offset.
#: It leaves container_format 'compressed' alone, and sets no other
#: attribute than ``size``.
DECOMPRESSION_PLUGIN = 'image_decompression'
DECOMPRESSION_MAGIC = (('gzip', 0, b'\x1f\x8b\x08'),
                       ('zip', 0, b'PK\x03\x04'),
                       ('lha', 2, b'-lh'))
HEAD_SIZE = max(offset + len(magic) for _, offset, magic in
                DECOMPRESSION_MAGIC)


def inspectable(image):
    return (image.container_format in INSPECTED_CONTAINERS
            and image.disk_format is not None)


def import_plugins(conf=cfg.CONF):
    """``[image_import_opts] image_import_plugins``, in order."""
    try:
        return list(conf.image_import_opts.image_import_plugins)
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError, AttributeError):
        pass
    try:
        # Glance registers the option where the import flow is defined.
        from glance.async_.flows import api_image_import  # noqa: F401
        return list(conf.image_import_opts.image_import_plugins)
    except Exception as exc:
        LOG.debug('No image_import_plugins option: %s', exc)
        return []


def decompressed_later(conf=cfg.CONF, after=None):
    """Whether ``image_decompression`` runs on imports (after the plugin
    named ``after``, when given).
    """
    plugins = import_plugins(conf)
    if DECOMPRESSION_PLUGIN not in plugins:
        return False
    return after is None or after not in plugins or \
        plugins.index(DECOMPRESSION_PLUGIN) > plugins.index(after)


def staged_container(container_format, head):
    """The container_format to inspect data that starts with ``head`` as,
    when ``image_decompression`` will replace it by what it extracts
    before the image is stored; ``None`` when that cannot be inspected
    before it runs.

    * ``compressed``: left alone by image_decompression; inspected inside.
    * gzip data in a bare container: image_decompression stores the image
      inside, so it is inspected through gzip as ``compressed`` (which
      also refuses a gzip bomb before image_decompression expands it).
    * zip or LHA data, or gzip data in an ova container: ``None``.
    * anything else: unchanged.
    """
    if container_format == 'compressed':
        return container_format
    kind = next((name for name, offset, magic in DECOMPRESSION_MAGIC
                 if head.startswith(magic, offset)), None)
    if kind is None:
        return container_format
    if kind == 'gzip' and container_format in BARE_CONTAINERS:
        return 'compressed'
    return None


def refusal_message(image_id, inspection):
    """The message a user reads when an upload or import is refused."""
    container = inspection.details.get('container')
    return ('Image %s refused by glance_vsize (disk_format %s%s): %s'
            % (image_id, inspection.details.get('declared') or '?',
               ', container_format %s' % container if container else '',
               inspection.describe()))
