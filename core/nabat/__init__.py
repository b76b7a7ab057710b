"""Nabat — an open-source integration hub for regional public-safety systems.

The public surface for plugin authors is ``nabat.events``, ``nabat.interfaces``,
``nabat.hookspecs`` and ``nabat.testing``; everything else is the core's own.
"""

__version__ = "0.1.0"
