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

"""Edit ini files in place, as devstack's ``iniset`` does: a setting
replaces the section's uncommented line for the key, or goes right after
the section's header; a missing section is appended.  Comments, order
and every other line stay as they are, so a patched Glance sample keeps
its documentation."""

import re

_SECTION = re.compile(r'^\s*\[(?P<name>[^\]]+)\]\s*$')


def _key_re(key: str) -> re.Pattern:
    return re.compile(r'^\s*%s\s*=' % re.escape(key))


def iniset_text(text: str, section: str, key: str, value: str) -> str:
    """``text`` with ``key = value`` in ``[section]``."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith('\n'):
        lines[-1] += '\n'
    new = '%s = %s\n' % (key, value)
    header = None
    for i, line in enumerate(lines):
        m = _SECTION.match(line)
        if m:
            if header is not None:
                break           # past the end of the section
            if m.group('name') == section:
                header = i
            continue
        if header is not None and _key_re(key).match(line):
            lines[i] = new
            return ''.join(lines)
    if header is None:
        return ''.join(lines) + '\n[%s]\n%s' % (section, new)
    lines.insert(header + 1, new)
    return ''.join(lines)


def iniset(path: str, section: str, key: str, value) -> None:
    """Set ``key = value`` in ``[section]`` of the file at ``path``."""
    if isinstance(value, bool):
        value = 'True' if value else 'False'
    with open(path) as f:
        text = f.read()
    with open(path, 'w') as f:
        f.write(iniset_text(text, section, key, str(value)))


def iniset_many(path: str, settings: dict) -> None:
    """``settings``: {section: {key: value}}, set in that order."""
    for section, values in settings.items():
        for key, value in values.items():
            iniset(path, section, key, value)


def iniget(path: str, section: str, key: str):
    """The uncommented value of ``key`` in ``[section]``, or None."""
    current = None
    with open(path) as f:
        for line in f:
            m = _SECTION.match(line)
            if m:
                current = m.group('name')
            elif current == section and _key_re(key).match(line):
                return line.split('=', 1)[1].strip()
    return None
