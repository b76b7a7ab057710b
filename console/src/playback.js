// Recorded footage: the hub's segment files (fragmented MP4, each starting at a key frame with
// its own init segment; docs/recording.md) played through Media Source Extensions. The player
// asks the hub where a moment is (/playback?at=), appends that segment's file, seeks to the
// offset, and appends the following segments as the playhead nears the end of what it holds, so
// playback runs on across segment boundaries (a gap in the recording is skipped over).
//
// The source buffer is in "sequence" mode: each file's frames go right after the previous
// file's, whatever its own timestamps; `spans` maps the media time back to the wall clock
// (each file's start, from its URL: /recordings/<start in µs>.mp4).
// States reported to the page: loading · playing · waiting · ended (no more footage) ·
// failed (with a reason: no-footage, unsupported-browser, error).

const AHEAD_S = 15; // fetch the next segment when less than this is buffered ahead
const KEEP_S = 20; // buffered video kept behind the playhead
const ASK_AGAIN_MS = 5000; // at the last segment: how often to ask whether another followed

function startOf(url) {
  const match = /\/(\d+)\.mp4$/.exec(url || "");
  return match ? Number(match[1]) / 1000 : null; // ms since the epoch
}

// The codec string from the init segment's avcC box (profile, compatibility, level).
export function codecOf(bytes) {
  for (let i = 4; i + 8 < bytes.length && i < 4096; i++) {
    if (bytes[i] === 0x61 && bytes[i + 1] === 0x76 && bytes[i + 2] === 0x63 && bytes[i + 3] === 0x43) {
      const hex = (n) => n.toString(16).padStart(2, "0");
      return `avc1.${hex(bytes[i + 5])}${hex(bytes[i + 6])}${hex(bytes[i + 7])}`;
    }
  }
  return null;
}

export class RecordedPlayer {
  constructor(video, camera, onState, onTime) {
    this.video = video;
    this.camera = camera;
    this.onState = onState;
    this.onTime = onTime;
    this.spans = []; // {media, wall}: a file's first frame in media seconds and wall ms
    this.next = null;
    this.last = null;
    this.asked = 0;
    this.busy = false;
    this.stopped = false;
    this.ms = null;
    this.tick = () => this.update();
    video.addEventListener("timeupdate", this.tick);
    video.addEventListener("waiting", this.tick);
    this.timer = setInterval(this.tick, 1000); // also while stalled at the end (no timeupdate)
  }

  base() {
    return `/api/v1/cameras/${encodeURIComponent(this.camera)}`;
  }

  async play(atMs) {
    if (!window.MediaSource) return this.onState("failed", "unsupported-browser");
    this.onState("loading");
    const iso = new Date(atMs).toISOString();
    let where;
    try {
      const response = await fetch(`${this.base()}/playback?at=${encodeURIComponent(iso)}`, { credentials: "same-origin" });
      if (response.status === 404) return this.onState("failed", "no-footage");
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      where = await response.json();
    } catch {
      return this.stopped || this.onState("failed", "error");
    }
    if (this.stopped) return;
    const first = await this.fetchFile(where.url);
    if (!first) return;
    const codec = codecOf(first);
    const type = `video/mp4; codecs="${codec || "avc1.640028"}"`;
    if (!MediaSource.isTypeSupported(type)) return this.onState("failed", "unsupported-browser");
    this.ms = new MediaSource();
    this.video.src = URL.createObjectURL(this.ms);
    await new Promise((done) => this.ms.addEventListener("sourceopen", done, { once: true }));
    if (this.stopped) return;
    this.sb = this.ms.addSourceBuffer(type);
    this.sb.mode = "sequence";
    await this.append(first, where.url);
    this.next = where.next;
    this.video.currentTime = Math.max(0, where.offset);
    this.video.play().catch(() => {});
    this.onState("playing");
    this.update();
  }

  async fetchFile(url) {
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      return new Uint8Array(await response.arrayBuffer());
    } catch {
      if (!this.stopped) this.onState("failed", "error");
      return null;
    }
  }

  async append(bytes, url) {
    const sb = this.sb;
    const b = sb.buffered;
    const media = b.length ? b.end(b.length - 1) : 0;
    sb.timestampOffset = media;
    this.spans.push({ media, wall: startOf(url) });
    this.last = url;
    await this.whenDone(() => sb.appendBuffer(bytes));
  }

  whenDone(action) {
    return new Promise((done) => {
      this.sb.addEventListener("updateend", done, { once: true });
      try {
        action();
      } catch {
        done();
      }
    });
  }

  // The segment after the one at `url` (asked 1 ms into it: never before its start, which
  // would find the one before), or null.
  async nextAfter(url) {
    const into = new Date(Math.floor(startOf(url)) + 1).toISOString();
    try {
      const response = await fetch(`${this.base()}/playback?at=${encodeURIComponent(into)}`, { credentials: "same-origin" });
      return response.ok ? (await response.json()).next : null;
    } catch {
      return null;
    }
  }

  // The wall-clock moment shown at the playhead (ms since the epoch), or null.
  wallTime() {
    const t = this.video.currentTime;
    let span = null;
    for (const s of this.spans) if (s.media <= t + 0.001) span = s;
    return span && span.wall != null ? span.wall + (t - span.media) * 1000 : null;
  }

  async update() {
    if (this.stopped || !this.sb) return;
    const at = this.wallTime();
    if (at != null) this.onTime(at);
    if (this.busy) return;
    const v = this.video;
    const b = this.sb.buffered;
    const ahead = b.length ? b.end(b.length - 1) - v.currentTime : 0;
    if (ahead > AHEAD_S) return;
    this.busy = true;
    try {
      if (!this.next) {
        if (ahead < 0.2 && this.ms.readyState === "open") this.onState("ended");
        // The camera may still be recording: ask now and then whether a segment followed.
        if (Date.now() - this.asked < ASK_AGAIN_MS) return;
        this.asked = Date.now();
        this.next = await this.nextAfter(this.last);
        if (!this.next || this.stopped) return;
      }
      const url = this.next;
      const bytes = await this.fetchFile(url);
      if (!bytes || this.stopped) return;
      const held = this.sb.buffered;
      if (held.length && v.currentTime - held.start(0) > KEEP_S) {
        await this.whenDone(() => this.sb.remove(held.start(0), v.currentTime - KEEP_S));
      }
      await this.append(bytes, url);
      this.next = await this.nextAfter(url);
      this.onState("playing");
      if (v.paused && !this.stopped) v.play().catch(() => {});
    } finally {
      this.busy = false;
    }
  }

  destroy() {
    this.stopped = true;
    clearInterval(this.timer);
    this.video.removeEventListener("timeupdate", this.tick);
    this.video.removeEventListener("waiting", this.tick);
    this.video.removeAttribute("src");
    this.video.load();
  }
}
