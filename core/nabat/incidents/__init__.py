"""Incidents: one record per incident with the nearest cameras and their snapshots.

See :mod:`nabat.incidents.service` and ``docs/incidents.md``.
"""

from .service import COLLECTION, SNAPSHOTS, IncidentService

__all__ = ["COLLECTION", "SNAPSHOTS", "IncidentService"]
