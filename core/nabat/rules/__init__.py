"""Rules: declarative routes from ``[[rules]]`` — when an event matches, alert, notify, open an
incident or forward it. :mod:`.model` is the configuration (imported by the config loader, so
kept free of the hub), :mod:`.engine` matches and acts."""
