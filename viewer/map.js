// The map beside the picture: the drone(s), the track of the last minutes, the camera's
// footprint, a clicked ground point. Leaflet comes from the relay (/static/leaflet/, the
// XStatic-Leaflet package); tiles from the configured server, or none: then a plain grid
// with a scale, so the map works with no internet at all.
import { footprint } from "./geo.js";
import { KINDS, PRIORITY, declutter, labelWidth, symbol } from "./markers.js";

const L = window.L;
const NICE = [1, 2, 5];

function niceStep(metres) {
  const p = 10 ** Math.floor(Math.log10(metres));
  for (const n of NICE) if (n * p >= metres) return n * p;
  return 10 * p;
}

export class DroneMap {
  constructor(el, cfg = {}) {
    this.el = el;
    this.cfg = cfg;
    this.map = L.map(el, { zoomControl: true, attributionControl: Boolean(cfg.tile_url), zoomSnap: 0.5 });
    if (cfg.tile_url) {
      // Leaflet takes attribution as HTML: ours is configuration text, so escape it.
      const esc = (t) => String(t).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
      L.tileLayer(cfg.tile_url, { maxZoom: 19, attribution: esc(cfg.attribution || "") }).addTo(this.map);
    } else {
      el.classList.add("gridmap");
      this.grid = L.layerGroup().addTo(this.map);
      this.map.on("moveend zoomend resize", () => this._drawGrid());
    }
    L.control.scale({ imperial: false }).addTo(this.map);
    this.map.setView([cfg.lat ?? 51.0, cfg.lon ?? 10.0], cfg.lat === undefined ? 5 : 16);
    this.drones = new Map();  // name -> {marker, track, foot, label}
    this.follow = true;
    this.fitted = false;
    this.map.on("dragstart", () => { this.follow = false; });
    this.map.on("zoomend moveend resize", () => this._labels());
    this.clicked = null;
  }

  _drawGrid() {
    if (!this.grid) return;
    this.grid.clearLayers();
    const b = this.map.getBounds();
    const c = b.getCenter();
    const widthM = this.map.distance([c.lat, b.getWest()], [c.lat, b.getEast()]);
    if (!(widthM > 0)) return;
    const step = niceStep(widthM / 8);
    const dLat = step / 111320, dLon = step / (111320 * Math.cos((c.lat * Math.PI) / 180));
    const style = { color: "#3a4654", weight: 1, interactive: false };
    for (let lat = Math.floor(b.getSouth() / dLat) * dLat; lat <= b.getNorth(); lat += dLat) {
      L.polyline([[lat, b.getWest()], [lat, b.getEast()]], style).addTo(this.grid);
    }
    for (let lon = Math.floor(b.getWest() / dLon) * dLon; lon <= b.getEast(); lon += dLon) {
      L.polyline([[b.getSouth(), lon], [b.getNorth(), lon]], style).addTo(this.grid);
    }
  }

  _drone(name) {
    let d = this.drones.get(name);
    if (d) return d;
    const icon = L.divIcon({ className: "drone-icon", html: "<div class=\"arrow\"></div><div class=\"tag\"></div>",
                             iconSize: [28, 28], iconAnchor: [14, 14] });
    d = {
      marker: L.marker([0, 0], { icon, keyboard: false }),
      track: L.polyline([], { color: "#f1c40f", weight: 2, opacity: 0.8, interactive: false }),
      foot: L.polygon([], { color: "#e74c3c", weight: 2, fillOpacity: 0.15, interactive: false }),
      last: null,
    };
    d.track.addTo(this.map); d.foot.addTo(this.map); d.marker.addTo(this.map);
    d.marker.getElement().querySelector(".tag").textContent = name;  // text, never HTML
    this.drones.set(name, d);
    return d;
  }

  setTrack(name, points) {
    this._drone(name).track.setLatLngs(points.map((p) => [p[1], p[2]]));
  }

  // Show sample s (the state of the frame on screen) for drone `name`.
  update(name, s, stale, replay = false) {
    if (!s || s.lat === undefined) return;
    const isNew = !this.drones.has(name);
    const d = this._drone(name);
    d.marker.setLatLng([s.lat, s.lon]);
    const el = d.marker.getElement();
    el.classList.toggle("stale", Boolean(stale));
    el.classList.toggle("replay", Boolean(replay));
    el.querySelector(".arrow").style.transform = `rotate(${s.hdg ?? 0}deg)`;
    const last = d.track.getLatLngs();
    const tail = last[last.length - 1];
    if (!replay && (!tail || this.map.distance(tail, [s.lat, s.lon]) > 3)) d.track.addLatLng([s.lat, s.lon]);
    while (d.track.getLatLngs().length > 4000) d.track.getLatLngs().shift();
    const fp = stale ? null : footprint(s);
    d.foot.setLatLngs(fp || []);
    d.last = s;
    if (!this.fitted) {
      this.fitted = true;
      if (fp) this.map.fitBounds(L.latLngBounds([[s.lat, s.lon], ...fp]).pad(0.1), { maxZoom: 18 });
      else this.map.setView([s.lat, s.lon], 16);
    } else if (isNew) {
      this.fitAll();  // a second drone: show them all
    } else if (this.follow && this.drones.size === 1 && !this.map.getBounds().pad(-0.2).contains([s.lat, s.lon])) {
      this.map.panTo([s.lat, s.lon]);
    }
  }

