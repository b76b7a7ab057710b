// An incident's handling against its norm: the clocks (take it, pass it to the services, the
// first report) counting down, who stopped each and when; the SOP checklist; the escalation
// chain as it went. The clocks tick here every second; the hub is the one that marks a miss.
import { useEffect, useState } from "preact/hooks";
import { api, live } from "../api.js";
import { formatTime, t } from "../i18n.js";
import { serviceNames } from "./Incidents.jsx";

const SERVICES = ["01", "02", "03", "04"];

function useNow() {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  return now;
}

function span(ms) {
  const s = Math.max(0, Math.round(Math.abs(ms) / 1000));
  const m = Math.floor(s / 60);
  return m >= 60 ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}` : `${m}:${String(s % 60).padStart(2, "0")}`;
}

// A clock's state as shown: done (on time or late), running (time left), missed (how late).
export function clockState(clock, now) {
  const due = Date.parse(clock.due);
  if (clock.done_at) return Date.parse(clock.done_at) > due ? "late" : "done";
  return now > due ? "missed" : "running";
}

export function ClockBadge({ clock, now, testid }) {
  const state = clockState(clock, now);
  const due = Date.parse(clock.due);
  const text =
    state === "running"
      ? t("duty.left", { time: span(due - now) })
      : state === "missed"
        ? t("duty.overdue", { time: span(now - due) })
        : t(`duty.${state}`);
  return (
    <span class={`clock clock-${state}`} data-testid={testid} data-state={state}>
      {t(`duty.clock.${clock.name}`)}: {text}
    </span>
  );
}

export function Handling({ id }) {
  const [handling, setHandling] = useState(undefined);
  const [error, setError] = useState(null);
  const [services, setServices] = useState([]);
  const [report, setReport] = useState("");
  const now = useNow();
  const base = `/api/v1/incidents/${encodeURIComponent(id)}`;
  useEffect(() => {
    let alive = true;
    const load = () =>
      api(`${base}/handling`).then(
        (found) => alive && setHandling(found),
        (err) => alive && (err.status === 404 ? setHandling(null) : setError(err.message)),
      );
    load();
    const stop = live((event) => event.subject === id && event.type.startsWith("duty.") && load());
    return () => {
      alive = false;
      stop();
    };
  }, [id]);
  if (handling === undefined) return null;
  if (handling === null) return <p class="muted" data-testid="handling-none">{t("duty.no_norm")}</p>;
  const act = (path, body) =>
    api(`${base}/${path}`, { method: "POST", body: body || {} }).then(
      (found) => (setHandling(found), setError(null)),
      (err) => setError(err.message),
    );
  const open = !handling.closed_at;
  const clock = (name) => handling.clocks.find((c) => c.name === name);
  const running = (name) => clock(name) && !clock(name).done_at;
  const escalation = handling.escalations.length ? handling.escalations[handling.escalations.length - 1] : null;
  const escalating = escalation && !escalation.stopped_at;
  return (
    <section class="handling" data-testid="handling" data-norm={handling.norm}>
      <h3>{t("duty.title", { norm: handling.norm })}</h3>
      {error && <p class="error" role="alert" data-testid="handling-error">{error}</p>}
      <ul class="clocks">
        {handling.clocks.map((c) => (
          <li>
            <ClockBadge clock={c} now={now} testid={`clock-${c.name}`} />
            {c.done_at && (
              <small data-testid={`clock-${c.name}-by`}>
                {" "}
                · {formatTime(c.done_at)} · {c.done_by}
                {c.detail ? ` · ${c.name === "dispatch" ? serviceNames(c.detail.split(", ")) : c.detail}` : ""}
              </small>
            )}
          </li>
        ))}
      </ul>
      {open && (running("acknowledge") || escalating) && (
        <button class="primary" onClick={() => act("acknowledge")} data-testid="handling-acknowledge">
          {escalating ? t("duty.acknowledge_escalation") : t("duty.acknowledge")}
        </button>
      )}
      {open && running("dispatch") && (
        <fieldset class="dispatch">
          <legend>{t("duty.clock.dispatch")}</legend>
          {SERVICES.map((s) => (
            <label>
              <input
                type="checkbox"
                name="service"
                value={s}
                checked={services.includes(s)}
                onChange={() => setServices(services.includes(s) ? services.filter((x) => x !== s) : [...services, s])}
              />{" "}
              {serviceNames([s])}
            </label>
          ))}
          <button disabled={!services.length} onClick={() => act("dispatch", { services })} data-testid="handling-dispatch">
            {t("duty.dispatched")}
          </button>
        </fieldset>
      )}
      {open && running("report") && (
        <fieldset class="report">
          <legend>{t("duty.clock.report")}</legend>
          <textarea rows="2" value={report} onInput={(e) => setReport(e.target.value)} name="report" />
          <button disabled={!report.trim()} onClick={() => act("report", { text: report })} data-testid="handling-report">
            {t("duty.reported")}
          </button>
        </fieldset>
      )}
      {handling.checklist.length > 0 && (
        <>
          <h4>{t("duty.checklist")}</h4>
          <ol class="checklist" data-testid="checklist">
            {handling.checklist.map((step, index) => (
              <li data-testid={`step-${index}`} data-done={String(!!step.done_at)}>
                <label>
                  <input type="checkbox" checked={!!step.done_at} disabled={!open} onChange={() => act(`checklist/${index}`, { done: !step.done_at })} />{" "}
                  {step.text}
                </label>
                {step.done_at && <small> · {formatTime(step.done_at)} · {step.done_by}</small>}
              </li>
            ))}
          </ol>
        </>
      )}
      {handling.escalations.map((e) => (
        <div class={`escalation ${e.stopped_at ? "stopped" : "running"}`} data-testid="escalation" data-stopped={String(!!e.stopped_at)}>
          <h4>{t("duty.escalation", { clock: t(`duty.clock.${e.reason}`), at: formatTime(e.started_at) })}</h4>
          <ol>
            {e.notified.map((n) => (
              <li data-testid={`escalation-step-${n.step}`}>
                {formatTime(n.at)} · {n.name} · {n.recipients.join(", ") || n.notifier}
              </li>
            ))}
          </ol>
          {e.next_at && <p class="muted">{t("duty.next_step", { at: formatTime(e.next_at) })}</p>}
          {e.stopped_at && (
            <p data-testid="escalation-stopped">
              {t("duty.stopped", { at: formatTime(e.stopped_at), by: e.stopped_by })}
            </p>
          )}
        </div>
      ))}
    </section>
  );
}
