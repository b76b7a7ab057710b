// The live wall: 1, 4, 9 or 16 tiles of live video, the cameras the operator put there (kept
// per person by the hub, so the layout follows them to another workstation), or an incident's
// nearest cameras. With "follow" on, the hub's triggers bring cameras onto the wall by
// themselves (focus.js). A tile streams only while it is on screen, the tab is shown and no
// large view covers the wall; all tiles share the page's one WebSocket (live.js).
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, live } from "../api.js";
import { t } from "../i18n.js";
import { focusOf, place } from "../focus.js";
import { LivePlayer } from "../live.js";
import { videoReason, videoState } from "../videoText.js";

export const SIZES = [1, 4, 9, 16];

// The smallest layout that holds n cameras.
export function sizeFor(n) {
  return SIZES.find((s) => s >= n) || 16;
}

function focusText(reason) {
  switch (reason) {
    case "incident":
      return t("livewall.focus_incident");
    case "siren":
      return t("livewall.focus_siren");
    case "hotlist":
      return t("livewall.focus_hotlist");
    default:
      return t("livewall.focus_health");
  }
}

function useShown(ref) {
  const [onScreen, setOnScreen] = useState(false);
  const [tabShown, setTabShown] = useState(!document.hidden);
  useEffect(() => {
    const observer = new IntersectionObserver((entries) => setOnScreen(entries.some((e) => e.isIntersecting)));
    observer.observe(ref.current);
    const visibility = () => setTabShown(!document.hidden);
    document.addEventListener("visibilitychange", visibility);
    return () => {
      observer.disconnect();
      document.removeEventListener("visibilitychange", visibility);
    };
  }, []);
  return onScreen && tabShown;
}

function LiveTile({ index, camera, cameraId, focus, paused, onOpen, onClear }) {
  const ref = useRef(null);
  const video = useRef(null);
  const shown = useShown(ref);
  const [state, setState] = useState({ state: "connecting", reason: null });
  const streaming = shown && !paused;
  useEffect(() => {
    if (!streaming) return undefined;
    const player = new LivePlayer(video.current, cameraId, (name, reason) => setState({ state: name, reason }));
    player.start();
    return () => player.destroy();
  }, [cameraId, streaming]);
  const name = camera ? camera.name : cameraId;
  return (
    <div
      class={`live-tile video-${state.state} ${focus ? `focus focus-${focus.reason}` : ""}`}
      ref={ref}
      data-testid={`live-tile-${index}`}
      data-camera={cameraId}
      data-state={streaming ? state.state : "paused"}
      data-reason={state.reason || ""}
    >
      <video ref={video} muted autoplay playsinline disablepictureinpicture onDblClick={() => camera && onOpen(camera)} />
      {focus && (
        <span class="focus-why" data-testid="focus-why">
          {focusText(focus.reason)}
          {focus.label ? `: ${focus.label}` : ""}
        </span>
      )}
      <span class="caption">
        <span class="name">{name}</span>
        <span class={`video-state video-${state.state}`}>
          {streaming ? videoState(state.state) : t("livewall.paused")}
          {streaming && state.state === "unavailable" && `: ${videoReason(state.reason)}`}
        </span>
        <span class="actions">
          {camera && (
            <button class="link" onClick={() => onOpen(camera)} title={t("livewall.open")} data-testid="live-open">
              ⤢
            </button>
          )}
          <button class="link" onClick={onClear} title={t("livewall.clear")} data-testid="live-clear">
            ×
          </button>
        </span>
      </span>
    </div>
  );
}

function EmptyTile({ index, cameras, onPick }) {
  return (
    <div class="live-tile empty" data-testid={`live-tile-${index}`} data-state="empty">
      <select data-testid={`live-pick-${index}`} value="" onChange={(e) => e.target.value && onPick(e.target.value)} aria-label={t("livewall.pick")}>
        <option value="">{t("livewall.pick")}</option>
        {cameras.map((c) => (
          <option value={c.id}>{c.name}</option>
        ))}
      </select>
    </div>
  );
}

