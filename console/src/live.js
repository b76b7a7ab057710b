// Live video: the hub's multiplexed WebSocket (/api/v1/live, docs/video.md) fed into Media
// Source Extensions. One socket per page carries every player on it (a wall of 16 tiles is one
// connection, not 16: browsers hold few per host). Each player watches one camera under a stream
// id (sid) of the socket; the hub sends it a JSON `stream` message with the codec, then its
// binary messages (the sid, 4 bytes big-endian, then fMP4: the init segment, fragments);
// `status` messages when the camera stalls or is back; a final `error` message (with the HTTP
// status and reason when the watch is refused) when it ends.
// A player reports its state to the page:
//   connecting · live · stalled (the camera stopped sending; the hub reconnects) ·
//   reconnecting (our connection to the hub dropped) · unavailable (with a reason code).
// Reason codes (the page turns them into catalog text): camera-auth, codec-unsupported,
// camera-offline, no-stream, no-access, refused, unsupported-browser, error.

const KEEP_S = 30; // buffered video kept behind the playhead
const BEHIND_S = 1.5; // further than this behind the live edge: jump to it (a stall's delay
// would otherwise stay for good: the player plays on at whatever offset it fell to)
const START_BEHIND_S = 0.8; // the same, tighter, while a stream starts: the hub sends the last
// GOP at once (the picture appears without waiting for a key frame), and the view then
// catches up to the newest frame instead of staying a GOP behind
const START_MS = 5000;
const EDGE_S = 0.3; // where to land, before the newest frame
const RETRY_MIN_S = 1;
const RETRY_MAX_S = 15;
const LINGER_MS = 5000; // the socket stays this long after its last player stops

