"""Finding plugins (entry-point group ``baosong.plugins``) and asking the right one for a report type."""

from __future__ import annotations

import functools
import logging
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy

from core import hookspecs
from core.errors import UnknownReportType
from core.hook_types import (
    AdminPages,
    CodeDictionary,
    ProbeResult,
    Regulator,
    ReportType,
    Sandbox,
    UploadAction,
)

ENTRY_POINT_GROUP = "baosong.plugins"
LOAD_ERRORS: dict[str, str] = {}  # entry-point name -> why it failed to load (shown by `baosong plugins`)
log = logging.getLogger("baosong.plugins")
DEFAULT_PLUGINS = ("core.http",)  # the core's own hook implementations (default ``post``)


class Registry:
    """The plugin manager plus what the plugins declared, indexed by name."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self.report_types: dict[str, ReportType] = {}
        self.regulators: dict[str, Regulator] = {}
        self.sandboxes: dict[str, Sandbox] = {}
        self.dictionaries: dict[str, CodeDictionary] = {}
        self._owner: dict[str, object] = {}
        self._regulator_owner: dict[str, object] = {}
        self._callers: dict[tuple[str, str], Any] = {}
        for plugin in pm.get_plugins():
            impl = getattr(plugin, "register_regulators", None)
            for regulator in (impl() if impl else None) or []:
                self.regulators[regulator.name] = regulator
                self._regulator_owner[regulator.name] = plugin
            impl = getattr(plugin, "register_sandboxes", None)
            for sandbox in (impl() if impl else None) or []:
                self.sandboxes[sandbox.name] = sandbox
            impl = getattr(plugin, "register_report_types", None)
            for report_type in (impl() if impl else None) or []:
                if report_type.name in self.report_types:
                    raise ValueError(f"report type {report_type.name} is declared by two plugins")
                self.report_types[report_type.name] = report_type
                self._owner[report_type.name] = plugin
            impl = getattr(plugin, "register_dictionaries", None)
            for dictionary in (impl() if impl else None) or []:
                if dictionary.name in self.dictionaries:
                    raise ValueError(f"code dictionary {dictionary.name} is declared by two plugins")
                self.dictionaries[dictionary.name] = dictionary

    def report_type(self, name: str) -> ReportType:
        try:
            return self.report_types[name]
        except KeyError:
            raise UnknownReportType(f"未知的报表类型 {name}（没有插件声明它）") from None

    def plugin_name(self, report_type: str) -> str:
        return self.pm.get_name(self._owner[report_type]) or "?"

    def hook(self, report_type: str, name: str):
        """The hook caller for one report type: only its plugin (and the core defaults) answer."""
        key = (report_type, name)
        if key not in self._callers:
            self.report_type(report_type)
            owner = self._owner[report_type]
            others = [p for p in self.pm.get_plugins() if p is not owner and not _is_core_default(self.pm, p)]
            self._callers[key] = self.pm.subset_hook_caller(name, remove_plugins=others)
        return self._callers[key]

    def _only(self, plugin: object, name: str):
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        return self.pm.subset_hook_caller(name, remove_plugins=others)

    def upload_actions(self, upload: Any) -> list[UploadAction]:
        """The actions the plugin owning ``upload.report_type`` offers for this upload."""
        owner = self._owner.get(upload.report_type)
        if owner is None:
            return []
        return [action for found in self._only(owner, "upload_actions")(upload=upload) for action in found or []]

    def has_probe(self, regulator: str) -> bool:
        owner = self._regulator_owner.get(regulator)
        return owner is not None and bool(self._only(owner, "test_connection").get_hookimpls())

    def test_connection(self, regulator: str, settings: Any) -> ProbeResult | None:
        """Ask the plugin that declared ``regulator`` to probe it (None: it has no probe)."""
        owner = self._regulator_owner.get(regulator)
        if owner is None:
            return None
        return self._only(owner, "test_connection")(regulator=self.regulators[regulator], settings=settings)

    def regulator_status(self, regulator: str, settings: Any) -> Any:
        """The declaring plugin's ``regulator_status`` (None: nothing to say, or the plugin failed to say)."""
        owner = self._regulator_owner.get(regulator)
        if owner is None:
            return None
        try:
            return self._only(owner, "regulator_status")(regulator=self.regulators[regulator], settings=settings)
        except Exception:  # a status a plugin cannot compute must not take the dashboard down
            log.exception("regulator_status of %s failed", regulator)
            return None

    def admin_pages(self) -> list[tuple[str, AdminPages]]:
        """(plugin name, pages) from every plugin's ``register_blueprints``."""
        found = []
        for plugin in self.pm.get_plugins():
            impl = getattr(plugin, "register_blueprints", None)
            for pages in (impl() if impl else None) or []:
                found.append((self.pm.get_name(plugin) or "?", pages))
        return found

    def audit_action_labels(self) -> dict[str, str]:
        """Every plugin's names for its audit actions (hook ``register_audit_actions``)."""
        labels: dict[str, str] = {}
        for found in self.pm.hook.register_audit_actions():
            labels.update(found or {})
        return labels

    def migration_locations(self) -> list[str]:
        return [str(location) for location in self.pm.hook.migrations_location() if location]

    def seed_demo_hospital(self, connection: Any, start: Any, end: Any) -> dict[str, int]:
        counts: dict[str, int] = {}
        for added in self.pm.hook.seed_demo_hospital(connection=connection, start=start, end=end):
            counts.update(added or {})
        return counts

    def mapped_dictionaries(self) -> list[CodeDictionary]:
        """Dictionaries whose local codes the hospital maps (the admin's mapping page serves each)."""
        return [d for _, d in sorted(self.dictionaries.items()) if d.needs_mapping]

    def listing(self) -> list[tuple[str, list[ReportType]]]:
        by_plugin: dict[str, list[ReportType]] = {}
        for name, report_type in sorted(self.report_types.items()):
            by_plugin.setdefault(self.plugin_name(name), []).append(report_type)
        return sorted(by_plugin.items())


