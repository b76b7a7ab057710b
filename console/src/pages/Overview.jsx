// The district at a glance: cameras by state, siren readiness, open incidents, alerts in
// progress. Refreshed when something that changes them happens (live stream), at most every
// few seconds, and every minute regardless.
import { useEffect, useState } from "preact/hooks";
import { api, live } from "../api.js";
import { t } from "../i18n.js";
import { go } from "../router.js";

const WATCHED = ["camera.health.", "siren.", "incident.", "alert."];

async function load() {
  const [cameras, sirens, incidents, alerts] = await Promise.all([
    api("/api/v1/reports/cameras"),
    api("/api/v1/reports/sirens"),
    api("/api/v1/incidents?status=open&limit=1000"),
    api("/api/v1/alerts?limit=100"),
  ]);
  const devices = sirens.districts.reduce((n, d) => n + d.devices, 0);
  const checked = sirens.districts.some((d) => d.technical_at);
  const ready = sirens.districts.reduce((n, d) => n + d.ready, 0);
  return {
    cameras: cameras.total,
    lagging: cameras.districts.filter((d) => d.lagging),
    sirens: { devices, ready, checked, pct: devices && checked ? Math.round((100 * ready) / devices) : null },
    incidents: incidents.items.length,
    // In progress: still activating or waiting for a second person, or its signal still sounding.
    alerts: alerts.items.filter(
      (a) =>
        a.phase === "activating" ||
        a.phase === "pending_confirmation" ||
        (a.phase === "completed" && Date.parse(a.created) + (a.message.signal_seconds || 0) * 1000 > Date.now()),
    ).length,
  };
}

function Card({ title, value, alarm, testid, onClick, children }) {
  return (
    <button class={`card ${alarm ? "alarm" : ""}`} onClick={onClick} data-testid={testid}>
      <span class="title">{title}</span>
      <span class="value">{value}</span>
      {children}
    </button>
  );
}

export function Overview() {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);

  useEffect(() => {
    let alive = true;
    let pending = null;
    const refresh = () => {
      pending = null;
      load().then(
        (found) => alive && (setData(found), setError(null)),
        (err) => alive && setError(err.message),
      );
    };
    refresh();
    const every = setInterval(refresh, 60000);
    const stop = live((event) => {
      if (!pending && WATCHED.some((prefix) => event.type.startsWith(prefix))) pending = setTimeout(refresh, 1500);
    });
    return () => {
      alive = false;
      clearInterval(every);
      clearTimeout(pending);
      stop();
    };
  }, []);

  if (error && !data) return <p class="error">{t("error.generic", { reason: error })}</p>;
  if (!data) return <p>{t("loading")}</p>;
  const c = data.cameras;
  return (
    <section class="overview">
      <div class="cards">
        <Card title={t("overview.cameras")} value={`${c.ok} / ${c.total}`} alarm={c.offline + c.degraded > 0} testid="card-cameras" onClick={() => go("/console/wall")}>
          <span class="detail">
            <span class="offline">{t("state.offline")}: {c.offline}</span> · <span class="degraded">{t("state.degraded")}: {c.degraded}</span> · {t("state.unknown")}: {c.unknown}
          </span>
          {c.availability_pct != null && <span class="detail">{t("overview.availability", { pct: c.availability_pct.toFixed(1) })}</span>}
        </Card>
        <Card title={t("overview.sirens")} value={data.sirens.pct == null ? "—" : `${data.sirens.pct}%`} alarm={data.sirens.pct != null && data.sirens.pct < 100} testid="card-sirens">
          <span class="detail">
            {data.sirens.checked || !data.sirens.devices
              ? t("overview.sirens_ready", { ready: data.sirens.ready, devices: data.sirens.devices })
              : t("overview.sirens_unchecked", { devices: data.sirens.devices })}
          </span>
        </Card>
        <Card title={t("overview.incidents")} value={data.incidents} alarm={data.incidents > 0} testid="card-incidents" onClick={() => go("/console/incidents")} />
        <Card title={t("overview.alerts")} value={data.alerts} alarm={data.alerts > 0} testid="card-alerts" onClick={() => go("/console/alerts")} />
      </div>
      {data.lagging.length > 0 && (
        <div class="lagging">
          <h3>{t("overview.lagging")}</h3>
          <ul>
            {data.lagging.map((d) => (
              <li>
                <b>{d.name}</b>: {d.why.join("; ")}
              </li>
            ))}
          </ul>
        </div>
      )}
      {error && <p class="error">{t("error.generic", { reason: error })}</p>}
    </section>
  );
}
