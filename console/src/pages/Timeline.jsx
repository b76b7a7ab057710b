// The camera's recorded footage under its large view: a timeline of the last 1, 6 or 24 hours
// with the footage as bars (gaps show as the bare track), the camera's health changes (red when
// it went bad) and incidents marked; a click or a drag on it plays the footage from that
// moment in place of the live video, and «в эфире» goes back to live.
import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "../api.js";
import { formatTime, t } from "../i18n.js";
import { RecordedPlayer } from "../playback.js";

const HOUR = 3600e3;
const ZOOMS = [1, 6, 24];
const REFRESH_S = 30;
const JOIN_MS = 2000; // segments closer than this draw as one bar (the rotation between them)

function reasonText(reason) {
  if (reason === "no-footage") return t("timeline.no_footage_here");
  if (reason === "unsupported-browser") return t("timeline.unsupported");
  return t("timeline.failed");
}

function stateText(state, reason) {
  if (state === "loading") return t("timeline.loading");
  if (state === "ended") return t("timeline.ended");
  if (state === "failed") return reasonText(reason);
  return "";
}

// The recorded video, in the place of the live one; `at` is where to start (ms since the epoch).
export function RecordedVideo({ camera, at, onTime }) {
  const video = useRef(null);
  const [state, setState] = useState({ state: "loading", reason: null });
  const [shown, setShown] = useState(null);
  useEffect(() => {
    setShown(null);
    const player = new RecordedPlayer(
      video.current,
      camera.id,
      (name, reason) => setState({ state: name, reason: reason || null }),
      (ms) => {
        setShown(ms);
        onTime(ms);
      },
    );
    player.play(at);
    return () => player.destroy();
  }, [camera.id, at]);
  const note = stateText(state.state, state.reason);
  return (
    <div class={`big video-recorded`} data-testid="playback-video" data-state={state.state} data-reason={state.reason || ""}>
      <video ref={video} muted autoplay playsinline disablepictureinpicture />
      <span class="video-state video-recorded" data-testid="played-time" data-at={shown ? new Date(shown).toISOString() : ""}>
        {shown ? t("timeline.played", { when: formatTime(new Date(shown).toISOString()) }) : note}
      </span>
      {note && shown && <div class="no-picture">{note}</div>}
    </div>
  );
}

function merged(segments) {
  const bars = [];
  for (const s of segments) {
    const start = Date.parse(s.start);
    const end = Date.parse(s.end);
    const last = bars[bars.length - 1];
    if (last && start - last.end <= JOIN_MS) last.end = Math.max(last.end, end);
    else bars.push({ start, end });
  }
  return bars;
}

export function Timeline({ camera, playing, onPlay, onLive }) {
  const [hours, setHours] = useState(24);
  const [data, setData] = useState(null);
  const [failed, setFailed] = useState(false);
  const [now, setNow] = useState(Date.now());
  const [hover, setHover] = useState(null);
  const track = useRef(null);
  const drag = useRef(false);
  const since = now - hours * HOUR;
  useEffect(() => {
    let alive = true;
    const load = () => {
      const until = Date.now();
      const from = until - hours * HOUR;
      const query = `since=${encodeURIComponent(new Date(from).toISOString())}&until=${encodeURIComponent(new Date(until).toISOString())}`;
      api(`/api/v1/cameras/${encodeURIComponent(camera.id)}/recordings?${query}`).then(
        (found) => {
          if (!alive) return;
          setNow(until);
          setData(found);
          setFailed(false);
        },
        () => alive && setFailed(true),
      );
    };
    load();
    const timer = setInterval(load, REFRESH_S * 1000);
    return () => {
      alive = false;
      clearInterval(timer);
    };
  }, [camera.id, hours]);

  const span = hours * HOUR;
  const pct = (ms) => `${Math.min(100, Math.max(0, ((ms - since) / span) * 100))}%`;
  const width = (a, b) => `${Math.max(0.15, ((Math.min(b, now) - Math.max(a, since)) / span) * 100)}%`;
  const timeAt = (e) => {
    const box = track.current.getBoundingClientRect();
    const x = Math.min(1, Math.max(0, (e.clientX - box.left) / box.width));
    return since + x * span;
  };
  const down = (e) => {
    drag.current = true;
    e.currentTarget.setPointerCapture(e.pointerId);
    setHover(timeAt(e));
  };
  const move = (e) => setHover(timeAt(e));
  const up = (e) => {
    if (!drag.current) return;
    drag.current = false;
    onPlay(timeAt(e));
  };
  const bars = data ? merged(data.segments) : [];
  const label = (ms) => new Date(ms).toISOString();
  return (
    <section class="timeline" data-testid="timeline">
      <div class="timeline-bar">
        <strong>{t("timeline.title")}</strong>
        <span class="zooms">
          {ZOOMS.map((n) => (
            <button class={n === hours ? "on" : ""} onClick={() => setHours(n)} data-testid={`zoom-${n}h`}>
              {t("timeline.hours", { n })}
            </button>
          ))}
        </span>
        <button class="go-live" onClick={onLive} disabled={playing == null} data-testid="go-live">
          {t("timeline.live")}
        </button>
      </div>
      <div
        class="track"
        ref={track}
        data-testid="timeline-track"
        onPointerDown={down}
        onPointerMove={move}
        onPointerUp={up}
        onPointerLeave={() => !drag.current && setHover(null)}
      >
        {data &&
          data.gaps.map((g) => (
            <i class="gap" style={{ left: pct(Date.parse(g.start)), width: width(Date.parse(g.start), Date.parse(g.end)) }} title={t("timeline.gap", { from: formatTime(g.start), to: formatTime(g.end) })} />
          ))}
        {bars.map((b) => (
          <i class="footage" data-testid="footage" style={{ left: pct(b.start), width: width(b.start, b.end) }} title={t("timeline.footage", { from: formatTime(label(b.start)), to: formatTime(label(b.end)) })} />
        ))}
        {data &&
          data.health.map((h) => (
            <i class={`mark health ${h.state === "ok" ? "ok" : "bad"}`} data-testid="health-mark" style={{ left: pct(Date.parse(h.time)) }} title={`${formatTime(h.time)}: ${t(`state.${h.state}`)}`} />
          ))}
        {data &&
          data.incidents.map((i) => (
            <i class="mark incident" data-testid="incident-mark" style={{ left: pct(Date.parse(i.at)) }} title={t("timeline.incident", { when: formatTime(i.at), title: i.title || i.id })} />
          ))}
        {playing != null && playing >= since && <i class="playhead" data-testid="playhead" style={{ left: pct(playing) }} />}
        {hover != null && (
          <span class="cursor" style={{ left: pct(hover) }}>
            {formatTime(label(hover))}
          </span>
        )}
      </div>
      <div class="axis">
        <span>{formatTime(label(since))}</span>
        <span>{failed ? t("timeline.unavailable") : data && bars.length === 0 ? t("timeline.no_footage") : t("timeline.hint")}</span>
        <span>{formatTime(label(now))}</span>
      </div>
    </section>
  );
}
