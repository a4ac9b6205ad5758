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


"""Glance image import plugin: inspect the staged image before it is stored.

Enabled in glance-image-import.conf::

    [image_import_opts]
    image_import_plugins = [glance_vsize]

Glance runs import plugins after the data is staged (glance-direct) or
downloaded (web-download), and before ``_ImportToStore`` copies it to the
stores; it skips them for copy-image, which keeps the value the image
already has.  The task inspects the staged file in seekable mode, sets
``virtual_size`` through the import action wrapper, and fails the import on
an unsafe or mismatched image.  Its revert puts the image back to
``queued``, marks the stores failed and removes the staged file, so that
nothing is left behind and the image does not stay ``importing``.  When a
later task (the store upload) fails a glance-direct import, Glance's own
reverts leave the image ``importing`` with its staged data, stuck; the
revert then requeues the image and removes the staged file as well.

Images whose container_format is ``ova`` or ``compressed`` are inspected
inside (streaming through the staged file).  Glance's ``image_decompression``
plugin replaces staged gzip, zip and LHA data (in any container but
``compressed``) by what it extracts, and sets nothing but ``size``: list it
before ``glance_vsize``, which then inspects the extracted image.  Listed
after, this task inspects gzip data in a bare container through gzip (what
the plugin will store) and refuses zip and LHA archives, whose content it
cannot see before the plugin runs.

Glance's own store upload then decides ``virtual_size`` again in
``set_data``, on the pass that copies the staged data to the store: loading
this plugin puts :mod:`glance_vsize.glance.format_inspector` in place of
oslo.utils' inspector there (:mod:`glance_vsize.glance.install`), so that
pass is inspected by the same engine and records the same value.  When the
import fails after this task, its revert gives the image back the
null virtual_size it had before, as Glance alone leaves it.
"""

import logging
import os

from glance.common import exception
from oslo_config import cfg
from taskflow.patterns import linear_flow as lf
from taskflow import task
from taskflow.types import failure

import glance_vsize
from glance_vsize import conf as vsize_conf
from glance_vsize.glance import common
from glance_vsize.glance import install

install.install()

LOG = logging.getLogger(__name__)


def _local_path(file_path):
    return file_path[len('file://'):] if file_path.startswith('file://') \
        else file_path


