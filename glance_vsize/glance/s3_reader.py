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

"""Ranged reads of an S3 location (``s3://``, ``s3+http://``,
``s3+https://``).

glance_store's s3 driver refuses ``get(offset=...)`` (it lacks
``READ_RANDOM``), so this asks for each region with
``get_object(Bucket, Key, Range='bytes=A-B')`` on the client the driver
itself makes for the location (``Store._operation_set``: the location's
access and secret keys, ``s3_store_host``, ``s3_store_region_name``,
``s3_store_bucket_url_format``, ``s3_store_cacert``, TLS for
``s3+https``, the checksum settings), the client its own ``get`` uses.
An answer that is not a 206 for that range raises
:class:`~glance_vsize.glance.byte_ranges.NoRanges` before its body is
read.
"""

import contextlib
import typing

from glance_vsize.glance import byte_ranges
from glance_vsize import ranged


def is_s3(store) -> bool:
    """Whether ``store`` is glance_store's s3 driver."""
    return ('s3' in store.get_schemes()
            and hasattr(store, '_operation_set'))


@contextlib.contextmanager
def open_object(store, loc) -> typing.Iterator[ranged.ReadAt]:
    """``read_at`` of the S3 object at ``loc`` (a glance_store
    ``Location``), valid inside the ``with`` block.

    :raises: ``glance_store.exceptions.NotFound`` when the bucket or the
        object does not exist; botocore's errors otherwise.
    """
    from botocore import exceptions as boto_exceptions
    from glance_store import exceptions

    spec = loc.store_location
    client, bucket, key = store._operation_set(spec)
    what = 's3 object %s/%s at %s' % (bucket, key, spec.s3serviceurl)

    def read_at(offset: int, length: int) -> bytes:
        try:
            resp = client.get_object(
                Bucket=bucket, Key=key,
                Range=byte_ranges.header(offset, length))
        except boto_exceptions.ClientError as exc:
            error = exc.response.get('Error', {})
            status = exc.response.get('ResponseMetadata', {}).get(
                'HTTPStatusCode')
            if error.get('Code') == 'InvalidRange' or status == 416:
                return b''   # at or past the end
            if error.get('Code') in ('NoSuchKey', 'NoSuchBucket') or \
                    status == 404:
                raise exceptions.NotFound('%s does not exist' % what)
            raise
        body = resp['Body']
        with contextlib.closing(body):
            byte_ranges.check(
                what, resp['ResponseMetadata']['HTTPStatusCode'],
                resp.get('ContentRange'), offset)
            return body.read(length)

    try:
        yield read_at
    finally:
        close = getattr(client, 'close', None)
        if close is not None:
            close()
