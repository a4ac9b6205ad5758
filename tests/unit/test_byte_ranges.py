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


"""When a range request's answer is used, and when the image is read
whole instead (a server that ignores ``Range``).
"""

import pytest

from glance_vsize.glance import byte_ranges


def test_header_names_the_inclusive_range():
    assert byte_ranges.header(0, 65536) == 'bytes=0-65535'
    assert byte_ranges.header(1 << 40, 1) == 'bytes=1099511627776-' \
        '1099511627776'


def test_a_206_for_the_range_asked_is_used():
    byte_ranges.check('obj', 206, 'bytes 65536-131071/3145728', 65536)


@pytest.mark.parametrize('status,content_range,message', [
    (200, None, 'obj answered a range request with the whole body'),
    (206, 'bytes 0-65535/3145728', 'obj answered a range request with '
     '206 bytes 0-65535/3145728'),
    (206, None, 'obj answered a range request with 206 None'),
    (203, 'bytes 65536-131071/3145728', 'obj answered a range request '
     'with 203'),
])
def test_any_other_answer_means_no_ranges(status, content_range, message):
    with pytest.raises(byte_ranges.NoRanges) as exc:
        byte_ranges.check('obj', status, content_range, 65536)
    assert str(exc.value).startswith(message)
