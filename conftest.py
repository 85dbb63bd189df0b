"""From a checkout (package not installed) pytest does not see the ``pytest11`` entry point, so
the plugin is loaded here; when the package is installed, its entry point loads it instead."""

from importlib.metadata import entry_points

_installed = any(ep.name == "torchcheck_mixin" for ep in entry_points(group="pytest11"))
pytest_plugins = [] if _installed else ["torchcheck_mixin.pytest_plugin"]
