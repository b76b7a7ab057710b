"""Configuration: ``plugins.toml`` decoded with msgspec, secrets referenced and masked."""

from .loader import ConfigInvalid, ConfigIssue, LoadedConfig, convert_settings, load_config, masked
from .model import BusSettings, Config, HubSettings, InstanceEntry, PluginEntry
from .secrets import Secret

__all__ = [
    "BusSettings",
    "Config",
    "ConfigInvalid",
    "ConfigIssue",
    "HubSettings",
    "InstanceEntry",
    "LoadedConfig",
    "PluginEntry",
    "Secret",
    "convert_settings",
    "load_config",
    "masked",
]
