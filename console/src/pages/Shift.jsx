// The shift: who is on duty, and the handovers — the outgoing operator writes notes and hands
// over what is open (incidents with their clocks, cameras down, sirens not ready, alerts in
// progress); the incoming one reads it and accepts.
import { useEffect, useState } from "preact/hooks";
import { api, live, loadRegion } from "../api.js";
import { formatTime, has, language, t } from "../i18n.js";

function Items({ title, items, testid }) {
  return (
    <div class="handover-part" data-testid={testid}>
      <h4>{t(title, { n: items.length })}</h4>
      {items.length > 0 && (
        <ul>
          {items.map((i) => (
            <li>
              <b>{i.name}</b>
              {i.state && ` · ${has(`severity.${i.state}`) ? t(`severity.${i.state}`) : i.state}`}
              {i.detail && <small> · {i.detail}</small>}
              {(i.missed || []).length > 0 && (
                <small class="clock clock-missed"> {i.missed.map((c) => t(`duty.clock.${c}`)).join(", ")}</small>
              )}
              {(i.running || []).length > 0 && (
                <small> · {t("shift.running", { clocks: i.running.map((c) => t(`duty.clock.${c}`)).join(", ") })}</small>
              )}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function HandoverView({ handover, user, onChange }) {
  const [error, setError] = useState(null);
  const accept = () =>
    api(`/api/v1/handovers/${encodeURIComponent(handover.id)}/accept`, { method: "POST" }).then(onChange, (err) => setError(err.message));
  const mine = handover.created_by.startsWith(`user:${user.login} `);
  return (
    <article class="handover" data-testid={`handover-${handover.id}`} data-accepted={String(!!handover.accepted_at)}>
      <h3>{t("shift.handover_of", { at: formatTime(handover.created_at), by: handover.created_by })}</h3>
      <p>
        {t("shift.outgoing")}: {handover.outgoing.join(", ") || "—"} · {t("shift.incoming")}: {handover.incoming.join(", ") || "—"}
      </p>
      {handover.notes && <blockquote class="notes">{handover.notes}</blockquote>}
      <Items title="shift.open_incidents" items={handover.open_incidents} testid="handover-incidents" />
      <Items title="shift.cameras_down" items={handover.cameras_down} testid="handover-cameras" />
      <Items title="shift.sirens_not_ready" items={handover.sirens_not_ready} testid="handover-sirens" />
      <Items title="shift.alerts_in_progress" items={handover.alerts_in_progress} testid="handover-alerts" />
      {error && <p class="error" role="alert">{error}</p>}
      {handover.accepted_at ? (
        <p data-testid="handover-accepted">{t("shift.accepted", { at: formatTime(handover.accepted_at), by: handover.accepted_by })}</p>
      ) : (
        !mine && (
          <button class="primary" onClick={accept} data-testid="handover-accept">
            {t("shift.accept")}
          </button>
        )
      )}
    </article>
  );
}

export function Shift({ user }) {
  const [handovers, setHandovers] = useState(null);
  const [roster, setRoster] = useState([]);
  const [notes, setNotes] = useState("");
  const [where, setWhere] = useState(user.municipalities[0] || "");
  const [error, setError] = useState(null);
  const [names, setNames] = useState({ municipalities: {}, posts: {} });
  useEffect(() => {
    Promise.all([loadRegion(), api("/api/v1/roster/posts").catch(() => [])]).then(([region, posts]) =>
      setNames({
        municipalities: Object.fromEntries(region.municipalities.map((m) => [m.id, language === "ru" ? m.name_ru : m.name_en])),
        posts: Object.fromEntries(posts.map((p) => [p.id, p.name])),
      }),
    );
  }, []);
  const load = () => {
    api("/api/v1/handovers").then((page) => setHandovers(page.items), (err) => setError(err.message));
    api("/api/v1/roster").then((page) => setRoster(page.items), () => {});
  };
  useEffect(() => {
    load();
    return live((event) => event.type.startsWith("duty.handover.") && load());
  }, []);
  const handOver = () =>
    api("/api/v1/handovers", { method: "POST", body: { municipality: where, notes } }).then(
      () => (setNotes(""), setError(null), load()),
      (err) => setError(err.message),
    );
  if (!handovers) return <p>{t("loading")}</p>;
  const now = Date.now();
  return (
    <section class="shift">
      <h2>{t("shift.title")}</h2>
      <table class="list" data-testid="roster">
        <thead>
          <tr>
            <th>{t("shift.municipality")}</th>
            <th>{t("shift.post")}</th>
            <th>{t("shift.who")}</th>
            <th>{t("shift.from")}</th>
            <th>{t("shift.to")}</th>
          </tr>
        </thead>
        <tbody>
          {roster.map((s) => (
            <tr class={Date.parse(s.start) <= now && now < Date.parse(s.end) ? "on-duty" : ""}>
              <td>{names.municipalities[s.municipality] || s.municipality}</td>
              <td>{names.posts[s.post] || s.post}</td>
              <td>{s.login}</td>
              <td>{formatTime(s.start)}</td>
              <td>{formatTime(s.end)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <fieldset class="hand-over">
        <legend>{t("shift.hand_over")}</legend>
        {user.municipalities.length !== 1 && (
          <input name="municipality" value={where} onInput={(e) => setWhere(e.target.value)} placeholder={t("shift.municipality")} />
        )}
        <textarea rows="3" name="notes" value={notes} onInput={(e) => setNotes(e.target.value)} placeholder={t("shift.notes")} />
        <button onClick={handOver} disabled={!where} data-testid="handover-create">
          {t("shift.hand_over")}
        </button>
        {error && <p class="error" role="alert">{error}</p>}
      </fieldset>
      {handovers.map((h) => (
        <HandoverView handover={h} user={user} onChange={load} />
      ))}
    </section>
  );
}
