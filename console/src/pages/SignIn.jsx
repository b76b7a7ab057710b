import { useState } from "preact/hooks";
import { api } from "../api.js";
import { t, language } from "../i18n.js";

export function SignIn({ onSignedIn, onLanguage }) {
  const [login, setLogin] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onSignedIn(await api("/console/api/sign-in", { method: "POST", body: { login, password } }));
    } catch (err) {
      setError(err.status === 423 ? t("sign_in.locked") : err.status === 401 ? t("sign_in.wrong") : t("error.generic", { reason: err.message }));
      setPassword("");
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="sign-in" onSubmit={submit} data-testid="sign-in">
      <h1>{t("brand")}</h1>
      <p class="muted">{t("sign_in.title")}</p>
      <label>
        {t("sign_in.login")}
        <input name="login" autocomplete="username" value={login} onInput={(e) => setLogin(e.target.value)} required autofocus />
      </label>
      <label>
        {t("sign_in.password")}
        <input name="password" type="password" autocomplete="current-password" value={password} onInput={(e) => setPassword(e.target.value)} required />
      </label>
      {error && <p class="error" role="alert" data-testid="sign-in-error">{error}</p>}
      <button type="submit" disabled={busy}>{t("sign_in.submit")}</button>
      <button type="button" class="link" onClick={() => onLanguage(language === "ru" ? "en" : "ru")}>
        {language === "ru" ? "English" : "Русский"}
      </button>
    </form>
  );
}
