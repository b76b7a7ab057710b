// The camera wall: every camera of the district with its picture, state and the picture's age.
// Broken cameras come first, in red; the page refreshes only the tiles on screen, so a wall of
// 1,000 cameras costs what a screenful does.
import { memo } from "preact/compat";
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, live } from "../api.js";
import { formatAge, formatTime, has, t } from "../i18n.js";
import { LivePlayer } from "../live.js";
import { videoReason, videoState } from "../videoText.js";
import { LiveWall } from "./LiveWall.jsx";
import { RecordedVideo, Timeline } from "./Timeline.jsx";

const REFRESH_S = 10;
const ORDER = { offline: 0, degraded: 1, unknown: 2, ok: 3 };

// As the API sums it up: black or frozen is degraded, anything else not ok is offline.
export function statusOf(state) {
  if (state === "ok") return "ok";
  if (state === "unknown" || state === "starting") return "unknown";
  return state === "black" || state === "frozen" ? "degraded" : "offline";
}

// A driver instance that is not running gives no picture whatever its last probe said: its own
// state is what the operator must see (credentials needed, a failed configuration).
const STOPPED = new Set(["needs_auth", "failed", "stopped"]);

export function stateOf(camera) {
  // The honest state: a black or frozen picture is as bad as no picture.
  if (STOPPED.has(camera.instance_state)) return camera.instance_state;
  const health = camera.health && camera.health.state;
  if (health) return health;
  if (camera.instance_state === "retrying" || camera.instance_state === "starting") return camera.instance_state;
  return camera.status === "unknown" ? "unknown" : camera.status;
}

// The summary the wall counts and sorts by, from the state shown.
export function summaryOf(camera) {
  return statusOf(stateOf(camera));
}

// Why, in the operator's language: the probe's reason code from the catalog, else the state.
// The probe's own words (English, for logs and the API) are not shown.
export function reasonText(health) {
  if (!health) return "";
  if (health.reason_code && has(`reason.${health.reason_code}`)) return t(`reason.${health.reason_code}`);
  return health.state && health.state !== "ok" ? t(`state.${health.state}`) : "";
}

// One observer for all tiles: a tile refreshes (and its age ticks) only while it is on screen,
// so a wall of 1,000 cameras re-renders what a screenful holds, not the whole wall.
const visible = new Set();
setInterval(() => {
  for (const tile of visible) tile.tick();
}, 5000);
// While the large view covers the wall, its tiles ask for no pictures (the view's camera is
// streaming; a snapshot of it would cost the camera a second session).
let viewing = 0;
function viewOpened() {
  viewing += 1;
  return () => {
    viewing -= 1;
    if (!viewing) for (const tile of visible) tile.wake();
  };
}
let observer = null;
function observe(element, tile) {
  if (!observer) {
    observer = new IntersectionObserver(
      (entries) => {
        for (const entry of entries) {
          const t = entry.target.__tile;
          if (!t) continue;
          if (entry.isIntersecting) {
            visible.add(t);
            t.wake();
          } else visible.delete(t);
        }
      },
      { rootMargin: "200px" },
    );
  }
  element.__tile = tile;
  observer.observe(element);
  return () => {
    observer.unobserve(element);
    visible.delete(tile);
  };
}

// Pictures load as plain <img> (no script touches their bytes); each one's age comes from the
// hub's Server-Timing header, read through Resource Timing.
const ages = new Map(); // picture URL -> age in ms when served
if (typeof PerformanceObserver !== "undefined") {
  performance.setResourceTimingBufferSize(2000);
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const age = (entry.serverTiming || []).find((t) => t.name === "age");
      if (age) ages.set(entry.name, age.duration);
    }
  }).observe({ type: "resource", buffered: false });
  setInterval(() => performance.clearResourceTimings(), 20000);
}

function pictureUrl(id, maxAge, n) {
  return `${location.origin}/api/v1/cameras/${encodeURIComponent(id)}/snapshot.jpg?max_age=${maxAge}&n=${n}`;
}

