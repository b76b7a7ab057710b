// The console's one door to the hub: the JSON API with the session cookie; every write
// carries the session's CSRF token. A 401 anywhere means the session ended: back to sign-in.

let csrf = null;

export function setCsrf(token) {
  csrf = token;
}

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    signal,
  });
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    if (response.status === 401 && !path.startsWith("/console/api/sign-in")) {
      window.dispatchEvent(new CustomEvent("nabat:signed-out"));
    }
    throw new ApiError(response.status, typeof data === "object" ? data : null);
  }
  return data;
}

// One live stream for the whole page; pages subscribe by event type prefix.
const listeners = new Set();
let source = null;

export function live(handler) {
  listeners.add(handler);
  if (!source) {
    source = new EventSource("/api/v1/events/stream", { withCredentials: true });
    source.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      for (const listener of listeners) listener(event);
    };
    source.onopen = () => window.dispatchEvent(new CustomEvent("nabat:live", { detail: true }));
    source.onerror = () => window.dispatchEvent(new CustomEvent("nabat:live", { detail: false }));
  }
  return () => {
    listeners.delete(handler);
  };
}

export function closeLive() {
  if (source) source.close();
  source = null;
  listeners.clear();
}

// The region's municipalities (names for slugs), asked once per page.
let region = null;
export function loadRegion() {
  if (!region) region = api("/console/api/region").catch(() => ({ municipalities: [] }));
  return region;
}
