"""Configuration: ``plugins.toml`` decoded with msgspec, secrets referenced and masked."""

from .loader import ConfigInvalid, ConfigIssue, LoadedConfig, convert_settings, load_config, masked
from .model import ApiSettings, BusSettings, Config, HubSettings, InstanceEntry, PluginEntry
from .secrets import Secret

__all__ = [
    "ApiSettings",
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
