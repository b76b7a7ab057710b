// Incidents, open first, and one incident with the snapshots its nearest cameras gave.
import { useEffect, useState } from "preact/hooks";
import { api, live } from "../api.js";
import { formatTime, has, t } from "../i18n.js";
import { go } from "../router.js";
import { ClockBadge, Handling } from "./Handling.jsx";

// An incident's type and services as the operator reads them; a value the catalog does not
// know (a 112 platform's own type name) is shown as it came.
export function typeName(type) {
  if (!type) return "";
  return has(`incident_type.${type}`) ? t(`incident_type.${type}`) : type;
}

export function serviceNames(services) {
  return (services || []).map((s) => (has(`service.${s}`) ? t(`service.${s}`) : s)).join(", ");
}

// The camera's large view playing its recording from a minute before the incident was reported.
function footageUrl(cameraId, when) {
  const at = new Date(Date.parse(when) - 60 * 1000).toISOString();
  return `/console/wall/${encodeURIComponent(cameraId)}?at=${encodeURIComponent(at)}`;
}

function Detail({ id }) {
  const [record, setRecord] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let alive = true;
    const load = () =>
      api(`/api/v1/incidents/${encodeURIComponent(id)}`).then(
        (found) => alive && setRecord(found),
        (err) => alive && setError(err.message),
      );
    load();
    const stop = live((event) => event.type.startsWith("incident.") && event.subject === id && load());
    return () => {
      alive = false;
      stop();
    };
  }, [id]);
  if (!record) return error ? <p class="error">{t("error.generic", { reason: error })}</p> : <p>{t("loading")}</p>;
  const i = record.incident;
  const close = () =>
    api(`/api/v1/incidents/${encodeURIComponent(id)}/close`, { method: "POST" }).then(setRecord, (err) => setError(err.message));
  return (
    <article class="incident" data-testid="incident">
      <button class="link" onClick={() => go("/console/incidents")}>← {t("incidents.back")}</button>
      <h2>{i.title || typeName(i.type) || i.description || t("incidents.untitled")}</h2>
      {i.status !== "closed" && (
        <button onClick={close} data-testid="incident-close">{t("incidents.close")}</button>
      )}
      {error && <p class="error">{error}</p>}
      <dl>
        <dt>{t("incidents.status")}</dt>
        <dd>{t(`incidents.${i.status || "open"}`)}</dd>
        <dt>{t("incidents.type")}</dt>
        <dd>{typeName(i.type) || "—"}</dd>
        <dt>{t("incidents.reported")}</dt>
        <dd>{formatTime(i.reported_at || record.created_at)}</dd>
        <dt>{t("incidents.address")}</dt>
        <dd>{i.address || (i.location ? `${i.location.lat}, ${i.location.lon}` : "—")}</dd>
        <dt>{t("incidents.services")}</dt>
        <dd>{serviceNames(i.services) || "—"}</dd>
        <dt>{t("incidents.victims")}</dt>
        <dd>{i.victims ?? "—"}</dd>
        <dt>{t("incidents.caller")}</dt>
        <dd>{i.caller || "—"}</dd>
        <dt>{t("incidents.origin")}</dt>
        <dd>{i.origin || "—"}</dd>
      </dl>
      {i.description && <p class="description">{i.description}</p>}
      <Handling id={id} />
      <h3>{t("incidents.cameras")}</h3>
      {(i.cameras || []).length > 0 && (
        <button onClick={() => go(`/console/wall?incident=${encodeURIComponent(id)}`)} data-testid="incident-live">
          {t("livewall.incident_cameras")}
        </button>
      )}
      {(i.cameras || []).length === 0 && <p class="muted">{i.location ? t("incidents.no_cameras") : t("incidents.no_location")}</p>}
      <div class="tiles">
        {(i.cameras || []).map((c) => (
          <figure class={`tile state-${c.health || "unknown"}`} data-testid={`incident-camera-${c.id}`}>
            {c.snapshot ? <img src={c.snapshot} alt={c.name || c.id} /> : <div class="no-picture">{c.snapshot_error || t("loading")}</div>}
            <figcaption>
              {c.name || c.id} · {t("incidents.distance", { m: Math.round(c.distance_m) })}
              {c.snapshot_at && ` · ${formatTime(c.snapshot_at)}`}
              {" · "}
              <a
                href={footageUrl(c.id, i.reported_at || record.created_at)}
                onClick={(e) => {
                  e.preventDefault();
                  go(footageUrl(c.id, i.reported_at || record.created_at));
                }}
                data-testid={`incident-footage-${c.id}`}
              >
                {t("incidents.footage")}
              </a>
            </figcaption>
          </figure>
        ))}
      </div>
    </article>
  );
}