  fitAll() {
    const pts = [];
    for (const d of this.drones.values()) if (d.last) pts.push([d.last.lat, d.last.lon]);
    if (pts.length > 1) this.map.fitBounds(L.latLngBounds(pts).pad(0.5), { maxZoom: 17 });
    else if (pts.length === 1) this.map.setView(pts[0], Math.max(this.map.getZoom(), 15));
  }

  remove(name) {
    const d = this.drones.get(name);
    if (!d) return;
    d.marker.remove(); d.track.remove(); d.foot.remove();
    this.drones.delete(name);
  }

  mark(lat, lon) {
    if (this.clicked) this.clicked.remove();
    this.clicked = L.circleMarker([lat, lon], { radius: 7, color: "#7fb3ff", weight: 3, fillOpacity: 0.6 }).addTo(this.map);
  }

  // The incident's markers: a pin with the kind's letter and the label (as text).
  setMarkers(list, onPick) {
    if (!this.marks) this.marks = new Map();
    const keep = new Set();
    for (const m of list) {
      keep.add(m.id);
      let mk = this.marks.get(m.id);
      if (!mk) {
        const icon = L.divIcon({ className: "map-mark", html: "", iconSize: [0, 0], iconAnchor: [0, 0] });
        mk = L.marker([m.lat, m.lon], { icon, keyboard: false, zIndexOffset: 1000 }).addTo(this.map);
        const e = mk.getElement();
        const pin = document.createElement("div"); pin.className = "pin";
        const label = document.createElement("div"); label.className = "mlabel";
        e.append(pin, label);
        e.dataset.id = m.id;
        if (onPick) mk.on("click", () => onPick(m.id));
        this.marks.set(m.id, mk);
      }
      mk.setLatLng([m.lat, m.lon]);
      if (mk.kind !== m.kind) mk.setZIndexOffset(1000 + 100 * (6 - Math.max(0, PRIORITY.indexOf(m.kind))));
      mk.kind = m.kind;
      const k = KINDS[m.kind] || KINDS.note;
      const e = mk.getElement();
      e.style.setProperty("--mc", k.color);
      if (e.dataset.kind !== m.kind) { e.querySelector(".pin").replaceChildren(symbol(m.kind)); e.dataset.kind = m.kind; }
      const label = e.querySelector(".mlabel"), text = m.label || k.name;
      if (label.textContent !== text) { label.textContent = text; label.title = text; mk.lw = null; }
    }
    for (const [id, mk] of this.marks) if (!keep.has(id)) { mk.remove(); this.marks.delete(id); }
    this._labels();
  }

  // The markers' labels on the map, decluttered as in the picture (a label that would cover
  // another gives way, by kind, then nearest the centre); ``labels`` for tests.
  _labels() {
    if (!this.marks || !this.marks.size) { this.labels = []; return; }
    const size = this.map.getSize();
    const list = [...this.marks.values()];
    const items = list.map((mk) => {
      const p = this.map.latLngToContainerPoint(mk.getLatLng());
      const label = mk.getElement().querySelector(".mlabel");
      if (!mk.lw || mk.lwW !== size.x) {  // (once per text and size)
        mk.lw = labelWidth(label, size.x * 0.45); mk.lwW = size.x;
      }
      return { x: p.x, y: p.y, w: mk.lw, kind: mk.kind, near: Math.hypot(p.x - size.x / 2, p.y - size.y / 2) };
    });
    const placed = declutter(items, size.x, size.y);
    this.labels = list.map((mk, i) => ({ id: mk.getElement().dataset.id, x: items[i].x, y: items[i].y, label: placed[i].box }));
    list.forEach((mk, i) => { mk.getElement().dataset.lp = placed[i].place; });
  }

  onGroundClick(fn) { this.map.on("click", (e) => fn(e.latlng.lat, e.latlng.lng)); }

  invalidate() { this.map.invalidateSize(); }
}
