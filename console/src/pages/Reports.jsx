// Reports: camera availability per municipality over time (a chart), the district report with
// lagging districts, siren readiness, and the CSV download.
import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import { api } from "../api.js";
import { formatTime, language, t } from "../i18n.js";

const PERIODS = { 7: 6, 30: 24, 90: 24 }; // days → bucket hours
const COLOURS = ["#4c9aff", "#2e9d5b", "#e0a000", "#e5383b", "#b37feb", "#36cfc9", "#ff85c0", "#bfbfbf"];

const day = (seconds, options) => new Date(seconds * 1000).toLocaleDateString(language === "ru" ? "ru-RU" : "en-GB", options);

function Chart({ series, width }) {
  const box = useRef(null);
  useEffect(() => {
    if (!box.current || !series) return undefined;
    const xs = series.buckets.map((b) => Date.parse(b) / 1000);
    const lines = [series.total, ...series.districts.slice(0, COLOURS.length - 1)];
    const plot = new uPlot(
      {
        width,
        height: 320,
        scales: { y: { range: [0, 100] } },
        axes: [
          {
            stroke: "#8a97a6",
            grid: { stroke: "#2c3540" },
            values: (_, ticks) => ticks.map((v) => day(v, { day: "numeric", month: "short" })),
          },
          { stroke: "#8a97a6", grid: { stroke: "#2c3540" }, values: (_, ticks) => ticks.map((v) => `${v}%`) },
        ],
        series: [
          { label: t("reports.time"), value: (_, v) => (v == null ? "—" : day(v)) },
          ...lines.map((row, i) => ({
            label: row.name,
            stroke: COLOURS[i % COLOURS.length],
            width: i === 0 ? 3 : 1.5,
            spanGaps: false,
          })),
        ],
      },
      [xs, ...lines.map((row) => row.availability_pct)],
      box.current,
    );
    return () => plot.destroy();
  }, [series, width]);
  return <div ref={box} class="chart" data-testid="chart" />;
}