class _InspectStagedImage(task.Task):
    """Inspect the staged file; set virtual_size or fail the import."""

    def __init__(self, task_id, task_type, image_id, action_wrapper,
                 stores, import_method=None, conf=cfg.CONF):
        self.task_id = task_id
        self.import_method = import_method
        self.image_id = image_id
        self.action_wrapper = action_wrapper
        self.stores = stores
        self.conf = conf
        self._set = False
        super().__init__(name='%s-VsizeInspect-%s' % (task_type, task_id))

    def execute(self, file_path):
        with self.action_wrapper as action:
            disk_format = action.image_disk_format
            container_format = action.image_container_format
        if container_format not in common.INSPECTED_CONTAINERS:
            LOG.debug('Image %s: container_format %s is not inspected',
                      self.image_id, container_format)
            return
        path = _local_path(file_path)
        if common.decompressed_later(self.conf, after=PLUGIN_NAME):
            container_format = self._as_decompressed(path, container_format)
        result = glance_vsize.inspect_file(path, disk_format,
                                           vsize_conf.policy(self.conf),
                                           container_format=container_format)
        result.details.setdefault('declared', disk_format)
        if not result.safe:
            message = common.refusal_message(self.image_id, result)
            LOG.warning('%s', message)
            raise exception.UploadException(message)
        LOG.info('Image %s: virtual_size %s (%s)', self.image_id,
                 result.virtual_size, result.describe())
        with self.action_wrapper as action:
            action.set_image_attribute(virtual_size=result.virtual_size)
        self._set = True

    def _as_decompressed(self, path, container_format):
        """image_decompression runs after this task (it is listed after
        glance_vsize): inspect what it will leave staged.
        """
        with open(path, 'rb') as f:
            head = f.read(common.HEAD_SIZE)
        staged = common.staged_container(container_format, head)
        if staged is None:
            message = ('Image %s refused by glance_vsize: image_decompression '
                       'will extract an archive after glance_vsize inspects '
                       'the image; list image_decompression before '
                       'glance_vsize in image_import_plugins' % self.image_id)
            LOG.warning('%s', message)
            raise exception.UploadException(message)
        return staged

    def revert(self, result, file_path=None, **kwargs):
        # file_path is named: taskflow hands revert only the arguments its
        # signature names (not **kwargs), so without it the staged file
        # was never removed.
        self._restore_virtual_size()
        if self.import_method in _DOWNLOADING_METHODS:
            # The download task before us reverts after us: it requeues
            # the image, fails the stores and deletes what it downloaded
            # (requeueing twice would fail the revert).
            return
        if not isinstance(result, failure.Failure):
            self._after_later_failure(file_path)
            return
        with self.action_wrapper as action:
            action.set_image_attribute(status='queued')
            if self.stores:
                action.remove_importing_stores(self.stores)
                action.add_failed_stores(self.stores)
        self._unstage(file_path)

    def _restore_virtual_size(self):
        """The import failed after this task set virtual_size: reset it to
        null, as Glance alone leaves it (an image is imported from
        ``queued`` or ``uploading``, which have no virtual_size).
        """
        if not self._set:
            return
        try:
            with self.action_wrapper as action:
                action.set_image_attribute(virtual_size=None)
            self._set = False
        except Exception as exc:
            LOG.warning('Image %s: import failed; its virtual_size could '
                        'not be reset: %s', self.image_id, exc)

    def _after_later_failure(self, file_path):
        """A task after ours failed, typically the store upload (a full or
        failing store).  Glance 33's own reverts then leave a glance-direct
        image ``importing`` with its staged data, which no API call can
        import again nor stage anew: put it back to ``queued`` and remove
        the staged data, as for our own refusal, so that it can be
        uploaded again.  Nothing is done when Glance restored the image
        itself (when not every store had to succeed) or when another task
        holds the image's import lock.
        """
        try:
            with self.action_wrapper as action:
                if action.image_status != 'importing':
                    return
                action.set_image_attribute(status='queued')
                if self.stores:
                    action.remove_importing_stores(self.stores)
        except Exception as exc:
            LOG.warning('Image %s: import failed after glance_vsize '
                        'inspected it; not requeued: %s', self.image_id, exc)
            return
        LOG.info('Image %s: import failed after glance_vsize inspected it; '
                 'image requeued, staged data removed', self.image_id)
        self._unstage(file_path)

    def _unstage(self, file_path):
        if not file_path:
            return
        try:
            os.unlink(_local_path(file_path))
        except FileNotFoundError:
            pass
        except OSError as exc:
            LOG.error('Could not remove staged data of image %s: %s',
                      self.image_id, exc)


#: This plugin's name in image_import_plugins (its entry point).
PLUGIN_NAME = 'glance_vsize'

#: Import methods whose internal download task restores the image itself.
_DOWNLOADING_METHODS = ('web-download', 'glance-download')


def get_flow(**kwargs):
    """Entry point ``glance.image_import.plugins``: ``glance_vsize``.

    :param task_id: the import task's ID.
    :param task_type: the task's type.
    :param image_id: the image being imported.
    :param action_wrapper: the flow's ``ImportActionWrapper``.
    :param backend: the stores the image is imported to.
    """
    task_type = kwargs.get('task_type')
    import_req = kwargs.get('import_req') or {}
    method = (import_req.get('method') or {}).get('name')
    return lf.Flow(task_type).add(_InspectStagedImage(
        kwargs.get('task_id'), task_type, kwargs.get('image_id'),
        kwargs.get('action_wrapper'), kwargs.get('backend') or [], method))
