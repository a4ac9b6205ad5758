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

"""What the ranged readers of object stores share: the answer to a
``Range: bytes=A-B`` request (RFC 9110 14.2) checked before its body is
read, so that a server that ignores the header is read as a stream
instead, never held in memory.
"""

import typing


class NoRanges(Exception):
    """The server does not serve byte ranges."""


def header(offset: int, length: int) -> str:
    """The ``Range`` header for ``length`` bytes at ``offset``."""
    return 'bytes=%d-%d' % (offset, offset + length - 1)


def check(what: str, status: int, content_range: typing.Optional[str],
          offset: int) -> None:
    """Raise :class:`NoRanges` unless the answer is a 206 whose
    ``Content-Range`` starts at ``offset``.

    :param what: the object, for the message (no credentials in it).
    """
    if status == 200:
        raise NoRanges('%s answered a range request with the whole body'
                       % what)
    if status != 206 or not (content_range or '').startswith(
            'bytes %d-' % offset):
        raise NoRanges('%s answered a range request with %d %s'
                       % (what, status, content_range))