function TileView({ camera, onOpen }) {
  const ref = useRef(null);
  const [now, setNow] = useState(Date.now());
  const [src, setSrc] = useState(null);
  const [shown, setShown] = useState(null); // {takenAt, loadedAt} of the picture on screen
  const [failed, setFailed] = useState(false);
  const state = stateOf(camera);
  const control = useRef({});

  useEffect(() => {
    let timer = null;
    let alive = true;
    let n = 0;
    let requestedAt = 0;
    const request = () => {
      timer = null;
      if (!alive || !visible.has(tile) || viewing) return; // the large view wakes it again
      requestedAt = Date.now();
      n += 1;
      setSrc(pictureUrl(camera.id, REFRESH_S, n));
    };
    const tile = {
      wake() {
        // Back on screen: a picture younger than the refresh period is kept until it is due.
        if (timer) return;
        const due = requestedAt + REFRESH_S * 1000 - Date.now();
        if (due > 0 && requestedAt) timer = setTimeout(request, due);
        else request();
      },
      tick() {
        setNow(Date.now());
      },
    };
    // The next request once this one has loaded (or failed), staggered so the tiles of a
    // screen do not all ask at once.
    control.current.settled = () => {
      if (alive && !timer) timer = setTimeout(request, (REFRESH_S + Math.random() * 3) * 1000);
    };
    const stop = observe(ref.current, tile);
    return () => {
      alive = false;
      stop();
      clearTimeout(timer);
    };
  }, [camera.id]);

  const loaded = (e) => {
    const url = e.currentTarget.currentSrc || e.currentTarget.src;
    const age = ages.get(url);
    ages.delete(url);
    const loadedAt = Date.now();
    setShown({ takenAt: loadedAt - (age || 0), loadedAt });
    setFailed(false);
    control.current.settled();
  };
  const broken = () => {
    setFailed(true);
    control.current.settled();
  };

  const age = shown ? Math.max(0, (Math.max(now, shown.loadedAt) - shown.takenAt) / 1000) : null;
  return (
    <button class={`tile state-${state}`} ref={ref} onClick={() => onOpen(camera)} data-testid={`tile-${camera.id}`} data-state={state}>
      {src && <img src={src} alt="" decoding="async" onLoad={loaded} onError={broken} style={failed || !shown ? "visibility:hidden" : ""} />}
      {(failed || !shown) && <div class="no-picture">{failed ? t("wall.no_picture") : t("loading")}</div>}
      <span class={`badge state-${state}`} data-testid="badge">{t(`state.${state}`)}</span>
      <span class="caption">
        <span class="name">{camera.name}</span>
        <span class={`age ${age != null && age > 60 ? "stale" : ""}`}>{formatAge(age)}</span>
      </span>
    </button>
  );
}

const Tile = memo(TileView, (a, b) => a.camera === b.camera && a.onOpen === b.onOpen);

function Ptz({ camera }) {
  const [presets, setPresets] = useState(null); // null: asking; false: no PTZ
  const [error, setError] = useState(null);
  useEffect(() => {
    api(`/api/v1/cameras/${encodeURIComponent(camera.id)}/presets`)
      .then((found) => setPresets(found.presets || found || []))
      .catch(() => setPresets(false));
  }, [camera.id]);
  if (presets === null) return null;
  if (presets === false) return <p class="muted">{t("wall.no_ptz")}</p>;
  const move = (body) =>
    api(`/api/v1/cameras/${encodeURIComponent(camera.id)}/ptz`, { method: "POST", body }).then(
      () => setError(null),
      (err) => setError(err.message),
    );
  const step = (pan, tilt, zoom = 0) => move({ action: "relative", pan, tilt, zoom });
  return (
    <div class="ptz" data-testid="ptz">
      <div class="pad">
        <button onClick={() => step(0, 0.1)} title={t("ptz.up")}>▲</button>
        <button onClick={() => step(-0.1, 0)} title={t("ptz.left")}>◀</button>
        <button onClick={() => move({ action: "home" })} title={t("ptz.home")}>⌂</button>
        <button onClick={() => step(0.1, 0)} title={t("ptz.right")}>▶</button>
        <button onClick={() => step(0, -0.1)} title={t("ptz.down")}>▼</button>
      </div>
      <div>
        <button onClick={() => step(0, 0, 0.1)}>{t("ptz.zoom_in")}</button>
        <button onClick={() => step(0, 0, -0.1)}>{t("ptz.zoom_out")}</button>
      </div>
      {Array.isArray(presets) && presets.length > 0 && (
        <div class="presets">
          {presets.map((p) => (
            <button onClick={() => move({ action: "goto_preset", preset: p.token })}>{p.name || p.token}</button>
          ))}
        </div>
      )}
      {error && <p class="error">{error}</p>}
    </div>
  );
}

