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


"""``glance-vsize-status upgrade check [--config-dir DIR] [--json]``: is
glance_vsize wired into the Glance whose configuration is in DIR?

Built on oslo.upgradecheck, as ``glance-status``.  DIR defaults to
$OS_GLANCE_CONFIG_DIR, else /etc/glance, as glance-api's.  One check per
item of glance_vsize.glance.wiring; exit status 0 when all succeed, 1 when
the worst is a warning, 2 when one fails.  Each warning and failure names
the file, the section and the edit to make.
"""

import os
import sys
import textwrap
from typing import Any
import warnings

from oslo_config import cfg
from oslo_upgradecheck import upgradecheck

from glance_vsize.glance import paste_wiring
from glance_vsize.glance import plugin_wiring
from glance_vsize.glance import release_check
from glance_vsize.glance import releases
from glance_vsize.glance import wiring
from glance_vsize.glance.wiring import Finding
from glance_vsize.glance.wiring import Level

PROJECT = 'glance-vsize'


def _entry_point_installed(group: str, name: str) -> bool:
    from importlib import metadata
    return bool(metadata.entry_points(group=group, name=name))


def paste_loads(glance: wiring.GlanceConfig) -> list[Finding]:
    """Resolve, with paste.deploy's own loader, every section glance-api
    would load for the configured flavor: the application, the composite
    of pipelines, and every filter and application of the selected
    pipeline (importing their factories, as glance-api does).
    """
    from paste.deploy import loadwsgi
    path = glance.paste_path()
    if not os.path.isfile(path):
        return [Finding(Level.FAILURE, path, None, 'not found')]
    flavor = glance.flavor()
    name = wiring.APP_NAME + ('-' + flavor if flavor else '')
    try:
        with warnings.catch_warnings():
            # Glance's modules import eventlet, which warns it is deprecated.
            warnings.simplefilter('ignore')
            loaded = _load_pipelines(loadwsgi, path, name, flavor)
    except _LoadError as exc:
        return [Finding(Level.FAILURE, path, None,
                        'paste.deploy cannot load %s for %s: %s: %s'
                        % (exc.section, name, type(exc.error).__name__,
                           exc.error))]
    return [Finding(Level.OK, path, None, 'paste.deploy loads %s: %s'
                    % (name, '; '.join(loaded) or 'no pipeline'))]


class _LoadError(Exception):
    def __init__(self, section: str, error: Exception) -> None:
        super().__init__(section, error)
        self.section = section
        self.error = error


def _load_pipelines(loadwsgi: Any, path: str, name: str,
                    flavor: str) -> list[str]:
    section = 'app %s' % name
    loaded = []
    try:
        loader = loadwsgi.ConfigLoader(path)
        top = loader.get_context(loadwsgi.APP, name)
        for app in [v for k, v in top.local_conf.items()
                    if k.startswith('/')]:
            section = 'app %s' % app
            context = loader.get_context(loadwsgi.APP, app)
            factory = '%s:%s' % (getattr(context.object, '__module__', ''),
                                 getattr(context.object, '__name__', ''))
            if factory != wiring.PIPELINE_FACTORY:
                continue
            key = flavor or 'default'
            if key not in context.local_conf:
                raise LookupError('%s has no pipeline %r' % (app, key))
            tokens = context.local_conf[key].split()
            for token in tokens[:-1]:
                section = 'filter %s' % token
                loader.get_context(loadwsgi.FILTER, token)
            section = 'app %s' % tokens[-1]
            loader.get_context(loadwsgi.APP, tokens[-1])
            loaded.append('%s = %s' % (key, ' '.join(tokens)))
    except Exception as exc:
        raise _LoadError(section, exc) from None
    return loaded


