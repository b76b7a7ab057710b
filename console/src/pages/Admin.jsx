// Administration, for admins only (the API refuses everyone else): console accounts (create,
// disable, reset a password, unlock, role and municipalities), the duty roster and the
// handling norms. Every change goes through the API: CSRF-checked and audited.
import { useEffect, useState } from "preact/hooks";
import { api, loadRegion } from "../api.js";
import { formatTime, language, t } from "../i18n.js";

const ROLES = ["operator", "supervisor", "admin"];

function useRegionNames() {
  const [names, setNames] = useState({});
  useEffect(() => {
    loadRegion().then((region) =>
      setNames(Object.fromEntries(region.municipalities.map((m) => [m.id, language === "ru" ? m.name_ru : m.name_en]))),
    );
  }, []);
  return names;
}

function Accounts({ me }) {
  const names = useRegionNames();
  const [accounts, setAccounts] = useState(null);
  const [error, setError] = useState(null);
  const [done, setDone] = useState(null);
  const [form, setForm] = useState({ login: "", name: "", role: "operator", municipalities: "", password: "" });
  const load = () => api("/api/v1/users").then(setAccounts, (err) => setError(err.message));
  useEffect(load, []);
  const call = (path, body, message) =>
    api(path, { method: "POST", body: body || {} }).then(
      () => (setError(null), setDone(message), load()),
      (err) => (setDone(null), setError(err.message)),
    );
  const places = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
  const create = (e) => {
    e.preventDefault();
    call(
      "/api/v1/users",
      { login: form.login, name: form.name || null, role: form.role, municipalities: form.role === "operator" ? places(form.municipalities) : [], password: form.password },
      t("admin.created", { login: form.login }),
    ).then(() => setForm({ ...form, login: "", name: "", password: "" }));
  };
  if (!accounts) return error ? <p class="error">{error}</p> : <p>{t("loading")}</p>;
  const base = (login) => `/api/v1/users/${encodeURIComponent(login)}`;
  return (
    <div data-testid="admin-accounts">
      {error && <p class="error" role="alert" data-testid="admin-error">{error}</p>}
      {done && <p class="ok" role="status" data-testid="admin-done">{done}</p>}
      <table class="list">
        <thead>
          <tr>
            <th>{t("admin.login")}</th>
            <th>{t("admin.name")}</th>
            <th>{t("admin.role")}</th>
            <th>{t("admin.municipalities")}</th>
            <th>{t("admin.state")}</th>
            <th>{t("admin.last_sign_in")}</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {accounts.map((a) => {
            const locked = a.locked_until && Date.parse(a.locked_until) > Date.now();
            return (
              <tr data-testid={`account-${a.login}`} data-disabled={String(a.disabled)} data-locked={String(!!locked)} class={a.disabled ? "closed" : ""}>
                <td>{a.login}</td>
                <td>{a.name}</td>
                <td>
                  <select
                    value={a.role}
                    disabled={a.login === me.login}
                    data-testid={`role-${a.login}`}
                    onChange={(e) => call(base(a.login), { role: e.target.value, municipalities: e.target.value === "operator" ? a.municipalities : [] }, t("admin.changed", { login: a.login }))}
                  >
                    {ROLES.map((r) => (
                      <option value={r}>{t(`role.${r}`)}</option>
                    ))}
                  </select>
                </td>
                <td>{a.municipalities.map((m) => names[m] || m).join(", ") || t("region.all")}</td>
                <td>{a.disabled ? t("admin.disabled") : locked ? t("admin.locked", { until: formatTime(a.locked_until) }) : t("admin.active")}</td>
                <td>{a.last_sign_in ? formatTime(a.last_sign_in) : "—"}</td>
                <td class="actions">
                  {a.login !== me.login && (
                    <button data-testid={`toggle-${a.login}`} onClick={() => call(base(a.login), { disabled: !a.disabled }, t("admin.changed", { login: a.login }))}>
                      {a.disabled ? t("admin.enable") : t("admin.disable")}
                    </button>
                  )}
                  {locked && (
                    <button data-testid={`unlock-${a.login}`} onClick={() => call(`${base(a.login)}/unlock`, {}, t("admin.unlocked", { login: a.login }))}>
                      {t("admin.unlock")}
                    </button>
                  )}
                  <button
                    data-testid={`password-${a.login}`}
                    onClick={() => {
                      const password = prompt(t("admin.new_password", { login: a.login }));
                      if (password) call(`${base(a.login)}/password`, { password }, t("admin.password_set", { login: a.login }));
                    }}
                  >
                    {t("admin.reset_password")}
                  </button>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <form class="admin-form" onSubmit={create} data-testid="account-form">
        <h3>{t("admin.new_account")}</h3>
        <input name="login" placeholder={t("admin.login")} value={form.login} onInput={(e) => setForm({ ...form, login: e.target.value })} />
        <input name="name" placeholder={t("admin.name")} value={form.name} onInput={(e) => setForm({ ...form, name: e.target.value })} />
        <select name="role" value={form.role} onChange={(e) => setForm({ ...form, role: e.target.value })}>
          {ROLES.map((r) => (
            <option value={r}>{t(`role.${r}`)}</option>
          ))}
        </select>
        {form.role === "operator" && (
          <input name="municipalities" placeholder={t("admin.municipalities_hint")} value={form.municipalities} onInput={(e) => setForm({ ...form, municipalities: e.target.value })} />
        )}
        <input name="password" type="password" autocomplete="new-password" placeholder={t("admin.password")} value={form.password} onInput={(e) => setForm({ ...form, password: e.target.value })} />
        <button type="submit" data-testid="account-create">{t("admin.create")}</button>
      </form>
    </div>
  );
}

function Roster() {
  const names = useRegionNames();
  const [shifts, setShifts] = useState(null);
  const [posts, setPosts] = useState([]);
  const [error, setError] = useState(null);
  const [form, setForm] = useState({ municipality: "", post: "", login: "", start: "", end: "" });
  const load = () => {
    const since = new Date(Date.now() - 86400 * 1000).toISOString();
    const until = new Date(Date.now() + 14 * 86400 * 1000).toISOString();
    api(`/api/v1/roster?${new URLSearchParams({ since, until })}`).then((page) => setShifts(page.items), (err) => setError(err.message));
  };
  useEffect(() => {
    load();
    api("/api/v1/roster/posts").then(setPosts, () => {});
  }, []);
  const add = (e) => {
    e.preventDefault();
    // datetime-local is the browser's local time: sent with its offset.
    const moment = (local) => new Date(local).toISOString();
    api("/api/v1/roster", {
      method: "POST",
      body: { municipality: form.municipality, post: form.post, login: form.login, start: moment(form.start), end: moment(form.end) },
    }).then(() => (setError(null), load()), (err) => setError(err.message));
  };
  const remove = (id) => api(`/api/v1/roster/${encodeURIComponent(id)}/delete`, { method: "POST" }).then(load, (err) => setError(err.message));
  if (!shifts) return error ? <p class="error">{error}</p> : <p>{t("loading")}</p>;
  const municipalities = [...new Set(posts.map((p) => p.municipality))];
  return (
    <div data-testid="admin-roster">
      {error && <p class="error" role="alert" data-testid="roster-error">{error}</p>}
      <table class="list">
        <thead>
          <tr>
            <th>{t("shift.municipality")}</th>
            <th>{t("shift.post")}</th>
            <th>{t("shift.who")}</th>
            <th>{t("shift.from")}</th>
            <th>{t("shift.to")}</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {shifts.map((s) => (
            <tr data-testid={`shift-${s.login}`}>
              <td>{names[s.municipality] || s.municipality}</td>
              <td>{s.post}</td>
              <td>{s.login}</td>
              <td>{formatTime(s.start)}</td>
              <td>{formatTime(s.end)}</td>
              <td>
                <button onClick={() => remove(s.id)}>{t("admin.remove")}</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form class="admin-form" onSubmit={add} data-testid="shift-form">
        <h3>{t("admin.new_shift")}</h3>
        <select name="municipality" value={form.municipality} onChange={(e) => setForm({ ...form, municipality: e.target.value, post: "" })}>
          <option value="">{t("shift.municipality")}</option>
          {municipalities.map((m) => (
            <option value={m}>{names[m] || m}</option>
          ))}
        </select>
        <select name="post" value={form.post} onChange={(e) => setForm({ ...form, post: e.target.value })}>
          <option value="">{t("shift.post")}</option>
          {posts
            .filter((p) => p.municipality === form.municipality)
            .map((p) => (
              <option value={p.id}>{p.name}</option>
            ))}
        </select>
        <input name="login" placeholder={t("admin.login")} value={form.login} onInput={(e) => setForm({ ...form, login: e.target.value })} />
        <input name="start" type="datetime-local" value={form.start} onInput={(e) => setForm({ ...form, start: e.target.value })} />
        <input name="end" type="datetime-local" value={form.end} onInput={(e) => setForm({ ...form, end: e.target.value })} />
        <button type="submit" data-testid="shift-add" disabled={!form.municipality || !form.post || !form.login || !form.start || !form.end}>
          {t("admin.add_shift")}
        </button>
      </form>
    </div>
  );
}

function Norms() {
  const [found, setFound] = useState(null);
  const [text, setText] = useState("");
  const [error, setError] = useState(null);
  const show = (norms) => (setFound(norms), setText(JSON.stringify({ norms: norms.norms, escalation: norms.escalation }, null, 2)));
  useEffect(() => {
    api("/api/v1/duty/norms").then(show, (err) => setError(err.message));
  }, []);
  const save = () => {
    let body;
    try {
      body = JSON.parse(text);
    } catch (err) {
      setError(t("admin.not_json", { reason: err.message }));
      return;
    }
    api("/api/v1/duty/norms", { method: "POST", body }).then((norms) => (setError(null), show(norms)), (err) => setError(err.message));
  };
  const reset = () => api("/api/v1/duty/norms/reset", { method: "POST" }).then((norms) => (setError(null), show(norms)), (err) => setError(err.message));
  if (!found) return error ? <p class="error">{error}</p> : <p>{t("loading")}</p>;
  return (
    <div data-testid="admin-norms" data-source={found.source}>
      <p class="muted">
        {found.source === "console" ? t("admin.norms_console", { by: found.by, at: formatTime(found.at) }) : t("admin.norms_config")}
      </p>
      <table class="list">
        <thead>
          <tr>
            <th>{t("admin.norm")}</th>
            <th>{t("admin.types")}</th>
            <th>{t("duty.clock.acknowledge")}</th>
            <th>{t("duty.clock.dispatch")}</th>
            <th>{t("duty.clock.report")}</th>
            <th>{t("admin.chain")}</th>
          </tr>
        </thead>
        <tbody>
          {found.norms.map((n) => (
            <tr data-testid={`norm-${n.name}`}>
              <td>{n.name}</td>
              <td>{n.types.join(", ") || t("admin.any")}</td>
              <td>{t("admin.seconds", { n: n.acknowledge })}</td>
              <td>{t("admin.seconds", { n: n.dispatch })}</td>
              <td>{t("admin.seconds", { n: n.report })}</td>
              <td>{n.escalation || "—"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>{t("admin.edit_norms")}</h3>
      <textarea class="code" rows="18" name="norms" value={text} onInput={(e) => setText(e.target.value)} spellcheck={false} />
      {error && <p class="error" role="alert" data-testid="norms-error">{error}</p>}
      <button onClick={save} data-testid="norms-save">{t("admin.save")}</button>{" "}
      {found.source === "console" && <button onClick={reset} data-testid="norms-reset">{t("admin.back_to_config")}</button>}
    </div>
  );
}

const TABS = { accounts: Accounts, roster: Roster, norms: Norms };

export function Admin({ user }) {
  const [tab, setTab] = useState("accounts");
  if (user.role !== "admin") return <p class="error">{t("admin.only")}</p>;
  const Tab = TABS[tab];
  return (
    <section class="admin">
      <h2>{t("admin.title")}</h2>
      <div class="tabs">
        {Object.keys(TABS).map((name) => (
          <button class={tab === name ? "active" : ""} onClick={() => setTab(name)} data-testid={`admin-tab-${name}`}>
            {t(`admin.tab.${name}`)}
          </button>
        ))}
      </div>
      <Tab me={user} />
    </section>
  );
}
