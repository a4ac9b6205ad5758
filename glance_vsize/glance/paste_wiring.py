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


"""Where glance_vsize's paste filter must sit in glance-api-paste.ini, read
with configparser alone (no Glance, no paste.deploy).

The rule: a ``[filter:NAME]`` section uses glance_vsize's filter factory,
and NAME comes right after ``context`` in every pipeline that has
``context``; the pipelines are the keys of the composite built by
``glance.api:pipeline_factory`` (``[composite:api]``), which
``[paste_deploy] flavor`` selects (``default`` when unset), and the older
``[pipeline:glance-api-FLAVOR]`` sections.
"""

import configparser
import dataclasses
import os
import typing

from glance_vsize.glance import wiring
from glance_vsize.glance.wiring import Finding
from glance_vsize.glance.wiring import Level


@dataclasses.dataclass(frozen=True)
class Pipeline:
    section: str
    key: str
    tokens: tuple[str, ...]
    selected: bool


def read_paste(path: str) -> configparser.RawConfigParser:
    """The paste file, parsed as paste.deploy parses it (strictly, keys
    keeping their case).
    """
    parser = configparser.RawConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with open(path, encoding='utf-8') as f:
            parser.read_file(f, path)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise wiring.WiringError(Finding(
            Level.FAILURE, path, None, 'cannot be read: %s' % exc)) from None
    return parser


def _kind(section: str) -> tuple[str, str]:
    kind, _, name = section.partition(':')
    return kind.strip(), name.strip()


def vsize_filters(parser: configparser.RawConfigParser) -> list[str]:
    """Names of the filter sections that are glance_vsize's filter."""
    names = []
    for section in parser.sections():
        kind, name = _kind(section)
        if kind == 'filter' and any(
                parser.get(section, key, fallback='').strip() == value
                for key, value in wiring.FILTER_SPECS):
            names.append(name)
    return names


def pipelines(parser: configparser.RawConfigParser,
              flavor: str) -> list[Pipeline]:
    """Every pipeline of the file, and whether ``flavor`` selects it."""
    found = []
    key_wanted = flavor or 'default'
    app_wanted = wiring.APP_NAME + ('-' + flavor if flavor else '')
    for section in parser.sections():
        kind, name = _kind(section)
        factory = parser.get(section, 'paste.composite_factory',
                             fallback='').strip()
        if kind == 'composite' and factory == wiring.PIPELINE_FACTORY:
            for key, value in parser.items(section):
                if key.startswith('paste.') or key == 'use':
                    continue
                found.append(Pipeline(section, key, tuple(value.split()),
                                      key == key_wanted))
        elif kind == 'pipeline' and parser.has_option(section, 'pipeline'):
            found.append(Pipeline(
                section, 'pipeline',
                tuple(parser.get(section, 'pipeline').split()),
                name == app_wanted))
    return found


def _flavor_edit(glance: wiring.GlanceConfig, keys: list[str]) -> dict:
    path = glance.where('paste_deploy', 'flavor') or glance.api_conf
    flavor = 'keystone' if 'keystone' in keys else (keys or ['?'])[0]
    return dict(action='in [paste_deploy] of %s, set' % path,
                lines=('flavor = %s' % flavor,))


def check_filter(glance: wiring.GlanceConfig) -> list[Finding]:
    path = glance.paste_path()
    if not os.path.isfile(path):
        return [Finding(Level.FAILURE, path, None,
                        'not found: glance-api loads its pipelines from this '
                        'file ([paste_deploy] config_file, default %s)'
                        % wiring.PASTE_INI)]
    parser = read_paste(path)
    flavor = glance.flavor()
    chosen = ('[paste_deploy] flavor = %s' % flavor if flavor
              else '[paste_deploy] flavor (unset)')
    names = vsize_filters(parser)
    name = names[0] if names else wiring.FILTER_NAME
    findings = []
    if not names:
        findings.append(Finding(
            Level.FAILURE, path, 'filter:%s' % name,
            'no filter section uses %s' % wiring.FILTER_FACTORY,
            'add to %s' % path,
            ('[filter:%s]' % name,
             'paste.filter_factory = %s' % wiring.FILTER_FACTORY)))
    found = pipelines(parser, flavor)
    if not any(p.selected for p in found):
        keys = [p.key for p in found]
        findings.append(Finding(
            Level.FAILURE, path, found[0].section if found else None,
            '%s selects no pipeline of this file (pipelines: %s)'
            % (chosen, ', '.join(keys) or 'none'), **_flavor_edit(glance,
                                                                  keys)))
    for p in found:
        label = p.key if p.key != 'pipeline' else p.section
        if wiring.CONTEXT_FILTER not in p.tokens:
            if p.selected:
                findings.append(Finding(
                    Level.WARNING, path, p.section,
                    '%s selects %s, which has no %s filter (no Keystone): '
                    'glance_vsize is checked only in pipelines with it'
                    % (chosen, label, wiring.CONTEXT_FILTER),
                    **_flavor_edit(glance, [q.key for q in found
                                            if wiring.CONTEXT_FILTER
                                            in q.tokens])))
            continue
        findings.append(_check_pipeline(path, p, names, name, chosen))
    return findings


def _check_pipeline(path: str, p: Pipeline, names: list[str], name: str,
                    chosen: str) -> Finding:
    ctx = p.tokens.index(wiring.CONTEXT_FILTER)
    at = [i for i, token in enumerate(p.tokens) if token in names]
    fixed = [t for t in p.tokens if t not in names]
    fixed.insert(fixed.index(wiring.CONTEXT_FILTER) + 1, name)
    edit: dict[str, typing.Any] = dict(
        action='in [%s] of %s, replace the %s line with'
        % (p.section, path, p.key),
        lines=('%s = %s' % (p.key, ' '.join(fixed)),))
    label = '%s%s' % (p.section if p.key == 'pipeline' else p.key,
                      ' (selected by %s)' % chosen if p.selected else '')
    if not at:
        if p.selected:
            return Finding(Level.FAILURE, path, p.section,
                           '%s has no %s filter: uploads are not inspected'
                           % (label, name), **edit)
        return Finding(Level.WARNING, path, p.section,
                       '%s has no %s filter: uploads would not be inspected '
                       'with this flavor' % (label, name), **edit)
    if min(at) < ctx:
        return Finding(Level.FAILURE, path, p.section,
                       '%s has %s before %s: it gets no request context and '
                       'inspects nothing' % (label, p.tokens[min(at)],
                                             wiring.CONTEXT_FILTER), **edit)
    if len(at) > 1:
        return Finding(Level.WARNING, path, p.section,
                       '%s has the filter %d times: every upload is '
                       'inspected more than once' % (label, len(at)), **edit)
    if at[0] != ctx + 1:
        return Finding(Level.WARNING, path, p.section,
                       '%s has %s after %s, but not right after it'
                       % (label, p.tokens[at[0]], wiring.CONTEXT_FILTER),
                       **edit)
    return Finding(Level.OK, path, p.section, '%s: %s right after %s'
                   % (label, name, wiring.CONTEXT_FILTER))
