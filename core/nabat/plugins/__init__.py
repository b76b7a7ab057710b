"""Plugin discovery and isolated hook calls."""

from .discovery import CORE_DISTRIBUTION, PluginInfo, discover
from .host import HookTimeout, PluginHost

__all__ = ["CORE_DISTRIBUTION", "HookTimeout", "PluginHost", "PluginInfo", "discover"]
