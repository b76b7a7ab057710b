// Operator-facing text comes from the hub's message catalogs (nabat/locales/*.toml, keys
// console.*), Russian by default. t("wall.total", {n: 3}) fills {n}.

let strings = {};
export let language = "ru";

export async function loadLanguage(lang, { remember = false } = {}) {
  const response = await fetch(`/console/i18n/${lang}.json`);
  if (!response.ok) throw new Error(`no catalog for ${lang}`);
  strings = await response.json();
  language = lang;
  document.documentElement.lang = lang;
  if (!remember) return;
  try {
    localStorage.setItem("nabat.language", lang); // chosen by hand: kept on this browser
  } catch {
    /* private mode: the choice lasts this page only */
  }
}

export function chosenLanguage() {
  try {
    return localStorage.getItem("nabat.language");
  } catch {
    return null;
  }
}

export function preferredLanguage() {
  try {
    return localStorage.getItem("nabat.language") || "ru";
  } catch {
    return "ru";
  }
}

export function t(key, params = {}) {
  const text = strings[`console.${key}`];
  if (text === undefined) return key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in params ? String(params[name]) : `{${name}}`));
}

// Whether the catalog has a key: text built from a value (a reason code, an event type) falls
// back to something general when the hub sends one the catalog does not know yet.
export function has(key) {
  return strings[`console.${key}`] !== undefined;
}

export function formatAge(seconds) {
  if (seconds == null) return "—";
  if (seconds < 60) return t("age.seconds", { n: Math.round(seconds) });
  if (seconds < 3600) return t("age.minutes", { n: Math.round(seconds / 60) });
  return t("age.hours", { n: Math.round(seconds / 3600) });
}

export function formatTime(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleString(language === "ru" ? "ru-RU" : "en-GB");
}
