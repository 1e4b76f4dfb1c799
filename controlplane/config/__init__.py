"""The control plane's config language: Istio ServiceEntry, WorkloadEntry,
VirtualService and DestinationRule YAML (plus ``meshlib.dev/*`` annotations).

config = load_config("mesh.yaml")      # a file or a folder; ConfigError lists every issue
watcher = ConfigWatcher("mesh.yaml", on_config, on_error, last_good=config)
task = asyncio.create_task(watcher.run())   # cancel to stop
"""

from __future__ import annotations

from controlplane.config.errors import ConfigError, ConfigIssue
from controlplane.config.loader import load_config
from controlplane.config.watcher import ConfigWatcher

__all__ = ["ConfigError", "ConfigIssue", "ConfigWatcher", "load_config"]