def _is_core_default(pm: pluggy.PluginManager, plugin: object) -> bool:
    return pm.get_name(plugin) in DEFAULT_PLUGINS


def make_plugin_manager(extra: list[ModuleType | object] | None = None, *, entry_points_too: bool = True):
    pm = pluggy.PluginManager("baosong")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        module = __import__(name, fromlist=["*"])
        pm.register(module, name=name)
    if entry_points_too:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if pm.get_plugin(ep.name) is None and ep.name not in LOAD_ERRORS:
                try:
                    pm.register(ep.load(), name=ep.name)
                except Exception as exc:  # one broken plugin must not take the platform down
                    LOAD_ERRORS[ep.name] = f"{type(exc).__name__}: {exc}"
                    log.error("plugin %s failed to load: %s", ep.name, LOAD_ERRORS[ep.name])
    for plugin in [*(extra or []), *_plugins_from_environment()]:
        pm.register(plugin)
    return pm


def _plugins_from_environment() -> list[object]:
    """``BAOSONG_EXTRA_PLUGINS=module:attr,...``: plugins for a process started by a test or a
    developer trying a plugin without packaging it (an attr that is a class is instantiated)."""
    import importlib
    import os

    found = []
    for spec in filter(None, os.environ.get("BAOSONG_EXTRA_PLUGINS", "").split(",")):
        module_name, _, attr = spec.partition(":")
        target = importlib.import_module(module_name)
        if attr:
            target = getattr(target, attr)
            target = target() if isinstance(target, type) else target
        found.append(target)
    return found


@functools.cache
def _default_registry() -> Registry:
    return Registry(make_plugin_manager())


_override: Registry | None = None


def registry() -> Registry:
    """The process-wide registry (tests may install their own with ``use_registry``)."""
    return _override or _default_registry()


def use_registry(reg: Registry | None) -> None:
    global _override
    _override = reg
