// Live events as they happen, newest first, with a type filter (NATS pattern prefix).
import { useEffect, useState } from "preact/hooks";
import { api, live, loadRegion } from "../api.js";
import { formatTime, has, language, t } from "../i18n.js";
import { reasonText } from "./Wall.jsx";

const KEEP = 500;
const GROUPS = ["", "camera.", "incident.", "alert.", "siren.", "police.", "system112.", "hub."];
// The hub's own bookkeeping (which process runs a scheduled job) means nothing to a duty
// operator and would bury what does: it is not listed (the API still has it).
const shownToOperators = (e) => !(e.type || "").startsWith("hub.job.");

function severityClass(event) {
  return event.severity ? `sev-${event.severity}` : "";
}

// What an event means, in the operator's language: the catalog's text for its type, else for
// its family with the state it names (camera.health.black: «Камера: чёрный экран»), else the
// type as it is (a plugin's own event the catalog does not know).
export function describe(event) {
  const type = event.type || "";
  if (has(`event_type.${type}`)) return t(`event_type.${type}`);
  const last = type.slice(type.lastIndexOf(".") + 1);
  const family = type.slice(0, type.lastIndexOf("."));
  if (family === "camera.health" && has(`state.${last}`)) return t("event_family.camera_health", { state: t(`state.${last}`) });
  if (family === "siren.status" && has(`siren_state.${last}`)) return t("event_family.siren_status", { state: t(`siren_state.${last}`) });
  if (family === "alert.device" && has(`alerts.outcome.${last}`)) return t("event_family.alert_device", { state: t(`alerts.outcome.${last}`) });
  if (family === "hub.unit" && has(`unit_state.${last}`)) return t("event_family.hub_unit", { state: t(`unit_state.${last}`) });
  if (family === "camera.event") return t("event_family.camera_event", { topic: last });
  return type;
}

function Detail({ event, names, onClose }) {
  useEffect(() => {
    const key = (e) => e.key === "Escape" && onClose();
    window.addEventListener("keydown", key);
    return () => window.removeEventListener("keydown", key);
  }, [event.id]);
  const reason = event.type.startsWith("camera.health.") && event.data ? reasonText(event.data) : "";
  const rows = [
    ["events.time", formatTime(event.time)],
    ["events.what", describe(event)],
    ["events.type", event.type],
    ["events.subject", event.subject || "—"],
    ["events.municipality", event.municipality ? names[event.municipality] || event.municipality : "—"],
    ["events.severity", event.severity ? t(`severity.${event.severity}`) : "—"],
    ["events.source", event.source || "—"],
    ["events.id", event.id],
    ["events.correlation", event.correlationid || "—"],
  ];
  return (
    <div class="modal" role="dialog" aria-modal="true" data-testid="event-detail" onClick={(e) => e.target === e.currentTarget && onClose()}>
      <div class="panel wide">
        <header>
          <h2>{describe(event)}</h2>
          <button class="link" onClick={onClose} data-testid="close">{t("close")}</button>
        </header>
        <dl>
          {rows.map(([label, value]) => [<dt>{t(label)}</dt>, <dd>{value}</dd>])}
          {reason && [<dt>{t("wall.reason")}</dt>, <dd data-testid="event-reason">{reason}</dd>]}
        </dl>
        <h3>{t("events.data")}</h3>
        <pre class="data" data-testid="event-data">{event.data === undefined || event.data === null ? "—" : JSON.stringify(event.data, null, 2)}</pre>
      </div>
    </div>
  );
}

export function Events() {
  const [events, setEvents] = useState([]);
  const [group, setGroup] = useState("");
  const [paused, setPaused] = useState(false);
  const [names, setNames] = useState({});
  const [open, setOpen] = useState(null);

  // The last minutes from the journal first, so the page is not empty when opened.
  useEffect(() => {
    loadRegion().then((region) =>
      setNames(Object.fromEntries(region.municipalities.map((m) => [m.id, language === "ru" ? m.name_ru : m.name_en]))),
    );
    const since = new Date(Date.now() - 15 * 60 * 1000).toISOString();
    api(`/api/v1/events?${new URLSearchParams({ since, limit: "1000" })}`).then(
      (page) =>
        setEvents((list) => {
          const seen = new Set(list.map((e) => e.id));
          const recent = page.events.map((x) => x.event).filter((e) => !seen.has(e.id) && shownToOperators(e)).reverse();
          return [...list, ...recent].slice(0, KEEP);
        }),
      () => {},
    );
  }, []);

  useEffect(
    () =>
      live((event) => {
        if (!paused && shownToOperators(event)) setEvents((list) => [event, ...list].slice(0, KEEP));
      }),
    [paused],
  );

  const shown = group ? events.filter((e) => e.type.startsWith(group)) : events;
  return (
    <section class="events">
      <div class="toolbar">
        <select value={group} onChange={(e) => setGroup(e.target.value)} aria-label={t("events.filter")}>
          {GROUPS.map((g) => (
            <option value={g}>{g ? t(`events.group.${g.slice(0, -1)}`) : t("events.all")}</option>
          ))}
        </select>
        <button onClick={() => setPaused(!paused)}>{paused ? t("events.resume") : t("events.pause")}</button>
        <span class="muted">{t("events.count", { n: shown.length })}</span>
      </div>
      <table class="list" data-testid="events">
        <thead>
          <tr>
            <th>{t("events.time")}</th>
            <th>{t("events.what")}</th>
            <th>{t("events.subject")}</th>
            <th>{t("events.municipality")}</th>
          </tr>
        </thead>
        <tbody>
          {shown.length === 0 && (
            <tr>
              <td colspan="4" class="muted">{t("events.waiting")}</td>
            </tr>
          )}
          {shown.map((e) => (
            <tr key={e.id} class={`clickable ${severityClass(e)}`} data-testid={`event-${e.id}`} data-type={e.type} onClick={() => setOpen(e)}>
              <td>{formatTime(e.time)}</td>
              <td title={e.type}>{describe(e)}</td>
              <td>{e.subject || ""}</td>
              <td>{e.municipality ? names[e.municipality] || e.municipality : ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {open && <Detail event={open} names={names} onClose={() => setOpen(null)} />}
    </section>
  );
}
