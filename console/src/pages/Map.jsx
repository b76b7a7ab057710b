// Cameras, sirens and open incidents with their states on the region's outlines.
import { useEffect, useState } from "preact/hooks";
import { api, live } from "../api.js";
import { t } from "../i18n.js";
import { go } from "../router.js";
import { RegionMap } from "./RegionMap.jsx";
import { typeName } from "./Incidents.jsx";
import { stateOf, statusOf, summaryOf } from "./Wall.jsx";

const CAMERA = { ok: "#2e9d5b", degraded: "#e0a000", offline: "#e5383b", unknown: "#6b7785" };

export function Map({ user }) {
  const [cameras, setCameras] = useState([]);
  const [sirens, setSirens] = useState([]);
  const [incidents, setIncidents] = useState([]);
  const [show, setShow] = useState({ cameras: true, sirens: true, incidents: true });

  useEffect(() => {
    const load = () =>
      Promise.all([
        api("/api/v1/cameras?limit=5000").then((p) => setCameras(p.items)),
        api("/api/v1/sirens").then((p) => setSirens(p.items)),
        api("/api/v1/incidents?status=open&limit=1000").then((p) => setIncidents(p.items)),
      ]).catch(() => {});
    load();
    let pending = null;
    const stop = live((event) => {
      if (event.type.startsWith("camera.health.")) {
        setCameras((list) => list.map((c) => (c.id === event.subject ? { ...c, status: statusOf(event.data.state), health: { ...(c.health || {}), ...event.data } } : c)));
      } else if ((event.type.startsWith("incident.") || event.type.startsWith("siren.")) && !pending) {
        pending = setTimeout(() => ((pending = null), load()), 1000);
      }
    });
    return () => {
      clearTimeout(pending);
      stop();
    };
  }, []);

  const markers = [
    ...(show.cameras
      ? cameras.map((c) => ({
          lat: c.lat,
          lon: c.lon,
          colour: CAMERA[summaryOf(c)] || CAMERA.unknown,
          label: `${c.name}: ${t(`state.${stateOf(c)}`)}`,
          radius: summaryOf(c) === "ok" ? 4 : 6,
        }))
      : []),
    ...(show.sirens
      ? sirens.map((s) => ({
          lat: s.lat,
          lon: s.lon,
          colour: s.instance_state !== "running" || s.ready === false ? "#e5383b" : "#b37feb",
          label: `${s.name}: ${s.instance_state === "running" ? (s.ready === false ? t("map.not_ready") : t("map.ready")) : s.instance_state}`,
          radius: 7,
        }))
      : []),
    ...(show.incidents
      ? incidents
          .filter((r) => r.incident.location)
          .map((r) => ({
            lat: r.incident.location.lat,
            lon: r.incident.location.lon,
            colour: "#ffffff",
            label: r.incident.title || typeName(r.incident.type),
            radius: 9,
            onClick: () => go(`/console/incidents/${encodeURIComponent(r.id)}`),
          }))
      : []),
  ];
  const toggle = (key) => setShow({ ...show, [key]: !show[key] });
  return (
    <section class="map-page">
      <div class="toolbar">
        {["cameras", "sirens", "incidents"].map((key) => (
          <label>
            <input type="checkbox" checked={show[key]} onChange={() => toggle(key)} /> {t(`map.${key}`)}
          </label>
        ))}
        <span class="legend">
          <i style="background:#2e9d5b" /> {t("state.ok")} <i style="background:#e0a000" /> {t("state.degraded")} <i style="background:#e5383b" /> {t("state.offline")}{" "}
          <i style="background:#b37feb" /> {t("map.siren")} <i style="background:#fff" /> {t("map.incident")}
        </span>
      </div>
      <RegionMap markers={markers} focus={user.municipalities} height={Math.max(400, window.innerHeight - 140)} />
    </section>
  );
}
