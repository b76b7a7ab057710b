"""Federation: district edge hubs and the regional hub over NATS JetStream
(``docs/federation.md``).

Built so far: the **up-path** (:class:`~nabat.federation.uplink.Uplink`): a site's events go
to its JetStream stream from the journal, through a durable delivery subscription; and the
**following hub** (:class:`~nabat.federation.follower.Follower`): the region's JetStream
sources each followed site's stream, and the hub appends what arrives to its journal,
idempotently. Commands down (alerts, snapshots, PTZ for a remote site) are next (issue 18).
"""

from .follower import Follower
from .naming import msg_id, site_of, stream_name, subject_for
from .uplink import Uplink

__all__ = ["Follower", "Uplink", "msg_id", "site_of", "stream_name", "subject_for"]
