// The camera wall: every camera of the district with its picture, state and the picture's age.
// Broken cameras come first, in red; the page refreshes only the tiles on screen, so a wall of
// 1,000 cameras costs what a screenful does.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, live } from "../api.js";
import { formatAge, formatTime, t } from "../i18n.js";

const REFRESH_S = 10;
const ORDER = { offline: 0, degraded: 1, unknown: 2, ok: 3 };

// As the API sums it up: black or frozen is degraded, anything else not ok is offline.
export function statusOf(state) {
  if (state === "ok") return "ok";
  return state === "black" || state === "frozen" ? "degraded" : "offline";
}

export function stateOf(camera) {
  // The honest state: a black or frozen picture is as bad as no picture.
  return (camera.health && camera.health.state) || (camera.status === "unknown" ? "unknown" : camera.status);
}

// One observer for all tiles: a tile refreshes while it is on screen.
const visible = new Set();
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

async function fetchPicture(id, maxAge) {
  const response = await fetch(`/api/v1/cameras/${encodeURIComponent(id)}/snapshot.jpg?max_age=${maxAge}`, {
    credentials: "same-origin",
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const age = Number(response.headers.get("age") || 0);
  const blob = await response.blob();
  const fetchedAt = Date.now();
  return { url: URL.createObjectURL(blob), takenAt: fetchedAt - age * 1000, fetchedAt };
}

function useNow(every) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const id = setInterval(() => setNow(Date.now()), every);
    return () => clearInterval(id);
  }, [every]);
  return now;
}

function Tile({ camera, now, onOpen }) {
  const ref = useRef(null);
  const [picture, setPicture] = useState(null);
  const [failed, setFailed] = useState(false);
  const state = stateOf(camera);

  useEffect(() => {
    let timer = null;
    let alive = true;
    let current = null;
    const tile = {
      wake() {
        if (!timer) load();
      },
    };
    const load = async () => {
      timer = null;
      if (!alive) return;
      if (visible.has(tile)) {
        try {
          const next = await fetchPicture(camera.id, REFRESH_S);
          if (!alive) return URL.revokeObjectURL(next.url);
          if (current) URL.revokeObjectURL(current);
          current = next.url;
          setPicture(next);
          setFailed(false);
        } catch {
          if (alive) setFailed(true);
        }
      }
      // Staggered, so the tiles of a screen do not all ask at once.
      if (alive && visible.has(tile)) timer = setTimeout(load, (REFRESH_S + Math.random() * 3) * 1000);
    };
    const stop = observe(ref.current, tile);
    return () => {
      alive = false;
      stop();
      clearTimeout(timer);
      if (current) URL.revokeObjectURL(current);
    };
  }, [camera.id]);

  const age = picture ? Math.max(0, (Math.max(now, picture.fetchedAt) - picture.takenAt) / 1000) : null;
  return (
    <button class={`tile state-${state}`} ref={ref} onClick={() => onOpen(camera)} data-testid={`tile-${camera.id}`} data-state={state}>
      {picture && !failed ? <img src={picture.url} alt="" /> : <div class="no-picture">{failed ? t("wall.no_picture") : t("loading")}</div>}
      <span class="badge" data-testid="badge">{t(`state.${state}`)}</span>
      <span class="caption">
        <span class="name">{camera.name}</span>
        <span class={`age ${age != null && age > 60 ? "stale" : ""}`}>{formatAge(age)}</span>
      </span>
    </button>
  );
}

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
            <td>{e.data.reason || ""}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function CameraView({ camera, onClose }) {
  const [picture, setPicture] = useState(null);
  useEffect(() => {
    let alive = true;
    let current = null;
    let timer = null;
    const load = async () => {
      try {
        const next = await fetchPicture(camera.id, 2);
        if (!alive) return URL.revokeObjectURL(next.url);
        if (current) URL.revokeObjectURL(current);
        current = next.url;
        setPicture(next);
      } catch {
        if (alive) setPicture(null);
      }
      if (alive) timer = setTimeout(load, 2000);
    };
    load();
    const key = (e) => e.key === "Escape" && onClose();
    window.addEventListener("keydown", key);
    return () => {
      alive = false;
      clearTimeout(timer);
      if (current) URL.revokeObjectURL(current);
      window.removeEventListener("keydown", key);
    };
  }, [camera.id]);
  const state = stateOf(camera);
  return (
    <div class="modal" role="dialog" aria-modal="true" data-testid="camera-view" onClick={(e) => e.target === e.currentTarget && onClose()}>
      <div class="panel wide">
        <header>
          <h2>{camera.name}</h2>
          <span class={`badge state-${state}`}>{t(`state.${state}`)}</span>
          <button class="link" onClick={onClose} data-testid="close">{t("close")}</button>
        </header>
        <div class="camera-view">
          <div class="big">{picture ? <img src={picture.url} alt={camera.name} /> : <div class="no-picture">{t("wall.no_picture")}</div>}</div>
          <aside>
            <p>{camera.address}</p>
            {camera.health && camera.health.reason && <p class="reason">{camera.health.reason}</p>}
            <p class="muted">{t("wall.last_probe", { when: formatTime(camera.last_probe_at) })}</p>
            <Ptz camera={camera} />
          </aside>
        </div>
        <h3>{t("wall.probes")}</h3>
        <Probes camera={camera} />
      </div>
    </div>
  );
}