// The first clock still running (or missed) of each open incident under a norm.
function useClocks(active) {
  const [clocks, setClocks] = useState({});
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!active) return undefined;
    let alive = true;
    const load = () =>
      api("/api/v1/duty/incidents").then(
        (page) => alive && setClocks(Object.fromEntries(page.items.map((h) => [h.incident, h]))),
        () => {},
      );
    load();
    const stop = live((event) => event.type.startsWith("duty.") && load());
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => {
      alive = false;
      stop();
      clearInterval(timer);
    };
  }, [active]);
  return [clocks, now];
}

function FirstClock({ handling, now }) {
  if (!handling) return "—";
  const clock = handling.clocks.find((c) => !c.done_at);
  if (!clock) return t("duty.done");
  return <ClockBadge clock={clock} now={now} testid={`list-clock-${handling.incident}`} />;
}

export function Incidents({ rest }) {
  const [items, setItems] = useState(null);
  const [error, setError] = useState(null);
  const id = rest && rest[0];
  const [clocks, now] = useClocks(!id);

  useEffect(() => {
    if (id) return undefined;
    let alive = true;
    const load = () =>
      api("/api/v1/incidents?limit=200").then(
        (page) => alive && setItems(page.items),
        (err) => alive && setError(err.message),
      );
    load();
    const stop = live((event) => event.type.startsWith("incident.") && load());
    return () => {
      alive = false;
      stop();
    };
  }, [id]);

  if (id) return <Detail id={decodeURIComponent(id)} />;
  if (error) return <p class="error">{t("error.generic", { reason: error })}</p>;
  if (items === null) return <p>{t("loading")}</p>;
  const sorted = [...items].sort((a, b) => (a.closed_at ? 1 : 0) - (b.closed_at ? 1 : 0));
  return (
    <table class="list" data-testid="incidents">
      <thead>
        <tr>
          <th>{t("incidents.reported")}</th>
          <th>{t("incidents.what")}</th>
          <th>{t("incidents.type")}</th>
          <th>{t("incidents.address")}</th>
          <th>{t("incidents.services")}</th>
          <th>{t("incidents.status")}</th>
          <th>{t("incidents.clock")}</th>
        </tr>
      </thead>
      <tbody>
        {sorted.length === 0 && (
          <tr>
            <td colspan="7" class="muted">{t("incidents.none")}</td>
          </tr>
        )}
        {sorted.map((r) => (
          <tr
            class={`clickable ${r.closed_at ? "closed" : `sev-${r.severity || "moderate"}`}`}
            data-testid={`incident-row-${r.id}`}
            onClick={() => go(`/console/incidents/${encodeURIComponent(r.id)}`)}
          >
            <td>{formatTime(r.incident.reported_at || r.created_at)}</td>
            <td>{r.incident.title || typeName(r.incident.type) || r.incident.description || t("incidents.untitled")}</td>
            <td>{typeName(r.incident.type) || "—"}</td>
            <td>{r.incident.address || (r.incident.location ? `${r.incident.location.lat}, ${r.incident.location.lon}` : "—")}</td>
            <td>{serviceNames(r.incident.services) || "—"}</td>
            <td>{t(`incidents.${r.incident.status || "open"}`)}</td>
            <td>{r.closed_at ? "" : <FirstClock handling={clocks[r.id]} now={now} />}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
