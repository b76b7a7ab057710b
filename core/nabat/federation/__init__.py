"""Federation: district edge hubs and the regional hub over NATS JetStream
(``docs/federation.md``).

Built so far: the **up-path** (:class:`~nabat.federation.uplink.Uplink`): a site's events go
to its JetStream stream from the journal, through a durable delivery subscription; and the
**following hub** (:class:`~nabat.federation.follower.Follower`): the region's JetStream
sources each followed site's stream, and the hub appends what arrives to its journal,
idempotently; **commands down**: the region's alerts for a site go by JetStream through a
stream the site mirrors, each with a deadline and signed
(:class:`~nabat.federation.dispatch.Dispatcher` at the region,
:class:`~nabat.federation.taker.CommandTaker` at the site), and a remote camera's snapshot
or PTZ by request/reply.
"""

from .dispatch import Dispatcher
from .follower import Follower
from .naming import msg_id, site_of, stream_name, subject_for
from .taker import CommandTaker
from .uplink import Uplink

__all__ = [
    "CommandTaker",
    "Dispatcher",
    "Follower",
    "Uplink",
    "msg_id",
    "site_of",
    "stream_name",
    "subject_for",
]
