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


"""What correct wiring of glance_vsize into Glance is, and the pure reading
of Glance's configuration directory that finds out whether a deployment
has it.

This module does not import Glance: it reads glance-api.conf and
glance-image-import.conf with oslo.config (the opts it needs are declared
here as Glance declares them) and the paste file with configparser.
``glance-vsize-status upgrade check`` (glance_vsize.cmd.status) applies it.
The settings table (``SETTINGS``) and the paste names are here; the
import plugin's place is in :mod:`glance_vsize.glance.plugin_wiring`, the
paste pipelines in :mod:`glance_vsize.glance.paste_wiring`.
"""

import dataclasses
import enum
import os

from oslo_config import cfg

API_CONF = 'glance-api.conf'
IMPORT_CONF = 'glance-image-import.conf'
PASTE_INI = 'glance-api-paste.ini'
#: Glance's WSGI application reads its files from $OS_GLANCE_CONFIG_DIR,
#: by default /etc/glance (glance/common/wsgi_app.py).
CONFIG_DIR_ENV = 'OS_GLANCE_CONFIG_DIR'
DEFAULT_CONFIG_DIR = '/etc/glance'


class Level(enum.IntEnum):
    """The codes of oslo.upgradecheck: 0 success, 1 warning, 2 failure."""
    OK = 0
    WARNING = 1
    FAILURE = 2


@dataclasses.dataclass(frozen=True)
class Finding:
    """One thing a check found: where, what, and the edit that fixes it
    (``action`` says what to do with ``lines``, which are meant to be
    pasted into ``section`` of ``path`` as they are).
    """
    level: Level
    path: str
    section: str | None
    problem: str
    action: str | None = None
    lines: tuple[str, ...] = ()

    def render(self) -> str:
        where = self.path + (' [%s]' % self.section if self.section else '')
        text = '%s: %s' % (where, self.problem)
        if self.action:
            text += '\nEdit: %s:' % self.action
            text += ''.join('\n    ' + line for line in self.lines)
        return text