function Probes({ camera }) {
  const [items, setItems] = useState(null);
  useEffect(() => {
    const since = new Date(Date.now() - 7 * 86400 * 1000).toISOString();
    const query = new URLSearchParams({ type: "camera.health.*", subject: camera.id, since, limit: "500" });
    api(`/api/v1/events?${query}`)
      .then((page) => setItems(page.events.map((e) => e.event).slice(-10).reverse()))
      .catch(() => setItems([]));
  }, [camera.id, camera.health && camera.health.checked_at]);
  if (items === null) return null;
  return (
    <table class="probes" data-testid="probes">
      <thead>
        <tr>
          <th>{t("wall.when")}</th>
          <th>{t("wall.state")}</th>
          <th>{t("wall.reason")}</th>
        </tr>
      </thead>
      <tbody>
        {items.length === 0 && (
          <tr>
            <td colspan="3" class="muted">{t("wall.no_changes")}</td>
          </tr>
        )}
        {items.map((e) => (
          <tr class={`state-${e.data.state}`}>
            <td>{formatTime(e.data.checked_at || e.time)}</td>
            <td>{t(`state.${e.data.state}`)}</td>
            <td>{reasonText(e.data)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

// The camera's media profiles (ONVIF: main stream, sub-stream…) and what the hub uses each for;
// nothing for drivers that have none.
function Profiles({ profiles }) {
  if (!Array.isArray(profiles) || profiles.length === 0) return null;
  const size = (p) => (p.width && p.height ? `${p.width}×${p.height}` : "—");
  return (
    <table class="profiles" data-testid="profiles">
      <thead>
        <tr>
          <th>{t("wall.profile")}</th>
          <th>{t("wall.codec")}</th>
          <th>{t("wall.resolution")}</th>
          <th>{t("wall.fps")}</th>
          <th>{t("wall.roles")}</th>
        </tr>
      </thead>
      <tbody>
        {profiles.map((p) => (
          <tr data-testid={`profile-${p.token}`}>
            <td>{p.name || p.token}</td>
            <td>{p.codec || "—"}</td>
            <td>{size(p)}</td>
            <td>{p.fps ? t("wall.fps_value", { n: Math.round(p.fps * 10) / 10 }) : "—"}</td>
            <td>
              {(p.roles || [])
                .filter((r) => has(`wall.role.${r}`))
                .map((r) => t(`wall.role.${r}`))
                .join(", ") || "—"}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

// The large view's live video. It streams only while the view is open and the tab is shown
// (Page Visibility): a hidden tab closes its WebSocket, so the hub can let the camera go. Until
// the first frame, and whenever the video is not live, the last snapshot stands in for it.
function LiveVideo({ camera }) {
  const video = useRef(null);
  const [state, setState] = useState({ state: "connecting", reason: null });
  const [n, setN] = useState(1);
  const [failed, setFailed] = useState(false);
  const playing = state.state === "live" || (state.state === "stalled" && state.seen);
  useEffect(() => {
    const player = new LivePlayer(video.current, camera.id, (name, reason) => setState((was) => ({ state: name, reason, seen: was.seen || name === "live" })));
    const shown = () => (document.hidden ? player.stop() : player.start());
    document.addEventListener("visibilitychange", shown);
    shown();
    return () => {
      document.removeEventListener("visibilitychange", shown);
      player.destroy();
    };
  }, [camera.id]);
  useEffect(() => {
    if (playing) return undefined;
    const timer = setInterval(() => setN((x) => x + 1), 2000);
    return () => clearInterval(timer);
  }, [camera.id, playing]);
  return (
    <div class={`big video-${state.state}`} data-testid="live-video" data-state={state.state} data-reason={state.reason || ""}>
      {!playing && <img src={pictureUrl(camera.id, 2, n)} alt={camera.name} decoding="async" onLoad={() => setFailed(false)} onError={() => setFailed(true)} style={failed ? "visibility:hidden" : ""} />}
      <video ref={video} muted autoplay playsinline disablepictureinpicture style={playing ? "" : "visibility:hidden"} />
      {!playing && failed && state.state !== "unavailable" && <div class="no-picture">{t("wall.no_picture")}</div>}
      <span class={`video-state video-${state.state}`} data-testid="video-state">
        {videoState(state.state)}
        {state.state === "unavailable" && `: ${videoReason(state.reason)}`}
      </span>
    </div>
  );
}

function CameraView({ camera, onClose }) {
  const [detail, setDetail] = useState(null);
  useEffect(() => {
    let alive = true;
    api(`/api/v1/cameras/${encodeURIComponent(camera.id)}`).then(
      (found) => alive && setDetail(found),
      () => {},
    );
    return () => {
      alive = false;
    };
  }, [camera.id, camera.health && camera.health.checked_at]);
  useEffect(viewOpened, []);
  useEffect(() => {
    const key = (e) => e.key === "Escape" && onClose();
    window.addEventListener("keydown", key);
    return () => window.removeEventListener("keydown", key);
  }, [camera.id]);
  // Recorded footage from a moment picked on the timeline (null: live); where it plays now.
  // Opened with ?at= (an incident's footage): the recording from then.
  const [replay, setReplay] = useState(() => {
    const at = Date.parse(new URLSearchParams(location.search).get("at") || "");
    return Number.isNaN(at) ? null : at;
  });
  const [played, setPlayed] = useState(null);
  const shownCamera = useRef(camera.id);
  useEffect(() => {
    if (shownCamera.current === camera.id) return;
    shownCamera.current = camera.id;
    setReplay(null);
  }, [camera.id]);
  const state = stateOf(camera);
  // The probed resolution: the camera's detail says it, else the last health change.
  const measured = (detail && detail.width && detail.height && detail) || (camera.health && camera.health.width && camera.health.height && camera.health);
  const resolution = measured ? { width: measured.width, height: measured.height } : null;
  return (
    <div class="modal" role="dialog" aria-modal="true" data-testid="camera-view" onClick={(e) => e.target === e.currentTarget && onClose()}>
      <div class="panel wide">
        <header>
          <h2>{camera.name}</h2>
          {!camera.missing && <span class={`badge state-${state}`}>{t(`state.${state}`)}</span>}
          <button class="link" onClick={onClose} data-testid="close">{t("close")}</button>
        </header>
        <div class="camera-view">
          <div class="camera-main">
            {replay == null ? <LiveVideo camera={camera} /> : <RecordedVideo camera={camera} at={replay} onTime={setPlayed} />}
            {!camera.missing && (
              <Timeline
                camera={camera}
                playing={replay == null ? null : played ?? replay}
                onPlay={(at) => {
                  setPlayed(null);
                  setReplay(at);
                }}
                onLive={() => setReplay(null)}
              />
            )}
          </div>
          {!camera.missing && (
          <aside>
            <p>{camera.address}</p>
            {state !== "ok" && (
              <p class="reason" data-testid="reason">
                {STOPPED.has(state) || !camera.health ? t(`state.${state}`) : reasonText(camera.health)}
              </p>
            )}
            <p class="muted">{t("wall.last_probe", { when: formatTime(camera.last_probe_at) })}</p>
            {resolution && (
              <p class="muted" data-testid="resolution">
                {t("wall.resolution_value", { width: resolution.width, height: resolution.height })}
              </p>
            )}
            <Profiles profiles={detail && detail.profiles} />
            <Ptz camera={camera} />
          </aside>
          )}
        </div>
        {!camera.missing && <h3>{t("wall.probes")}</h3>}
        {!camera.missing && <Probes camera={camera} />}
      </div>
    </div>
  );
}

export function Wall({ rest }) {
  const [cameras, setCameras] = useState(null);
  const [error, setError] = useState(null);
  const [filter, setFilter] = useState("all");
  const [search, setSearch] = useState("");
  const [typed, setTyped] = useState("");
  // Filtering re-renders the wall: wait until the operator pauses typing.
  useEffect(() => {
    const timer = setTimeout(() => setSearch(typed), 200);
    return () => clearTimeout(timer);
  }, [typed]);
  // The large view has its own address (/console/wall/<camera>), to be opened again or sent.
  const [open, setOpen] = useState(rest && rest[0] ? { id: decodeURIComponent(rest[0]) } : null);
  const view = useCallback((camera) => {
    history.replaceState(null, "", camera ? `/console/wall/${encodeURIComponent(camera.id)}` : "/console/wall");
    setOpen(camera);
  }, []);

  // The operator's layout (grid of snapshots or live tiles), kept by the hub per person.
  const [layout, setLayout] = useState(null);
  const saving = useRef(null);
  const save = useCallback((next) => {
    setLayout(next);
    clearTimeout(saving.current);
    saving.current = setTimeout(
      () => api("/console/api/wall", { method: "PUT", body: next }).catch((err) => setError(err.message)),
      300,
    );
  }, []);
  useEffect(() => {
    api("/console/api/wall").then(setLayout, () => setLayout({ mode: "grid", size: 4, cameras: [], follow: false }));
  }, []);
  // An incident's nearest cameras, live, from its page (/console/wall?incident=<id>): shown
  // instead of the operator's layout, not saved over it.
  const [incident, setIncident] = useState(null);
  const incidentId = new URLSearchParams(location.search).get("incident");
  useEffect(() => {
    if (!incidentId) return;
    api(`/api/v1/incidents/${encodeURIComponent(incidentId)}`).then(
      (record) =>
        setIncident({
          id: incidentId,
          title: record.incident.title || record.incident.address || incidentId,
          cameras: (record.incident.cameras || []).map((c) => c.id).slice(0, 16),
        }),
      (err) => setError(err.message),
    );
  }, [incidentId]);
  const leaveIncident = useCallback(() => {
    history.replaceState(null, "", "/console/wall");
    setIncident(null);
  }, []);

  useEffect(() => {
    let alive = true;
    api("/api/v1/cameras?limit=5000")
      .then((page) => alive && setCameras(page.items))
      .catch((err) => alive && setError(err.message));
    // A health change may come with a change of the driver instance (rejected credentials put
    // it in needs_auth): the camera's record is asked for again shortly after.
    const due = new Map();
    const refresh = (id) => {
      clearTimeout(due.get(id));
      due.set(
        id,
        setTimeout(() => {
          due.delete(id);
          api(`/api/v1/cameras/${encodeURIComponent(id)}`).then(
            (found) => alive && setCameras((list) => list && list.map((c) => (c.id === id ? { ...c, ...found } : c))),
            () => {},
          );
        }, 1500),
      );
    };
    const stop = live((event) => {
      if (event.type.startsWith("hub.unit.") && event.subject) {
        setCameras((list) => {
          if (list && list.some((c) => c.id === event.subject)) refresh(event.subject);
          return list;
        });
        return;
      }
      if (!event.type.startsWith("camera.health.")) return;
      refresh(event.subject);
      setCameras((list) =>
        list &&
        list.map((c) =>
          c.id === event.subject
            ? {
                ...c,
                status: statusOf(event.data.state),
                health: { ...(c.health || {}), ...event.data },
                last_probe_at: event.data.checked_at,
              }
            : c,
        ),
      );
    });
    return () => {
      alive = false;
      for (const timer of due.values()) clearTimeout(timer);
      stop();
    };
  }, []);

  const counts = useMemo(() => {
    const found = { total: 0, ok: 0, degraded: 0, offline: 0, unknown: 0 };
    for (const c of cameras || []) {
      found.total += 1;
      const status = summaryOf(c);
      found[status] = (found[status] || 0) + 1;
    }
    return found;
  }, [cameras]);

  const shown = useMemo(() => {
    const needle = search.trim().toLowerCase();
    return (cameras || [])
      .map((c) => [c, summaryOf(c)])
      .filter(([, s]) => filter === "all" || (filter === "problems" ? s === "offline" || s === "degraded" : s === filter))
      .filter(([c]) => !needle || c.name.toLowerCase().includes(needle) || (c.address || "").toLowerCase().includes(needle))
      .sort(([a, sa], [b, sb]) => (ORDER[sa] ?? 9) - (ORDER[sb] ?? 9) || a.name.localeCompare(b.name))
      .map(([c]) => c);
  }, [cameras, filter, search]);

  if (error) return <p class="error">{t("error.generic", { reason: error })}</p>;
  if (cameras === null || layout === null) return <p>{t("loading")}</p>;
  const liveMode = incident || layout.mode === "live";
  // A camera not on this wall (another district's, or gone) still opens: it says so.
  const current = open && (cameras.find((c) => c.id === open.id) || { id: open.id, name: open.id, status: "unknown", missing: true });
  return (
    <section class="wall">
      <div class="toolbar">
        <span class="counts" data-testid="wall-counts">
          <b>{t("wall.total", { n: counts.total })}</b>
          <span class="ok">{t("state.ok")}: {counts.ok}</span>
          <span class={counts.degraded ? "degraded alarm" : "degraded"}>{t("state.degraded")}: {counts.degraded}</span>
          <span class={counts.offline ? "offline alarm" : "offline"} data-testid="count-offline">{t("state.offline")}: {counts.offline}</span>
          <span class="unknown">{t("state.unknown")}: {counts.unknown}</span>
        </span>
        <span class="modes" role="group">
          <button class={liveMode ? "" : "chosen"} aria-pressed={!liveMode} onClick={() => (leaveIncident(), save({ ...layout, mode: "grid" }))} data-testid="mode-grid">
            {t("livewall.mode_grid")}
          </button>
          <button class={liveMode ? "chosen" : ""} aria-pressed={!!liveMode} onClick={() => save({ ...layout, mode: "live" })} data-testid="mode-live">
            {t("livewall.mode_live")}
          </button>
        </span>
        {!liveMode && (
        <>
        <select value={filter} onChange={(e) => setFilter(e.target.value)} aria-label={t("wall.filter")}>
          <option value="all">{t("wall.filter_all")}</option>
          <option value="problems">{t("wall.filter_problems")}</option>
          <option value="ok">{t("state.ok")}</option>
          <option value="unknown">{t("state.unknown")}</option>
        </select>
        <input type="search" placeholder={t("wall.search")} value={typed} onInput={(e) => setTyped(e.target.value)} />
        </>
        )}
      </div>
      {liveMode ? (
        <LiveWall cameras={cameras} layout={layout} save={save} incident={incident} onLeaveIncident={leaveIncident} paused={!!current} onOpen={view} />
      ) : (
        <div class="tiles" data-testid="tiles">
          {shown.map((camera) => (
            <Tile key={camera.id} camera={camera} onOpen={view} />
          ))}
        </div>
      )}
      {current && <CameraView camera={current} onClose={() => view(null)} />}
    </section>
  );
}
