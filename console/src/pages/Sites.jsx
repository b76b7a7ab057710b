// The region's sites: each district hub reachable or cut off, its cameras as its own hub
// lists them, and a remote camera's picture and PTZ — asked of the site when wanted, never a
// picture from before (a cut site says so).
import { useEffect, useState } from "preact/hooks";
import { api, live, loadRegion } from "../api.js";
import { formatTime, language, t } from "../i18n.js";

const MOVES = [
  ["left", { action: "continuous", pan: -0.5, tilt: 0, zoom: 0, timeout_s: 1 }],
  ["right", { action: "continuous", pan: 0.5, tilt: 0, zoom: 0, timeout_s: 1 }],
  ["up", { action: "continuous", pan: 0, tilt: 0.5, zoom: 0, timeout_s: 1 }],
  ["down", { action: "continuous", pan: 0, tilt: -0.5, zoom: 0, timeout_s: 1 }],
  ["home", { action: "home" }],
];

// A failed call to a site, in the operator's language: 503 is a site that is cut off (or its
// hub down), 504 one that did not answer in time; anything else is the site's own answer.
function failure(site, status, detail) {
  if (status === 503) return t("sites.unreachable", { site });
  if (status === 504) return t("sites.no_answer", { site });
  return detail;
}

function RemoteCamera({ site, camera }) {
  const base = `/api/v1/sites/${encodeURIComponent(site)}/cameras/${encodeURIComponent(camera.id)}`;
  const [shot, setShot] = useState(null); // object URL of the latest picture
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const snapshot = () => {
    setBusy(true);
    fetch(`${base}/snapshot.jpg`, { credentials: "same-origin" }).then(async (response) => {
      setBusy(false);
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        setError(failure(site, response.status, body.detail || response.statusText));
        return;
      }
      setError(null);
      setShot(URL.createObjectURL(await response.blob()));
    }, (err) => (setBusy(false), setError(err.message)));
  };
  const move = (command) =>
    api(`${base}/ptz`, { method: "POST", body: command }).then(() => setError(null), (err) => setError(failure(site, err.status, err.message)));
  return (
    <li class={`remote-camera status-${camera.status}`} data-testid={`remote-${camera.id}`}>
      <b>{camera.name}</b> · {t(`state.${camera.status}`)}
      {camera.reason && <small> · {camera.reason}</small>}{" "}
      <button onClick={snapshot} disabled={busy} data-testid={`remote-snapshot-${camera.id}`}>{t("sites.snapshot")}</button>
      {MOVES.map(([name, command]) => (
        <button class="ptz" onClick={() => move(command)} data-testid={`remote-ptz-${name}-${camera.id}`} title={t(`ptz.${name}`)}>{t(`ptz.${name}`)}</button>
      ))}
      {error && <p class="error" role="alert" data-testid={`remote-error-${camera.id}`}>{error}</p>}
      {shot && <img class="remote-shot" src={shot} alt={camera.name} data-testid={`remote-image-${camera.id}`} />}
    </li>
  );
}

function Cameras({ site }) {
  const [cameras, setCameras] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    api(`/api/v1/sites/${encodeURIComponent(site)}/cameras`).then(setCameras, (err) => setError(failure(site, err.status, err.message)));
  }, [site]);
  if (error) return <p class="error" role="alert" data-testid={`site-error-${site}`}>{error}</p>;
  if (!cameras) return <p>{t("loading")}</p>;
  return (
    <ul class="remote-cameras">
      {cameras.map((camera) => <RemoteCamera site={site} camera={camera} />)}
    </ul>
  );
}

export function Sites() {
  const [page, setPage] = useState(null);
  const [open, setOpen] = useState(null);
  const [region, setRegion] = useState(null);
  useEffect(() => {
    loadRegion().then(setRegion);
  }, []);
  const named = (slug) => {
    const found = region && region.municipalities.find((m) => m.id === slug);
    return found ? (language === "ru" ? found.name_ru : found.name_en) : slug;
  };
  useEffect(() => {
    const load = () => api("/api/v1/sites").then(setPage, () => {});
    load();
    const timer = setInterval(load, 5000);
    const stop = live((event) => event.type.startsWith("federation.site.") && load());
    return () => (clearInterval(timer), stop());
  }, []);
  if (!page) return <p>{t("loading")}</p>;
  return (
    <section class="sites">
      <h2>{t("sites.title")}</h2>
      {!page.connected && <p class="error">{t("sites.not_connected")}</p>}
      <table class="list">
        <thead>
          <tr>
            <th>{t("sites.site")}</th>
            <th>{t("sites.link")}</th>
            <th>{t("sites.municipalities")}</th>
            <th>{t("sites.last_event")}</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {page.items.map((s) => (
            <tr class={s.reachable === false ? "lagging-row" : ""} data-testid={`site-row-${s.site}`} data-reachable={String(s.reachable)}>
              <td>{s.site}</td>
              <td>{s.reachable === false ? t("sites.cut_off") : s.reachable ? t("sites.reachable") : "—"}</td>
              <td>{s.municipalities.map(named).join(", ")}</td>
              <td>{s.last_event_at ? formatTime(s.last_event_at) : "—"}</td>
              <td>
                <button onClick={() => setOpen(open === s.site ? null : s.site)} data-testid={`site-open-${s.site}`}>{t("sites.cameras")}</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {open && (
        <div class="site-cameras" data-testid={`site-cameras-${open}`}>
          <h3>{t("sites.cameras_of", { site: open })}</h3>
          <Cameras site={open} />
        </div>
      )}
    </section>
  );
}
