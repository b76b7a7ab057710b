// A map that needs no internet: the region's municipality outlines (shipped with the hub, from
// OpenStreetMap) drawn as vectors, no tile server; markers on top.
import { useEffect, useRef } from "preact/hooks";
import L from "leaflet";
import { t } from "../i18n.js";

// Leaflet puts a string tooltip in as HTML: names and titles come from outside (an incident's
// title from 112), so they go in as text.
function text(value) {
  const span = document.createElement("span");
  span.textContent = value;
  return span;
}

let outlines = null;
function loadOutlines() {
  if (!outlines) outlines = fetch("/console/outlines.geojson").then((r) => (r.ok ? r.json() : { features: [] }));
  return outlines;
}

// markers: [{id, lat, lon, colour, label, onClick}]; selected: Set of slugs; focus: slugs to fit.
// circle: {lat, lon, radius_km} drawn; onPoint(lat, lon): a click on the map (circle mode).
export function RegionMap({ markers = [], selected, focus = [], onToggle, onPoint, circle, height = 560, testid = "map" }) {
  const box = useRef(null);
  const map = useRef(null);
  const shapes = useRef(null);
  const dots = useRef(null);
  const ring = useRef(null);
  const handlers = useRef({});
  handlers.current = { onToggle, onPoint };

  useEffect(() => {
    map.current = L.map(box.current, { zoomSnap: 0.25, attributionControl: true, preferCanvas: true });
    // No tiles are drawn: the only outside data is the outlines, and this is their source note
    // (ODbL asks for it), not a tile server's attribution.
    map.current.attributionControl.setPrefix(false).addAttribution(text(t("map.outlines_source")).outerHTML);
    dots.current = L.layerGroup().addTo(map.current);
    loadOutlines().then((geo) => {
      if (!map.current) return;
      shapes.current = L.geoJSON(geo, {
        style: () => ({ color: "#4c9aff", weight: 1, fillOpacity: 0.06 }),
        onEachFeature: (feature, layer) => {
          layer.bindTooltip(text(feature.properties.name_ru), { sticky: true });
          layer.on("click", (e) => {
            const { onToggle: toggle, onPoint: point } = handlers.current;
            if (point) point(e.latlng.lat, e.latlng.lng);
            else if (toggle) toggle(feature.properties.id);
          });
        },
      }).addTo(map.current);
      shapes.current.bringToBack();
      const wanted = shapes.current.getLayers().filter((l) => focus.includes(l.feature.properties.id));
      const bounds = wanted.length ? L.featureGroup(wanted).getBounds() : shapes.current.getBounds();
      if (bounds.isValid()) map.current.fitBounds(bounds, { padding: [10, 10] });
      paint();
    });
    return () => {
      map.current.remove();
      map.current = null;
    };
  }, []);

  const paint = () => {
    if (!shapes.current) return;
    shapes.current.setStyle((feature) =>
      selected && selected.has(feature.properties.id)
        ? { color: "#e5383b", weight: 2, fillOpacity: 0.3 }
        : { color: "#4c9aff", weight: 1, fillOpacity: 0.06 },
    );
  };
  useEffect(paint, [selected]);

  useEffect(() => {
    if (!map.current) return;
    if (ring.current) ring.current.remove();
    ring.current = null;
    if (circle && circle.lat != null) {
      ring.current = L.circle([circle.lat, circle.lon], {
        radius: circle.radius_km * 1000,
        color: "#e5383b",
        weight: 2,
        fillOpacity: 0.25,
      }).addTo(map.current);
    }
  }, [circle && circle.lat, circle && circle.lon, circle && circle.radius_km]);

  useEffect(() => {
    if (!dots.current) return;
    dots.current.clearLayers();
    for (const m of markers) {
      if (m.lat == null || m.lon == null) continue;
      const dot = L.circleMarker([m.lat, m.lon], {
        radius: m.radius || 6,
        color: "#000",
        weight: 1,
        fillColor: m.colour,
        fillOpacity: 0.95,
      });
      if (m.label) dot.bindTooltip(text(m.label));
      if (m.onClick) dot.on("click", m.onClick);
      dot.addTo(dots.current);
    }
  }, [markers]);

  return <div ref={box} class="region-map" style={{ height: `${height}px` }} data-testid={testid} />;
}
