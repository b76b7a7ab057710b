// Live events as they happen, newest first, with a type filter (NATS pattern prefix).
import { useEffect, useState } from "preact/hooks";
import { api, live, loadRegion } from "../api.js";
import { formatTime, language, t } from "../i18n.js";

const KEEP = 500;
const GROUPS = ["", "camera.", "incident.", "alert.", "siren.", "police.", "system112.", "hub."];

function severityClass(event) {
  return event.severity ? `sev-${event.severity}` : "";
}

export function Events() {
  const [events, setEvents] = useState([]);
  const [group, setGroup] = useState("");
  const [paused, setPaused] = useState(false);
  const [names, setNames] = useState({});

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
          const recent = page.events.map((x) => x.event).filter((e) => !seen.has(e.id)).reverse();
          return [...list, ...recent].slice(0, KEEP);
        }),
      () => {},
    );
  }, []);

  useEffect(
    () =>
      live((event) => {
        if (!paused) setEvents((list) => [event, ...list].slice(0, KEEP));
      }),
    [paused],
  );

  const shown = group ? events.filter((e) => e.type.startsWith(group)) : events;
  return (
    <section class="events">
      <div class="toolbar">
        <select value={group} onChange={(e) => setGroup(e.target.value)} aria-label={t("events.filter")}>
          {GROUPS.map((g) => (
            <option value={g}>{g ? `${g}*` : t("events.all")}</option>
          ))}
        </select>
        <button onClick={() => setPaused(!paused)}>{paused ? t("events.resume") : t("events.pause")}</button>
        <span class="muted">{t("events.count", { n: shown.length })}</span>
      </div>
      <table class="list" data-testid="events">
        <thead>
          <tr>
            <th>{t("events.time")}</th>
            <th>{t("events.type")}</th>
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
            <tr key={e.id} class={severityClass(e)}>
              <td>{formatTime(e.time)}</td>
              <td>{e.type}</td>
              <td>{e.subject || ""}</td>
              <td>{e.municipality ? names[e.municipality] || e.municipality : ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