class Checks(upgradecheck.UpgradeCommands):
    """The wiring checks, applied to the configuration directory the
    command line names.
    """

    display_title = 'glance_vsize wiring check'

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        super().__init__()
        self._conf = conf
        self._glance: wiring.GlanceConfig | None = None

    @property
    def glance(self) -> wiring.GlanceConfig:
        if self._glance is None:
            # oslo.config keeps every --config-dir given; the last counts.
            dirs = self._conf.config_dir or []
            if isinstance(dirs, str):
                dirs = [dirs]
            config_dir = (dirs[-1] if dirs else None
                          or os.environ.get(wiring.CONFIG_DIR_ENV, '').strip()
                          or wiring.DEFAULT_CONFIG_DIR)
            self._glance = wiring.GlanceConfig(config_dir)
        return self._glance

    def _result(self, check: Any, *args: Any) -> upgradecheck.Result:
        try:
            findings = check(self.glance, *args)
        except wiring.WiringError as exc:
            findings = [exc.finding]
        code = max((f.level for f in findings), default=Level.OK)
        return upgradecheck.Result(upgradecheck.Code(int(code)), '\n'.join(
            f.render() for f in findings) or None)

    def _get_details(self, result: upgradecheck.Result) -> str | None:
        # Keep the edits' lines (indented) and paths whole: they are meant
        # to be copied.
        if result.details is None:
            return None
        lines = []
        for line in result.details.split('\n'):
            if line.startswith('    '):
                lines.append(line)
            else:
                lines.extend(textwrap.wrap(line, 72, subsequent_indent='  ',
                                           break_long_words=False,
                                           break_on_hyphens=False))
        return '\n'.join(lines)

    def _check_paste_loads(self) -> upgradecheck.Result:
        return self._result(paste_loads)

    def _check_paste_filter(self) -> upgradecheck.Result:
        return self._result(paste_wiring.check_filter)

    def _check_import_plugin(self) -> upgradecheck.Result:
        plugin = plugin_wiring
        return self._result(plugin.check_import_plugin, _entry_point_installed(
            plugin.PLUGIN_ENTRY_POINTS, plugin.IMPORT_PLUGIN))

    def _check_setting(self, setting: wiring.Setting) -> upgradecheck.Result:
        return self._result(wiring.check_setting, setting)

    def _check_options(self) -> upgradecheck.Result:
        return self._result(wiring.check_options)

    def _check_release(self) -> upgradecheck.Result:
        return self._result(release_check.check_release,
                            releases.installed_glance())


# Outside the class body, whose names a generator expression cannot see.
Checks._upgrade_checks = (
    ('Glance release', Checks._check_release),
    ('Paste file loads', Checks._check_paste_loads),
    ('Paste filter after context', Checks._check_paste_filter),
    ('Import plugin glance_vsize', Checks._check_import_plugin),
) + tuple(
    ('Glance setting [%s] %s' % (s.group, s.opt.name),
     (Checks._check_setting, {'setting': s})) for s in wiring.SETTINGS
) + (
    ('Options [glance_vsize]', Checks._check_options),
)


def _config_dir_first(argv: list[str]) -> list[str]:
    """oslo.config's --config-dir is an option of the command, not of its
    ``upgrade`` subcommand: accept it after ``upgrade check`` too.
    """
    front, rest = [], []
    args = iter(argv)
    for arg in args:
        if arg == '--config-dir':
            front += [arg, next(args, '')]
        elif arg.startswith('--config-dir='):
            front.append(arg)
        else:
            rest.append(arg)
    return front + rest


def main(argv: list[str] | None = None) -> int:
    conf = cfg.ConfigOpts()
    argv = _config_dir_first(sys.argv[1:] if argv is None else argv)
    try:
        return upgradecheck.main(conf, PROJECT, Checks(conf), argv=argv,
                                 default_config_files=[])
    except cfg.ConfigDirNotFoundError as exc:
        print('ERROR: %s: not a directory; run with --config-dir DIR, '
              "Glance's configuration directory" % exc.config_dir,
              file=sys.stderr)
    except cfg.Error as exc:
        print('ERROR: %s' % exc, file=sys.stderr)
    return int(upgradecheck.Code.FAILURE)


if __name__ == '__main__':
    sys.exit(main())
