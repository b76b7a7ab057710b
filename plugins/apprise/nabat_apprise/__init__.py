"""Nabat's Apprise plugin: the ``apprise.notifier`` driver (see :mod:`.notifier`)."""
