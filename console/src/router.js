// Page navigation without reloads: pages call go(path); the shell listens for popstate.
export function go(path) {
  history.pushState(null, "", path);
  window.dispatchEvent(new PopStateEvent("popstate"));
}
