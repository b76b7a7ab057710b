// Warning the population: the activation form (area by municipality, template, status), a
// confirmation step, and every siren's result live. Alerts waiting for a second person (the
// two-person rule) can be confirmed or refused here by someone else.
import { useEffect, useState } from "preact/hooks";
import { api, live, loadRegion } from "../api.js";
import { formatTime, language, t } from "../i18n.js";
import { RegionMap } from "./RegionMap.jsx";

const STATUSES = ["Exercise", "Test", "Actual"];
const ACTIVE = new Set(["activating", "pending_confirmation"]);

function useRegion() {
  const [region, setRegion] = useState(null);
  useEffect(() => {
    loadRegion().then(setRegion);
  }, []);
  return region;
}

function Results({ id }) {
  const region = useRegion();
  const municipalityName = (slug) => {
    const found = region && region.municipalities.find((m) => m.id === slug);
    return found ? (language === "ru" ? found.name_ru : found.name_en) : slug;
  };
  const [record, setRecord] = useState(null);
  useEffect(() => {
    let alive = true;
    let pending = null;
    const load = () => {
      pending = null;
      api(`/api/v1/alerts/${encodeURIComponent(id)}`).then((found) => alive && setRecord(found), () => {});
    };
    load();
    const stop = live((event) => {
      // A remote site's answers (command.*) and devices land in the region's record a moment
      // after their events: read again a little later too.
      const ours = event.subject === id || event.correlationid === id;
      if (ours && (event.type.startsWith("alert.") || event.type.startsWith("command.")) && !pending) {
        pending = setTimeout(load, 300);
        setTimeout(load, 1500);
      }
    });
    return () => {
      alive = false;
      clearTimeout(pending);
      stop();
    };
  }, [id]);
  const [error, setError] = useState(null);
  if (!record) return <p>{t("loading")}</p>;
  const counts = {};
  const remote = record.remote || [];
  for (const d of [...record.devices, ...remote.flatMap((r) => r.devices)]) counts[d.outcome] = (counts[d.outcome] || 0) + 1;
  const act = (what) =>
    api(`/api/v1/alerts/${encodeURIComponent(id)}/${what}`, { method: "POST" }).then(
      (found) => (setRecord(found), setError(null)),
      (err) => setError(err.message),
    );
  return (
    <div class="results" data-testid="alert-results" data-phase={record.phase}>
      {error && <p class="error" role="alert" data-testid="alert-error">{error}</p>}
      <p>
        <b>{t(`alerts.phase.${record.phase}`)}</b> · {Object.entries(counts).map(([k, v]) => `${t(`alerts.outcome.${k}`)}: ${v}`).join(" · ")}
      </p>
      {record.phase === "pending_confirmation" && (
        <p>
          {t("alerts.waiting_second", { until: formatTime(record.confirm_by) })}{" "}
          <button onClick={() => act("confirm")} data-testid="alert-second-confirm">{t("alerts.confirm")}</button>{" "}
          <button onClick={() => act("reject")}>{t("alerts.reject")}</button>
        </p>
      )}
      {ACTIVE.has(record.phase) || record.phase === "completed" ? (
        <button onClick={() => act("cancel")} data-testid="alert-cancel">{t("alerts.cancel")}</button>
      ) : null}
      <table class="list">
        <thead>
          <tr>
            <th>{t("alerts.device")}</th>
            <th>{t("alerts.municipality")}</th>
            <th>{t("alerts.outcome_title")}</th>
            <th>{t("alerts.detail")}</th>
          </tr>
        </thead>
        <tbody>
          {record.devices.map((d) => (
            <tr class={`outcome-${d.outcome}`} data-testid={`device-${d.device}`} data-outcome={d.outcome}>
              <td>{d.name || d.device}</td>
              <td>{d.municipality ? municipalityName(d.municipality) : ""}</td>
              <td>{t(`alerts.outcome.${d.outcome}`)}</td>
              <td>{d.detail}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {remote.map((r) => (
        <section class={`site-result site-${r.state}`} data-testid={`site-${r.site}`} data-state={r.state}>
          <h4>{t("alerts.site", { site: r.site, state: t(`alerts.site_state.${r.state}`) })}</h4>
          {r.detail && <p class="detail">{r.detail}</p>}
          {r.devices.length > 0 && (
            <table class="list">
              <tbody>
                {r.devices.map((d) => (
                  <tr class={`outcome-${d.outcome}`} data-testid={`device-${r.site}-${d.device}`} data-outcome={d.outcome}>
                    <td>{d.name || d.device}</td>
                    <td>{d.municipality ? municipalityName(d.municipality) : ""}</td>
                    <td>{t(`alerts.outcome.${d.outcome}`)}</td>
                    <td>{d.detail}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
      ))}
    </div>
  );
}

function Form({ user, onIssued }) {
  const region = useRegion();
  const [status, setStatus] = useState("Exercise");
  const [templates, setTemplates] = useState(null);
  const [template, setTemplate] = useState(null);
  const [text, setText] = useState("");
  useEffect(() => {
    api("/console/api/templates").then((found) => {
      setTemplates(found.templates);
      setTemplate(found.templates[0]);
      setText(found.templates[0].text);
    }, () => setTemplates([]));
  }, []);
  const [signal, setSignal] = useState(180);
  const [areas, setAreas] = useState(user.municipalities.slice());
  const [mode, setMode] = useState("municipalities"); // or "circle"
  const [circle, setCircle] = useState({ lat: null, lon: null, radius_km: 2 });
  const [confirming, setConfirming] = useState(false);
  const [sirens, setSirens] = useState([]);
  useEffect(() => {
    api("/api/v1/sirens").then((page) => setSirens(page.items), () => {});
  }, []);
  const [error, setError] = useState(null);
  if (!region || !templates) return <p>{t("loading")}</p>;
  const choices = region.municipalities.filter((m) => !user.municipalities.length || user.municipalities.includes(m.id));
  const name = (m) => (language === "ru" ? m.name_ru : m.name_en);
  const ready = mode === "circle" ? circle.lat != null && circle.radius_km > 0 : areas.length > 0;
  const toggleArea = (slug) => {
    if (!choices.some((m) => m.id === slug)) return; // not this operator's district
    setAreas(areas.includes(slug) ? areas.filter((a) => a !== slug) : [...areas, slug]);
  };
  const pick = (id) => {
    const found = templates.find((x) => x.id === id);
    setTemplate(found);
    setText(found.text);
  };
  const issue = async () => {
    setError(null);
    try {
      const record = await api("/api/v1/alerts", {
        method: "POST",
        body: {
          status,
          event: template.event,
          area: mode === "circle" ? { circles: [circle] } : { municipalities: areas },
          message: { signal_seconds: Number(signal), text },
        },
      });
      setConfirming(false);
      onIssued(record.id);
    } catch (err) {
      setConfirming(false);
      setError(err.status === 422 ? t("alerts.no_devices") : err.message);
    }
  };
  return (
    <form class="alert-form" data-testid="alert-form" onSubmit={(e) => (e.preventDefault(), ready && setConfirming(true))}>
      <fieldset>
        <legend>{t("alerts.kind")}</legend>
        {STATUSES.map((s) => (
          <label class={`status-${s}`}>
            <input type="radio" name="status" value={s} checked={status === s} onChange={() => setStatus(s)} /> {t(`alerts.status.${s}`)}
          </label>
        ))}
      </fieldset>
      <label>
        {t("alerts.template_title")}
        <select value={template && template.id} onChange={(e) => pick(e.target.value)} name="template">
          {templates.map((x) => (
            <option value={x.id}>{x.event}</option>
          ))}
        </select>
      </label>
      <label>
        {t("alerts.signal")}
        <input type="number" min="0" max="180" value={signal} onInput={(e) => setSignal(e.target.value)} name="signal" />
      </label>
      <label>
        {t("alerts.text")}
        <textarea rows="3" value={text} onInput={(e) => setText(e.target.value)} name="text" />
      </label>
      <fieldset class="areas">
        <legend>{t("alerts.area")}</legend>
        <label>
          <input type="radio" name="mode" checked={mode === "municipalities"} onChange={() => setMode("municipalities")} /> {t("alerts.by_municipality")}
        </label>
        <label>
          <input type="radio" name="mode" checked={mode === "circle"} onChange={() => setMode("circle")} /> {t("alerts.by_circle")}
        </label>
        {mode === "municipalities" ? (
          <div class="choices">
            {choices.map((m) => (
              <label>
                <input key={`m-${m.id}`} type="checkbox" name="municipality" value={m.id} checked={areas.includes(m.id)} onChange={() => toggleArea(m.id)} /> {name(m)}
              </label>
            ))}
          </div>
        ) : (
          <div class="choices">
            <label>
              {t("alerts.radius")}
              <input key="radius" type="number" min="0.1" max="500" step="0.1" value={circle.radius_km} onInput={(e) => setCircle({ ...circle, radius_km: Number(e.target.value) })} name="radius" />
            </label>
            <span class="muted">{circle.lat == null ? t("alerts.click_map") : `${circle.lat.toFixed(4)}, ${circle.lon.toFixed(4)}`}</span>
          </div>
        )}
        <RegionMap
          height={260}
          testid="alert-map"
          focus={user.municipalities}
          selected={mode === "municipalities" ? new Set(areas) : undefined}
          onToggle={mode === "municipalities" ? toggleArea : undefined}
          onPoint={mode === "circle" ? (lat, lon) => setCircle({ ...circle, lat, lon }) : undefined}
          circle={mode === "circle" ? circle : undefined}
          markers={sirens.map((x) => ({ lat: x.lat, lon: x.lon, colour: "#b37feb", label: x.name, radius: 6 }))}
        />
      </fieldset>
      {error && <p class="error" role="alert">{error}</p>}
      <button type="submit" disabled={!ready} data-testid="alert-submit">{t("alerts.issue")}</button>
      {confirming && (
        <div class="modal" role="dialog" aria-modal="true" data-testid="alert-confirm">
          <div class="panel">
            <h2>{t("alerts.confirm_title")}</h2>
            <p class={`status-${status}`}>
              <b>{t(`alerts.status.${status}`)}</b>: {template && template.event}
            </p>
            <p>
              {mode === "circle"
                ? t("alerts.confirm_circle", { km: circle.radius_km, lat: circle.lat.toFixed(4), lon: circle.lon.toFixed(4) })
                : t("alerts.confirm_area", { area: choices.filter((m) => areas.includes(m.id)).map(name).join(", ") })}
            </p>
            <p class="muted">{text}</p>
            {status === "Actual" && <p class="error">{t("alerts.actual_warning")}</p>}
            <button type="button" onClick={issue} data-testid="alert-confirm-yes">{t("alerts.confirm_yes")}</button>{" "}
            <button type="button" class="link" onClick={() => setConfirming(false)}>{t("cancel")}</button>
          </div>
        </div>
      )}
    </form>
  );
}

export function Alerts({ user }) {
  const [items, setItems] = useState(null);
  const [open, setOpen] = useState(null);
  useEffect(() => {
    let alive = true;
    const load = () => api("/api/v1/alerts?limit=50").then((page) => alive && setItems(page.items), () => {});
    load();
    let pending = null;
    // Any change of an alert (issued, waiting for a second person, completed…), not each siren.
    const stop = live((event) => {
      if (event.type.startsWith("alert.") && !event.type.startsWith("alert.device.") && !pending) {
        pending = setTimeout(() => ((pending = null), load()), 300);
      }
    });
    return () => {
      alive = false;
      clearTimeout(pending);
      stop();
    };
  }, []);
  return (
    <section class="alerts">
      <div class="columns">
        <div>
          <h2>{t("alerts.new")}</h2>
          <Form user={user} onIssued={setOpen} />
        </div>
        <div>
          {open && (
            <>
              <h2>{t("alerts.results")}</h2>
              <Results id={open} />
            </>
          )}
          <h2>{t("alerts.recent")}</h2>
          <table class="list" data-testid="alerts">
            <tbody>
              {(items || []).map((a) => (
                <tr onClick={() => setOpen(a.id)} class={`phase-${a.phase}`} data-testid={`alert-${a.id}`}>
                  <td>{formatTime(a.created)}</td>
                  <td class={`status-${a.alert.status}`}>{t(`alerts.status.${a.alert.status}`)}</td>
                  <td>{a.alert.info && a.alert.info[0] ? a.alert.info[0].event : ""}</td>
                  <td>{t(`alerts.phase.${a.phase}`)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </div>
    </section>
  );
}