// The hub's reasons for ending a stream: what the operator is told, and whether trying again
// can help.
const KINDS = {
  "camera-auth": ["camera-auth", false],
  "codec-unsupported": ["codec-unsupported", false],
  "camera-offline": ["camera-offline", true],
  "no-stream": ["no-stream", false],
  "not-found": ["no-access", false],
  "camera-unavailable": ["camera-offline", true],
};

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/api/v1/live`;
}

// The page's one socket to the hub: players join and leave; it opens on the first, closes a
// little after the last, and reconnects with backoff while any player wants video.
class Connection {
  constructor() {
    this.ws = null;
    this.open = false;
    this.players = new Set();
    this.bySid = new Map();
    this.nextSid = 1;
    this.retry = RETRY_MIN_S;
    this.timer = null;
    this.linger = null;
  }

  join(player) {
    clearTimeout(this.linger);
    this.linger = null;
    this.players.add(player);
    if (this.open) this.watch(player);
    else this.connect();
  }

  leave(player) {
    this.players.delete(player);
    if (player.sid) {
      this.bySid.delete(player.sid);
      if (this.open) this.send({ op: "unwatch", sid: player.sid });
      player.sid = null;
    }
    if (!this.players.size && !this.linger) {
      this.linger = setTimeout(() => this.close(), LINGER_MS);
    }
  }

  // A player asks again (after a camera that was offline, a limit): a new sid.
  rewatch(player) {
    if (!this.players.has(player)) return;
    if (player.sid) this.bySid.delete(player.sid);
    player.sid = null;
    if (this.open) this.watch(player);
  }

  watch(player) {
    const sid = this.nextSid++;
    player.sid = sid;
    this.bySid.set(sid, player);
    this.send({ op: "watch", sid, camera: player.cameraId });
  }

  send(message) {
    if (this.ws && this.open) this.ws.send(JSON.stringify(message));
  }

  connect() {
    if (this.ws || this.timer) return;
    if (typeof MediaSource === "undefined") {
      for (const player of this.players) player.giveUp("unsupported-browser");
      return;
    }
    const ws = new WebSocket(socketUrl());
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.open = true;
      this.retry = RETRY_MIN_S;
      for (const player of this.players) this.watch(player);
    };
    ws.onmessage = (message) => {
      if (typeof message.data === "string") {
        let data;
        try {
          data = JSON.parse(message.data);
        } catch {
          return;
        }
        const player = data.sid != null && this.bySid.get(data.sid);
        if (!player) return;
        if (data.type === "error") this.bySid.delete(data.sid); // the hub ended it: sid free
        player.control(data);
      } else {
        const data = message.data;
        if (data.byteLength < 4) return;
        const player = this.bySid.get(new DataView(data).getUint32(0));
        if (player) player.append(new Uint8Array(data, 4));
      }
    };
    ws.onclose = (event) => this.closed(ws, event);
  }

  async closed(ws, event) {
    if (this.ws !== ws) return;
    const opened = this.open;
    this.ws = null;
    this.open = false;
    this.bySid.clear();
    for (const player of this.players) player.sid = null;
    if (!this.players.size) return;
    if (!opened || event.code === 4401) {
      // Refused before it opened (the browser is not told why), or the session ended: ask.
      const status = await fetch("/api/v1/whoami", { credentials: "same-origin", headers: { Accept: "application/json" } }).then(
        (r) => r.status,
        () => 0,
      );
      if (status === 401) {
        window.dispatchEvent(new CustomEvent("nabat:signed-out"));
        for (const player of [...this.players]) player.giveUp("no-access");
        return;
      }
      for (const player of this.players) player.down("unavailable", "refused");
    } else {
      for (const player of this.players) player.down("reconnecting", null);
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.players.size) this.connect();
    }, this.retry * 1000);
    this.retry = Math.min(RETRY_MAX_S, this.retry * 2);
  }

  close() {
    this.linger = null;
    if (this.players.size) return;
    clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    this.open = false;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      ws.close(1000);
    }
  }

  // What tests and the bench read: how many sockets this page holds (0 or 1).
  get sockets() {
    return this.ws ? 1 : 0;
  }
}

export const connection = new Connection();
if (typeof window !== "undefined") window.__nabatLive = connection;

export class LivePlayer {
  constructor(video, cameraId, onState) {
    this.video = video;
    this.cameraId = cameraId;
    this.onState = onState;
    this.running = false;
    this.sid = null;
    this.retry = RETRY_MIN_S;
    this.timer = null;
    this.media = null;
    this.onPlaying = () => this.state("live");
    video.addEventListener("playing", this.onPlaying);
  }

  state(name, reason = null) {
    if (this.current === name && this.reason === reason) return;
    this.current = name;
    this.reason = reason;
    this.onState(name, reason);
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.retry = RETRY_MIN_S;
    if (typeof MediaSource === "undefined") {
      this.state("unavailable", "unsupported-browser");
      return;
    }
    this.state(this.current === "unavailable" ? "unavailable" : "connecting", this.reason);
    connection.join(this);
  }

  // Stops watching (the hub lets the camera's upstream go when its last viewer leaves) and
  // drops the buffered video.
  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = null;
    connection.leave(this);
    this.detach();
  }

  destroy() {
    this.stop();
    this.video.removeEventListener("playing", this.onPlaying);
  }

  control(message) {
    if (message.type === "stream") {
      if (!MediaSource.isTypeSupported(message.codec)) {
        this.giveUp("codec-unsupported");
        return;
      }
      this.retry = RETRY_MIN_S;
      this.attach(message.codec); // a new epoch: a new MediaSource and SourceBuffer
      if (this.current !== "live") this.state("connecting");
    } else if (message.type === "status") {
      if (message.status === "stalled") this.state("stalled");
      else if (message.status === "live" && !this.video.paused) this.state("live");
    } else if (message.type === "error") {
      this.ended(message);
    }
  }

  // The hub ended this stream or refused it.
  ended(message) {
    this.sid = null;
    const known = KINDS[message.kind];
    let reason = known ? known[0] : "error";
    let retry = known ? known[1] : message.retry !== false;
    if (message.status === 401) {
      window.dispatchEvent(new CustomEvent("nabat:signed-out"));
      this.giveUp("no-access");
      return;
    }
    if (message.status === 403 || message.status === 404) [reason, retry] = ["no-access", false];
    else if (message.status === 429 || message.status === 503) [reason, retry] = [message.kind === "camera-unavailable" ? "camera-offline" : "refused", true];
    if (!retry) {
      this.giveUp(reason);
      return;
    }
    this.down("unavailable", reason);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.running) connection.rewatch(this);
    }, this.retry * 1000);
    this.retry = Math.min(RETRY_MAX_S, this.retry * 2);
  }

  // The stream is gone for now (our socket dropped, or the hub will be asked again).
  down(state, reason) {
    if (!this.running) return;
    this.detach();
    this.state(state, reason);
  }

  giveUp(reason) {
    this.stop();
    this.state("unavailable", reason);
  }

  attach(codec) {
    this.detach();
    const media = new MediaSource();
    const item = { source: media, buffer: null, queue: [], url: URL.createObjectURL(media), at: performance.now() };
    this.media = item;
    media.addEventListener(
      "sourceopen",
      () => {
        if (this.media !== item) return;
        URL.revokeObjectURL(item.url);
        try {
          item.buffer = media.addSourceBuffer(codec);
        } catch {
          this.giveUp("codec-unsupported");
          return;
        }
        item.buffer.addEventListener("updateend", () => this.updated(item));
        this.pump(item);
      },
      { once: true },
    );
    this.video.src = item.url;
  }

  detach() {
    const item = this.media;
    this.media = null;
    if (!item) return;
    item.queue = [];
    try {
      if (item.source.readyState === "open") item.source.endOfStream();
    } catch {
      /* already ended */
    }
    this.video.removeAttribute("src");
    this.video.load();
  }

  append(data) {
    const item = this.media;
    if (!item) return; // fragments before a `stream` message: nothing to play them with
    item.queue.push(data);
    this.pump(item);
  }

  pump(item) {
    const buffer = item.buffer;
    if (!buffer || buffer.updating || this.media !== item) return;
    if (this.trim(item)) return; // removing: the queue goes on at updateend
    const next = item.queue.shift();
    if (!next) return;
    try {
      buffer.appendBuffer(next);
    } catch (err) {
      if (err && err.name === "QuotaExceededError") {
        item.queue.unshift(next);
        const t = this.video.currentTime;
        if (buffer.buffered.length && t - 1 > buffer.buffered.start(0)) buffer.remove(0, t - 1);
        return;
      }
      this.giveUp("error");
    }
  }

  // Keeps the buffer short: what lies more than KEEP_S behind the playhead goes.
  trim(item) {
    const buffered = item.buffer.buffered;
    if (!buffered.length) return false;
    const behind = this.video.currentTime - KEEP_S;
    if (buffered.start(0) < behind - 5) {
      item.buffer.remove(0, behind);
      return true;
    }
    return false;
  }

  updated(item) {
    if (this.media !== item) return;
    const buffered = item.buffer.buffered;
    if (buffered.length) {
      const end = buffered.end(buffered.length - 1);
      const start = buffered.start(buffered.length - 1);
      const t = this.video.currentTime;
      // Fallen behind (a hidden tab, a slow machine, a stall) or before the first frame: the
      // live edge. A fragment's worth ahead is normal (fragments arrive whole): no jump for it.
      const fragment = item.lastEnd != null ? Math.max(0, end - item.lastEnd) : 0;
      item.lastEnd = end;
      const starting = performance.now() - item.at < START_MS;
      const behind = Math.max(EDGE_S + 2 * fragment, starting ? START_BEHIND_S : BEHIND_S);
      if (t < start || end - t > behind) this.video.currentTime = Math.max(start, end - EDGE_S);
      if (this.video.paused) this.video.play().catch(() => {});
    }
    this.pump(item);
  }
}
