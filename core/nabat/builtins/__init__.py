"""The core's own plugins. They are entry points of the ``nabat`` distribution like any other
plugin, and are enabled unless ``[plugins.<name>] enabled = false``."""