class WiringError(Exception):
    """The configuration cannot be read; ``finding`` says where."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.render())
        self.finding = finding


# -- Glance settings glance_vsize relies on ---------------------------------

@dataclasses.dataclass(frozen=True)
class Equals:
    """The option must have this value (Glance's default counts)."""
    value: object

    def ok(self, current) -> bool:
        return current == self.value

    def wanted(self, name: str, current) -> tuple[str, ...]:
        return ('%s = %s' % (name, self.value),)

    def describe(self) -> str:
        return 'must be %s' % (self.value,)


@dataclasses.dataclass(frozen=True)
class Includes:
    """A multi-valued option must name this value (one per line)."""
    item: str

    def ok(self, current) -> bool:
        return self.item in (current or [])

    def wanted(self, name: str, current) -> tuple[str, ...]:
        return tuple('%s = %s' % (name, v)
                     for v in list(current or []) + [self.item])

    def describe(self) -> str:
        return 'must include %s' % self.item


@dataclasses.dataclass(frozen=True)
class Excludes:
    """A multi-valued option must not name this value."""
    item: str

    def ok(self, current) -> bool:
        return self.item not in (current or [])

    def wanted(self, name: str, current) -> tuple[str, ...]:
        return tuple('%s = %s' % (name, v) for v in current or []
                     if v != self.item) or ('%s =' % name,)

    def describe(self) -> str:
        return 'must not include %s' % self.item


@dataclasses.dataclass(frozen=True)
class Setting:
    """A Glance option (declared as Glance or its library declares it) and
    what glance_vsize needs of it.
    """
    group: str
    opt: cfg.Opt
    expect: Equals | Includes | Excludes
    why: str
    level: Level = Level.FAILURE


#: Every Glance setting the integration relies on, one check each.  Since
#: glance_vsize answers through Glance's own format inspection (issue 11),
#: it needs Glance's default format check and no notification driver.
SETTINGS: tuple[Setting, ...] = (
    Setting('image_format',
            cfg.BoolOpt('require_image_format_match', default=True),
            Equals(True),
            "Glance's own format check (Glance's default) now uses "
            "glance_vsize's verdict: fixed VHD, ploop and qcow2 with "
            "extended L2 entries pass it; turning it off turns off a "
            "Glance safety check for nothing"),
    Setting('oslo_messaging_notifications',
            cfg.MultiStrOpt('driver', default=[], deprecated_opts=[
                cfg.DeprecatedOpt('notification_driver', group='DEFAULT')]),
            Excludes('glance_vsize'),
            "the glance_vsize notification driver is gone (Glance records "
            "glance_vsize's virtual_size itself); oslo.messaging cannot "
            "load it and logs so on every start",
            Level.WARNING),
)

# -- The paste filter ---------------------------------------------------------

FILTER_FACTORY = 'glance_vsize.glance.middleware:filter_factory'
#: What a [filter:NAME] section may say to be glance_vsize's filter.
FILTER_SPECS = {('paste.filter_factory', FILTER_FACTORY),
                ('use', 'egg:glance_vsize#vsize'),
                ('use', 'call:' + FILTER_FACTORY)}
FILTER_NAME = 'vsize'
#: The filter it must follow: Glance's ContextMiddleware (Keystone).
CONTEXT_FILTER = 'context'
#: The composite whose keys are Glance's pipelines, chosen by flavor.
PIPELINE_FACTORY = 'glance.api:pipeline_factory'
APP_NAME = 'glance-api'

GLANCE_OPTS = (
    ('paste_deploy', cfg.StrOpt('flavor')),
    ('paste_deploy', cfg.StrOpt('config_file')),
    ('image_import_opts', cfg.ListOpt(
        'image_import_plugins', item_type=cfg.types.String(quotes=True),
        bounds=True, default=[])),
    ('DEFAULT', cfg.ListOpt(
        'enabled_import_methods', item_type=cfg.types.String(
            choices=['glance-direct', 'web-download', 'copy-image',
                     'glance-download'], quotes=True),
        bounds=True, default=['glance-direct', 'web-download',
                              'copy-image'])),
)


class GlanceConfig:
    """Glance's configuration directory, read as glance-api reads it:
    glance-image-import.conf (when present), then glance-api.conf, the
    later file winning.
    """

    def __init__(self, config_dir: str) -> None:
        self.config_dir = config_dir
        self.api_conf = os.path.join(config_dir, API_CONF)
        self.import_conf = os.path.join(config_dir, IMPORT_CONF)
        self._conf: cfg.ConfigOpts | None = None
        self._sections: dict[str, dict] = {}

    @property
    def files(self) -> list[str]:
        files = [self.api_conf]
        if os.path.exists(self.import_conf):
            files.insert(0, self.import_conf)
        return files

    @property
    def conf(self) -> cfg.ConfigOpts:
        if self._conf is None:
            if not os.path.isfile(self.api_conf):
                raise WiringError(Finding(
                    Level.FAILURE, self.api_conf, None,
                    'not found: is %s Glance\'s configuration directory? '
                    '(--config-dir DIR)' % self.config_dir))
            conf = cfg.ConfigOpts()
            for group, opt in GLANCE_OPTS:
                conf.register_opt(opt, group=None if group == 'DEFAULT'
                                  else group)
            for setting in SETTINGS:
                conf.register_opt(setting.opt, group=setting.group)
            try:
                conf([], project=None, default_config_files=self.files,
                     default_config_dirs=[])
            except cfg.ConfigFileParseError as exc:
                raise WiringError(Finding(
                    Level.FAILURE, exc.config_file, None,
                    'cannot be parsed: %s' % exc.msg)) from None
            except cfg.Error as exc:  # e.g. permission denied
                raise WiringError(Finding(
                    Level.FAILURE, ', '.join(self.files), None,
                    'cannot be read: %s' % exc)) from None
            self._conf = conf
        return self._conf

    def sections(self, path: str) -> dict:
        """The sections of one file as oslo.config parses it."""
        if path not in self._sections:
            sections: dict = {}
            if os.path.isfile(path):
                cfg.ConfigParser(path, sections).parse()
            self._sections[path] = sections
        return self._sections[path]

    def where(self, group: str, name: str) -> str | None:
        """The last file that sets ``[group] name``, or None."""
        found = None
        for path in self.files:
            if name in self.sections(path).get(group, {}):
                found = path
        return found

    def value(self, group: str | None, name: str):
        """The option's value; a bad value raises WiringError naming the
        file that sets it.
        """
        try:
            if group in (None, 'DEFAULT'):
                return self.conf[name]
            return self.conf[group][name]
        except (cfg.ConfigFileValueError, ValueError) as exc:
            group = group or 'DEFAULT'
            raise WiringError(Finding(
                Level.FAILURE, self.where(group, name) or self.api_conf,
                group, 'invalid value of %s: %s' % (name, exc))) from None

    def flavor(self) -> str:
        return self.value('paste_deploy', 'flavor') or ''

    def paste_path(self) -> str:
        """The paste file glance-api loads ([paste_deploy] config_file,
        taken relative to the configuration directory).
        """
        path = self.value('paste_deploy', 'config_file') or PASTE_INI
        return os.path.join(self.config_dir, os.path.expanduser(path))


def check_setting(glance: GlanceConfig, setting: Setting) -> list[Finding]:
    name = setting.opt.name
    current = glance.value(setting.group, name)
    path = glance.where(setting.group, name)
    shown = ('[%s]' % ', '.join(current) if isinstance(current, list)
             else current)
    if setting.expect.ok(current):
        return [Finding(Level.OK, path or glance.api_conf, setting.group,
                        '%s = %s%s' % (name, shown, '' if path else
                                       " (Glance's default)"))]
    return [Finding(
        setting.level, path or glance.api_conf, setting.group,
        '%s is %s%s; it %s: %s' % (
            name, shown, '' if path else " (Glance's default)",
            setting.expect.describe(), setting.why),
        'in [%s] of %s, %s' % (setting.group, path or glance.api_conf,
                               'replace the %s lines with' % name if path
                               else 'add'),
        setting.expect.wanted(name, current))]


def check_options(glance: GlanceConfig) -> list[Finding]:
    """glance_vsize's own options load, validate, and loosen nothing."""
    from glance_vsize import conf as vsize_conf
    from glance_vsize import inspection
    from glance_vsize import registry
    conf, group = glance.conf, vsize_conf.GROUP
    try:
        vsize_conf.register_opts(conf)
    except (cfg.ConfigFileValueError, ValueError) as exc:
        # An unknown nonfatal_checks name: Glance would not load either.
        path = glance.where(group, 'nonfatal_checks') or glance.api_conf
        return [Finding(Level.FAILURE, path, group, str(exc))]
    findings = []
    for opt in vsize_conf.OPTS:
        try:
            conf[group][opt.dest]
        except (cfg.ConfigFileValueError, ValueError) as exc:
            path = glance.where(group, opt.name) or glance.api_conf
            findings.append(Finding(
                Level.FAILURE, path, group,
                'invalid value of %s: %s' % (opt.name, exc)))
    if findings:
        return findings
    options = conf[group]
    known = set(registry.disk_formats()) | inspection.GLANCE_DISK_FORMATS
    unknown = sorted(set(options.allowed_formats) - known)
    if unknown:
        path = glance.where(group, 'allowed_formats') or glance.api_conf
        findings.append(Finding(
            Level.WARNING, path, group,
            'allowed_formats names %s, which glance_vsize does not detect '
            '(it detects %s)' % (', '.join(unknown), ', '.join(sorted(known))),
            'in [%s] of %s, replace the allowed_formats line with'
            % (group, path), ('allowed_formats = %s' % ','.join(
                f for f in options.allowed_formats if f in known),)))
    if options.nonfatal_checks:
        path = glance.where(group, 'nonfatal_checks') or glance.api_conf
        findings.append(Finding(
            Level.WARNING, path, group,
            'nonfatal_checks = %s: images failing these checks reach Nova '
            'and Cinder' % ','.join(options.nonfatal_checks)))
    try:
        vsize_conf.policy(conf)
    except Exception as exc:
        findings.append(Finding(Level.FAILURE, glance.api_conf, group,
                                'the options do not make a policy: %s' % exc))
    return findings or [Finding(Level.OK, glance.api_conf, group,
                                'the options load and validate')]
