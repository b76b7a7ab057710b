import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, closeLive, loadRegion, setCsrf } from "./api.js";
import { go } from "./router.js";
import { chosenLanguage, loadLanguage, preferredLanguage, t, language } from "./i18n.js";
import { SignIn } from "./pages/SignIn.jsx";
import { Overview } from "./pages/Overview.jsx";
import { Wall } from "./pages/Wall.jsx";
import { Events } from "./pages/Events.jsx";
import { Incidents } from "./pages/Incidents.jsx";
import { Alerts } from "./pages/Alerts.jsx";
import { Sites } from "./pages/Sites.jsx";
import { Shift } from "./pages/Shift.jsx";
import { Admin } from "./pages/Admin.jsx";

// The map and the reports carry Leaflet and uPlot: loaded when first opened, so the wall and
// the overview start without them.
function lazy(load, name) {
  let found = null;
  return function Lazy(props) {
    const [Page, setPage] = useState(() => found);
    useEffect(() => {
      if (!found) load().then((module) => setPage(() => (found = module[name])));
    }, []);
    return Page ? <Page {...props} /> : <p>{t("loading")}</p>;
  };
}
const Map = lazy(() => import("./pages/Map.jsx"), "Map");
const Reports = lazy(() => import("./pages/Reports.jsx"), "Reports");

const PAGES = {
  overview: Overview,
  wall: Wall,
  events: Events,
  incidents: Incidents,
  alerts: Alerts,
  map: Map,
  reports: Reports,
  shift: Shift,
  admin: Admin,
  sites: Sites,
};
// Shown only on a hub that follows other sites (the region).
const ONLY_WITH_SITES = new Set(["sites"]);

function currentPage() {
  const [, , page, ...rest] = location.pathname.split("/");
  return { page: PAGES[page] ? page : "overview", rest };
}


function LiveIndicator() {
  const [up, setUp] = useState(null);
  useEffect(() => {
    const on = (e) => setUp(e.detail);
    window.addEventListener("nabat:live", on);
    return () => window.removeEventListener("nabat:live", on);
  }, []);
  return (
    <span class={`live ${up ? "up" : up === false ? "down" : ""}`} data-testid="live">
      {up ? t("live.up") : up === false ? t("live.down") : t("live.connecting")}
    </span>
  );
}

function Shell({ user, offShift, onSignOut, onLanguage }) {
  const [route, setRoute] = useState(currentPage());
  useEffect(() => {
    const on = () => setRoute(currentPage());
    window.addEventListener("popstate", on);
    return () => window.removeEventListener("popstate", on);
  }, []);
  const [region, setRegion] = useState(null);
  useEffect(() => {
    loadRegion().then(setRegion);
  }, []);
  const [hasSites, setHasSites] = useState(false);
  useEffect(() => {
    api("/api/v1/sites").then((page) => setHasSites(page.items.length > 0), () => {});
  }, []);
  const Page = PAGES[route.page];
  const named = (slug) => {
    const found = region && region.municipalities.find((m) => m.id === slug);
    return found ? (language === "ru" ? found.name_ru : found.name_en) : slug;
  };
  const where = user.municipalities.length ? user.municipalities.map(named).join(", ") : t("region.all");
  return (
    <div class="shell">
      <header>
        <span class="brand">{t("brand")}</span>
        <nav>
          {Object.keys(PAGES)
            .filter((name) => (hasSites || !ONLY_WITH_SITES.has(name)) && (name !== "admin" || user.role === "admin"))
            .map((name) => (
            <a
              href={`/console/${name}`}
              class={route.page === name ? "active" : ""}
              data-testid={`nav-${name}`}
              onClick={(e) => {
                e.preventDefault();
                go(`/console/${name}`);
              }}
            >
              {t(`nav.${name}`)}
            </a>
          ))}
        </nav>
        <LiveIndicator />
        <span class="who" data-testid="who">
          {user.name} · {t(`role.${user.role}`)} · {where}
        </span>
        <button class="link" onClick={() => onLanguage(language === "ru" ? "en" : "ru")}>
          {language === "ru" ? "EN" : "RU"}
        </button>
        <button class="link" data-testid="sign-out" onClick={onSignOut}>
          {t("sign_out")}
        </button>
      </header>
      {offShift && (
        <p class="warning-bar" role="alert" data-testid="off-shift">
          {t("shift.off_shift")}
        </p>
      )}
      <main>
        <Page user={user} rest={route.rest} />
      </main>
    </div>
  );
}

function App({ session: asked }) {
  const [user, setUser] = useState(undefined); // undefined: asking; null: signed out
  const [offShift, setOffShift] = useState(false);
  const [, setLang] = useState(language);

  useEffect(() => {
    const signedOut = () => {
      closeLive();
      setCsrf(null);
      setUser(null);
    };
    window.addEventListener("nabat:signed-out", signedOut);
    asked.then((session) => {
      if (session) setCsrf(session.csrf);
      setOffShift(!!(session && session.off_shift));
      setUser(session ? session.user : null);
    });
    return () => window.removeEventListener("nabat:signed-out", signedOut);
  }, []);

  const changeLanguage = async (lang, remember = true) => {
    await loadLanguage(lang, { remember });
    setLang(lang);
  };

  if (user === undefined) return <div class="boot">{t("loading")}</div>;
  if (user === null) {
    return (
      <SignIn
        onSignedIn={async (session) => {
          setCsrf(session.csrf);
          setOffShift(!!session.off_shift);
          // The account's language, unless the person chose one on this browser.
          if (!chosenLanguage() && session.user.language !== language) await changeLanguage(session.user.language, false);
          setUser(session.user);
        }}
        onLanguage={changeLanguage}
      />
    );
  }
  return (
    <Shell
      user={user}
      offShift={offShift}
      onLanguage={changeLanguage}
      onSignOut={async () => {
        try {
          await api("/console/api/sign-out", { method: "POST" });
        } finally {
          closeLive();
          setCsrf(null);
          setUser(null);
          history.replaceState(null, "", "/console/");
        }
      }}
    />
  );
}

// The catalog and the session are asked for at once: the first paint waits for one round trip.
const session = api("/console/api/session").catch(() => null);
loadLanguage(preferredLanguage())
  .catch(() => loadLanguage("ru"))
  .finally(() => render(<App session={session} />, document.getElementById("app")));