export function Reports() {
  const [days, setDays] = useState(30);
  const [series, setSeries] = useState(null);
  const [report, setReport] = useState(null);
  const [sirens, setSirens] = useState(null);
  const [archive, setArchive] = useState(null);
  const [staffing, setStaffing] = useState(null);
  const [error, setError] = useState(null);
  const [width, setWidth] = useState(Math.min(1100, window.innerWidth - 60));

  useEffect(() => {
    const resize = () => setWidth(Math.min(1100, window.innerWidth - 60));
    window.addEventListener("resize", resize);
    return () => window.removeEventListener("resize", resize);
  }, []);

  useEffect(() => {
    const since = new Date(Date.now() - days * 86400 * 1000).toISOString();
    const query = new URLSearchParams({ since });
    Promise.all([
      api(`/api/v1/reports/cameras/history?${query}&step_hours=${PERIODS[days]}`),
      api(`/api/v1/reports/cameras?${query}`),
      api("/api/v1/reports/sirens"),
      api("/api/v1/reports/recording").catch(() => null),
      api(`/api/v1/reports/staffing?${query}`).catch(() => null),
    ]).then(
      ([s, r, sr, ar, st]) => {
        setSeries(s);
        setReport(r);
        setSirens(sr);
        setArchive(ar);
        setStaffing(st);
        setError(null);
      },
      (err) => setError(err.message),
    );
  }, [days]);

  if (error) return <p class="error">{t("error.generic", { reason: error })}</p>;
  if (!report) return <p>{t("loading")}</p>;
  const csv = `/api/v1/reports/cameras.csv?since=${encodeURIComponent(report.since)}`;
  return (
    <section class="reports">
      <div class="toolbar">
        <select value={days} onChange={(e) => setDays(Number(e.target.value))} aria-label={t("reports.period")}>
          {Object.keys(PERIODS).map((d) => (
            <option value={d}>{t("reports.days", { n: d })}</option>
          ))}
        </select>
        <a href={csv} download data-testid="csv">{t("reports.csv")}</a>
        <span class="muted">{t("reports.generated", { when: formatTime(report.generated_at) })}</span>
      </div>
      <h2>{t("reports.availability_title", { target: report.availability_target })}</h2>
      <Chart series={series} width={width} />
      <table class="list" data-testid="report">
        <thead>
          <tr>
            <th>{t("reports.district")}</th>
            <th>{t("reports.total")}</th>
            <th>{t("state.ok")}</th>
            <th>{t("state.degraded")}</th>
            <th>{t("state.offline")}</th>
            <th>{t("state.unknown")}</th>
            <th>{t("reports.availability")}</th>
            <th>{t("reports.lagging")}</th>
          </tr>
        </thead>
        <tbody>
          {[...report.districts, report.total].map((r) => (
            <tr class={`${r.lagging ? "lagging-row" : ""} ${r.stale ? "stale-row" : ""}`} data-testid={`report-${r.municipality}`} data-site={r.site || ""}>
              <td>
                {r.name}
                {r.site && <small class="site-tag" title={t("reports.site_as_of", { at: formatTime(r.as_of) })}> · {r.site}</small>}
              </td>
              <td>{r.total}</td>
              <td>{r.ok}</td>
              <td>{r.degraded}</td>
              <td>{r.offline}</td>
              <td>{r.unknown}</td>
              <td>{r.availability_pct == null ? "—" : `${r.availability_pct.toFixed(1)}%`}</td>
              <td>{r.lagging || r.stale ? r.why.join("; ") : ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>{t("reports.sirens_title")}</h2>
      <table class="list" data-testid="sirens-report">
        <thead>
          <tr>
            <th>{t("reports.district")}</th>
            <th>{t("reports.devices")}</th>
            <th>{t("reports.ready")}</th>
            <th>{t("reports.checked")}</th>
            <th>{t("reports.not_ready")}</th>
          </tr>
        </thead>
        <tbody>
          {sirens.districts.map((d) => (
            <tr class={d.readiness_pct != null && d.readiness_pct < 100 ? "lagging-row" : ""} data-site={d.site || ""}>
              <td>
                {d.name}
                {d.site && <small class="site-tag" title={t("reports.site_as_of", { at: formatTime(d.as_of) })}> · {d.site}</small>}
              </td>
              <td>{d.devices}</td>
              <td>{d.readiness_pct == null ? "—" : `${d.readiness_pct}%`}</td>
              <td>{formatTime(d.technical_at)}</td>
              <td>{d.failing.join("; ")}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {archive && archive.districts.length > 0 && (
        <>
          <h2>{t("reports.archive_title", { days: archive.target_days })}</h2>
          <table class="list" data-testid="archive-report">
            <thead>
              <tr>
                <th>{t("reports.district")}</th>
                <th>{t("reports.archive_cameras")}</th>
                <th>{t("reports.archive_meeting")}</th>
                <th>{t("reports.archive_min_depth")}</th>
                <th>{t("reports.archive_size")}</th>
                <th>{t("reports.lagging")}</th>
              </tr>
            </thead>
            <tbody>
              {archive.districts.map((d) => (
                <tr class={d.lagging ? "lagging-row" : ""} data-testid={`archive-${d.municipality}`}>
                  <td>{d.name}</td>
                  <td>{d.cameras}</td>
                  <td>{d.meeting}</td>
                  <td>{d.min_depth_days == null ? "—" : t("reports.days_value", { n: d.min_depth_days.toFixed(1) })}</td>
                  <td>{t("reports.gb", { n: (d.bytes / 1024 ** 3).toFixed(1) })}</td>
                  <td>{d.lagging ? d.why.join("; ") : ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      {staffing && staffing.districts.length > 0 && (
        <>
          <h2>{t("reports.staffing_title")}</h2>
          <table class="list" data-testid="staffing-report">
            <thead>
              <tr>
                <th>{t("reports.district")}</th>
                <th>{t("reports.post")}</th>
                <th>{t("reports.on_duty")}</th>
                <th>{t("reports.uncovered")}</th>
                <th>{t("reports.lagging")}</th>
              </tr>
            </thead>
            <tbody>
              {staffing.districts.flatMap((d) =>
                d.posts.map((p, i) => (
                  <tr class={d.lagging ? "lagging-row" : ""} data-testid={`staffing-${d.municipality}-${p.post}`} data-staffed={String(p.staffed_now)}>
                    <td>{i === 0 ? d.name : ""}</td>
                    <td>{p.name}</td>
                    <td>{p.on_duty.join(", ") || "—"}</td>
                    <td>{t("reports.hours", { n: p.uncovered_hours })}</td>
                    <td>{i === 0 && d.lagging ? d.why.join("; ") : ""}</td>
                  </tr>
                )),
              )}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