export function Wall() {
  const [cameras, setCameras] = useState(null);
  const [error, setError] = useState(null);
  const [filter, setFilter] = useState("all");
  const [search, setSearch] = useState("");
  const [open, setOpen] = useState(null);
  const now = useNow(5000);

  useEffect(() => {
    let alive = true;
    api("/api/v1/cameras?limit=5000")
      .then((page) => alive && setCameras(page.items))
      .catch((err) => alive && setError(err.message));
    const stop = live((event) => {
      if (!event.type.startsWith("camera.health.")) return;
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
      stop();
    };
  }, []);

  const counts = useMemo(() => {
    const found = { total: 0, ok: 0, degraded: 0, offline: 0, unknown: 0 };
    for (const c of cameras || []) {
      found.total += 1;
      found[c.status] = (found[c.status] || 0) + 1;
    }
    return found;
  }, [cameras]);

  const shown = useMemo(() => {
    const needle = search.trim().toLowerCase();
    return (cameras || [])
      .filter((c) => filter === "all" || (filter === "problems" ? c.status === "offline" || c.status === "degraded" : c.status === filter))
      .filter((c) => !needle || c.name.toLowerCase().includes(needle) || (c.address || "").toLowerCase().includes(needle))
      .sort((a, b) => (ORDER[a.status] ?? 9) - (ORDER[b.status] ?? 9) || a.name.localeCompare(b.name));
  }, [cameras, filter, search]);

  if (error) return <p class="error">{t("error.generic", { reason: error })}</p>;
  if (cameras === null) return <p>{t("loading")}</p>;
  const current = open && cameras.find((c) => c.id === open.id);
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
        <select value={filter} onChange={(e) => setFilter(e.target.value)} aria-label={t("wall.filter")}>
          <option value="all">{t("wall.filter_all")}</option>
          <option value="problems">{t("wall.filter_problems")}</option>
          <option value="ok">{t("state.ok")}</option>
          <option value="unknown">{t("state.unknown")}</option>
        </select>
        <input type="search" placeholder={t("wall.search")} value={search} onInput={(e) => setSearch(e.target.value)} />
      </div>
      <div class="tiles" data-testid="tiles">
        {shown.map((camera) => (
          <Tile key={camera.id} camera={camera} now={now} onOpen={setOpen} />
        ))}
      </div>
      {current && <CameraView camera={current} onClose={() => setOpen(null)} />}
    </section>
  );
}