// layout: the operator's saved {mode, size, cameras, follow}; save(layout) keeps it.
// incident: {id, title, cameras} shown instead, unsaved, until the operator goes back.
export function LiveWall({ cameras, layout, save, incident, onLeaveIncident, paused, onOpen }) {
  const byId = useMemo(() => new Map((cameras || []).map((c) => [c.id, c])), [cameras]);
  const sorted = useMemo(() => [...(cameras || [])].sort((a, b) => a.name.localeCompare(b.name)), [cameras]);
  const [overlay, setOverlay] = useState({}); // tile index -> {camera, reason, label, at}
  const size = incident ? sizeFor(incident.cameras.length) : layout.size;
  const slots = useMemo(() => {
    const from = incident ? incident.cameras : layout.cameras;
    return Array.from({ length: size }, (_, i) => from[i] || null);
  }, [incident, layout, size]);

  // Follow: the hub's triggers bring cameras onto the wall.
  const sirens = useRef(new Map());
  const state = useRef({ slots, byId });
  state.current = { slots, byId };
  useEffect(() => {
    if (!layout.follow || incident) return undefined;
    let alive = true;
    api("/api/v1/sirens").then(
      (page) => alive && (sirens.current = new Map(page.items.map((s) => [s.id, s]))),
      () => {},
    );
    const seen = new Map(); // focus key -> when: an incident's updates do not reshuffle the wall
    const stop = live((event) => {
      const focus = focusOf(event, { cameras: state.current.byId, sirens: sirens.current });
      if (!focus) return;
      const now = Date.now();
      if (seen.has(focus.key) && now - seen.get(focus.key) < 60000) return;
      seen.set(focus.key, now);
      setOverlay((current) => place(focus, state.current.slots, current, now));
    });
    return () => {
      alive = false;
      stop();
    };
  }, [layout.follow, incident]);
  useEffect(() => setOverlay({}), [size, incident]);

  const setSlot = (index, camera) => {
    const next = slots.slice();
    next[index] = camera;
    while (next.length && !next[next.length - 1]) next.pop();
    save({ ...layout, cameras: next });
  };
  const clear = (index) => {
    if (overlay[index]) {
      const { [index]: _, ...rest } = overlay;
      setOverlay(rest);
    } else if (!incident) setSlot(index, null);
  };

  return (
    <div class="live-wall">
      <div class="toolbar live-toolbar">
        {incident ? (
          <span class="incident-banner" data-testid="live-incident">
            {t("livewall.incident", { title: incident.title })}
            <button class="link" onClick={onLeaveIncident} data-testid="live-back">
              {t("livewall.back")}
            </button>
          </span>
        ) : (
          <>
            <span class="layouts" role="group" aria-label={t("livewall.layout")}>
              {SIZES.map((n) => (
                <button class={n === layout.size ? "chosen" : ""} aria-pressed={n === layout.size} onClick={() => save({ ...layout, size: n, cameras: layout.cameras.slice(0, n) })} data-testid={`layout-${n}`}>
                  {n}
                </button>
              ))}
            </span>
            <label class="follow">
              <input type="checkbox" checked={layout.follow} onChange={(e) => save({ ...layout, follow: e.target.checked })} data-testid="follow" />
              {t("livewall.follow")}
            </label>
          </>
        )}
      </div>
      <div class={`live-grid size-${size}`} data-testid="live-grid" data-size={size}>
        {slots.map((id, index) => {
          const shown = overlay[index] ? overlay[index].camera : id;
          if (!shown) return <EmptyTile key={`empty-${index}`} index={index} cameras={sorted} onPick={(camera) => setSlot(index, camera)} />;
          return (
            <LiveTile
              key={`${index}-${shown}`}
              index={index}
              cameraId={shown}
              camera={byId.get(shown)}
              focus={overlay[index]}
              paused={paused}
              onOpen={onOpen}
              onClear={() => clear(index)}
            />
          );
        })}
      </div>
    </div>
  );
}
