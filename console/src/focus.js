// The live wall's "follow": which cameras a hub event brings onto the wall, and why. The hub's
// own triggers, as they reach the console on its event stream (already limited to the
// operator's municipalities): an incident and its nearest cameras, a siren sounding (the
// cameras around it), a hotlist plate (the camera that read it), a camera's health turning bad.
// Pure: (event, what the page knows) -> {key, reason, cameras, label} | null.

const NEAR_M = 1000; // cameras this close to a sounding siren are shown
const MAX_CAMERAS = 4; // one event never takes more tiles than this

export function distanceM(a, b) {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371000 * Math.asin(Math.sqrt(h));
}

function nearest(point, cameras) {
  return cameras
    .filter((c) => c.lat != null && c.lon != null)
    .map((c) => [c, distanceM(point, c)])
    .filter(([, d]) => d <= NEAR_M)
    .sort((a, b) => a[1] - b[1])
    .slice(0, MAX_CAMERAS)
    .map(([c]) => c.id);
}

// cameras: Map id -> camera (the operator's), sirens: Map id -> siren.
export function focusOf(event, { cameras, sirens }) {
  const type = event.type || "";
  const data = event.data || {};
  const known = (ids) => ids.filter((id) => cameras.has(id)).slice(0, MAX_CAMERAS);
  if ((type === "incident.created" || type === "incident.updated") && data.status !== "closed") {
    const ids = known((data.cameras || []).map((c) => c.id));
    if (!ids.length) return null;
    return { key: `incident:${event.subject}`, reason: "incident", cameras: ids, label: data.title || data.address || "" };
  }
  if (type === "alert.device.activated") {
    const siren = sirens.get(event.subject);
    if (!siren || siren.lat == null || siren.lon == null) return null;
    const ids = known(nearest(siren, [...cameras.values()]));
    if (!ids.length) return null;
    return { key: `siren:${event.subject}:${data.alert || ""}`, reason: "siren", cameras: ids, label: siren.name || siren.id };
  }
  if (type === "police.hotlist.hit" && data.camera) {
    const ids = known([data.camera]);
    if (!ids.length) return null;
    return { key: `hotlist:${data.read_id || event.id}`, reason: "hotlist", cameras: ids, label: data.plate || "" };
  }
  if (type.startsWith("camera.health.") && event.subject && data.state && data.state !== "ok") {
    const ids = known([event.subject]);
    if (!ids.length) return null;
    return { key: `health:${event.subject}:${data.state}`, reason: "health", cameras: ids, label: data.state };
  }
  return null;
}

// Where the focused cameras go: empty tiles first, then tiles the wall filled itself before
// (oldest first), then the operator's own tiles from the last one back (shown over them until
// dismissed). Cameras already on the wall stay where they are. Returns the new overlay.
export function place(focus, slots, overlay, at) {
  const size = slots.length;
  const next = { ...overlay };
  const showing = (i) => (next[i] ? next[i].camera : slots[i]);
  const onWall = new Set(Array.from({ length: size }, (_, i) => showing(i)).filter(Boolean));
  const taken = new Set();
  for (const camera of focus.cameras) {
    if (onWall.has(camera)) {
      const i = Array.from({ length: size }, (_, k) => k).find((k) => showing(k) === camera);
      if (next[i]) next[i] = { ...next[i], at, reason: focus.reason, label: focus.label };
      taken.add(i);
      continue;
    }
    const free = (i) => !taken.has(i);
    let i = Array.from({ length: size }, (_, k) => k).find((k) => free(k) && !showing(k));
    if (i === undefined) {
      const auto = Object.keys(next)
        .map(Number)
        .filter(free)
        .sort((a, b) => next[a].at - next[b].at);
      i = auto[0];
    }
    if (i === undefined) i = Array.from({ length: size }, (_, k) => size - 1 - k).find(free);
    if (i === undefined) break;
    next[i] = { camera, reason: focus.reason, label: focus.label, at };
    taken.add(i);
    onWall.add(camera);
  }
  return next;
}
