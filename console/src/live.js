// Live video of one camera: the hub's WebSocket (docs/video.md) fed into Media Source
// Extensions. The hub sends a JSON `stream` message with the codec, the fMP4 init segment, then
// fragments; `status` messages when the camera stalls or is back; an `error` message and a
// close code when the stream cannot go on. The player reports its state to the page:
//   connecting · live · stalled (the camera stopped sending; the hub reconnects) ·
//   reconnecting (our connection to the hub dropped) · unavailable (with a reason code).
// Reason codes (the page turns them into catalog text): camera-auth, codec-unsupported,
// camera-offline, no-access, refused, unsupported-browser, error.

const KEEP_S = 30; // buffered video kept behind the playhead
const BEHIND_S = 3; // further than this behind the live edge: jump to it
const EDGE_S = 0.3; // where to land, before the newest frame
const RETRY_MIN_S = 1;
const RETRY_MAX_S = 15;

// Close codes of the hub (docs/video.md) and whether trying again can help.
const CLOSES = {
  4502: ["camera-auth", false],
  4415: ["codec-unsupported", false],
  4504: ["camera-offline", true],
};
const KINDS = {
  "camera-auth": false,
  "codec-unsupported": false,
  "camera-offline": true,
};

export class LivePlayer {
  constructor(video, cameraId, onState) {
    this.video = video;
    this.cameraId = cameraId;
    this.onState = onState;
    this.running = false;
    this.ws = null;
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
    this.connect();
  }

  // Closes the WebSocket (the hub lets the camera's upstream go when its last viewer leaves)
  // and drops the buffered video.
  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.ws) {
      this.ws.onclose = this.ws.onmessage = this.ws.onerror = null;
      this.ws.close(1000);
      this.ws = null;
    }
    this.detach();
  }

  destroy() {
    this.stop();
    this.video.removeEventListener("playing", this.onPlaying);
  }

  connect() {
    if (!this.running) return;
    if (typeof MediaSource === "undefined") {
      this.state("unavailable", "unsupported-browser");
      return;
    }
    this.state(this.current === "unavailable" ? "unavailable" : "connecting", this.reason);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/api/v1/cameras/${encodeURIComponent(this.cameraId)}/live`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.opened = false;
    this.ended = null; // the hub's `error` message, if it sent one
    ws.onopen = () => {
      this.opened = true;
    };
    ws.onmessage = (message) => {
      if (typeof message.data === "string") {
        let data;
        try {
          data = JSON.parse(message.data);
        } catch {
          return;
        }
        this.control(data);
      } else this.append(message.data);
    };
    ws.onclose = (event) => this.closed(event);
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
      this.ended = message.kind;
    }
  }

  giveUp(reason) {
    this.stop();
    this.state("unavailable", reason);
  }

  async closed(event) {
    this.ws = null;
    if (!this.running) return;
    const [code, retry] = CLOSES[event.code] || (this.ended && this.ended in KINDS ? [this.ended, KINDS[this.ended]] : [null, true]);
    if (code) {
      if (!retry) {
        this.giveUp(code);
        return;
      }
      this.state("unavailable", code);
    } else if (!this.opened) {
      // The handshake was refused: the browser is not told why. The camera's record says
      // whether this person may see it at all; otherwise a limit or the hub itself.
      const status = await fetch(`/api/v1/cameras/${encodeURIComponent(this.cameraId)}`, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      }).then(
        (r) => r.status,
        () => 0,
      );
      if (!this.running) return;
      if (status === 404 || status === 403) {
        this.giveUp("no-access");
        return;
      }
      if (status === 401) {
        window.dispatchEvent(new CustomEvent("nabat:signed-out"));
        this.giveUp("no-access");
        return;
      }
      this.state("unavailable", "refused");
    } else {
      this.state("reconnecting");
    }
    this.detach();
    this.timer = setTimeout(() => this.connect(), this.retry * 1000);
    this.retry = Math.min(RETRY_MAX_S, this.retry * 2);
  }

  attach(codec) {
    this.detach();
    const media = new MediaSource();
    const item = { source: media, buffer: null, queue: [], url: URL.createObjectURL(media) };
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
      // Fallen behind (a hidden tab, a slow machine) or before the first frame: the live edge.
      if (t < start || end - t > BEHIND_S) this.video.currentTime = Math.max(start, end - EDGE_S);
      if (this.video.paused) this.video.play().catch(() => {});
    }
    this.pump(item);
  }
}
