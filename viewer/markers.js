// Markers everyone sees: the set the relay sends on the data channel ("markers" once, then
// one "marker" per change), drawn in the picture — each ground point projected through the
// footprint of the frame on screen, so a marker stays on its roof as the drone moves — and
// on the map. A marker off the picture is an arrow on the picture's edge with its distance.
// Labels are put in as text, never as HTML.
import { distanceM, groundPoint, picturePoint, pictureXY } from "./geo.js";

export const KINDS = {
  person: { name: "Person", glyph: "P", color: "#ff4fd8" },
  hotspot: { name: "Hot spot", glyph: "H", color: "#ff6a00" },
  hazard: { name: "Hazard", glyph: "!", color: "#ffd400" },
  access: { name: "Access point", glyph: "A", color: "#2ecc71" },
  water: { name: "Water source", glyph: "W", color: "#3fa9ff" },
  note: { name: "Note", glyph: "N", color: "#e8e8e8" },
};
const kindOf = (k) => KINDS[k] || KINDS.note;

// Each change comes with the relay's book version n, on the reliable channel and as copies on
// the unordered one (a lost packet on a weak link must not hold a marker up): a change is
// applied once, and never after a later change of the same marker.
export class MarkerSet {
  constructor() {
    this.byId = new Map();
    this.listeners = [];
    this.version = 0;   // changes applied here
    this.base = -1;     // the book version of the last full set taken
    this.maxN = -1;     // the highest version applied
    this.lastN = new Map();  // marker id -> the version of its last change applied
  }

  // A "markers" (every marker, at version n) or "marker" message, or a listing from the API.
  apply(msg) {
    const n = typeof msg.n === "number" ? msg.n : null;
    if (msg.type === "markers") {
      if (n !== null && n < this.maxN) return;  // older than what this page holds: a newer one follows
      this.byId = new Map((msg.all || []).map((m) => [m.id, m]));
      if (n !== null) { this.base = n; this.maxN = n; this.lastN.clear(); }
    } else if (msg.type === "marker" && msg.m && typeof msg.m.id === "string") {
      const id = msg.m.id;
      if (n !== null) {
        if (n <= this.base || n <= (this.lastN.get(id) ?? -1)) return;  // had it, or a later change
        this.lastN.set(id, n);
        this.maxN = Math.max(this.maxN, n);
      }
      if (msg.op === "remove") this.byId.delete(id);
      else this.byId.set(id, msg.m);
    } else return;
    this.version++;
    for (const fn of this.listeners) fn(this);
  }

  list() { return [...this.byId.values()]; }
}

function el(tag, cls) { const e = document.createElement(tag); e.className = cls; return e; }
const fmtDist = (m) => (m >= 1000 ? `${(m / 1000).toFixed(1)} km` : `${Math.round(m)} m`);

// The markers over one <video>: a layer of pins and edge arrows, redrawn for each frame
// presented (requestVideoFrameCallback) with that frame's telemetry.
export class PictureMarks {
  constructor(video, layer, sampleOf, opts = {}) {
    this.video = video;
    this.layer = layer;
    this.sampleOf = sampleOf;       // () => the telemetry sample of the frame on screen
    this.markers = () => [];        // () => the markers to draw
    this.onPick = opts.onPick || null;
    this.videoOf = opts.videoOf || (() => video);  // the video on screen (live, or the replay)
    this.els = new Map();
    this.drawn = [];                // for tests and the curious: what was drawn where
    this.cost = { draws: 0, ms: 0, max: 0 };
    this._loop();
  }

  _loop() {
    const v = this.video;
    const next = () => { this.draw(); this._schedule(next); };
    this._schedule = "requestVideoFrameCallback" in HTMLVideoElement.prototype
      ? (fn) => v.requestVideoFrameCallback(fn)
      : (fn) => setTimeout(fn, 100);
    this._schedule(next);
    setInterval(() => this.draw(), 200);  // also while the picture stands still, and in replay
  }

  _pin(m) {
    let e = this.els.get(m.id);
    if (!e) {
      e = el("div", "mark");
      e.dataset.id = m.id;
      const pin = el("div", "pin"), label = el("div", "mlabel"), arrow = el("div", "marrow");
      e.append(pin, label, arrow);
      if (this.onPick) {
        e.addEventListener("click", (ev) => { ev.stopPropagation(); this.onPick(m.id); });
      }
      this.layer.append(e);
      this.els.set(m.id, e);
    }
    if (e._kind !== m.kind) {  // DOM writes only for what changed: a draw per frame stays cheap
      const k = kindOf(m.kind);
      e.style.setProperty("--mc", k.color);
      e.firstChild.textContent = k.glyph;
      e._kind = m.kind;
    }
    return e;
  }

  _show(e, x, y, edge, flip, text) {
    e.style.transform = `translate(${x.toFixed(1)}px, ${y.toFixed(1)}px)`;
    if (e._edge !== edge) { e.classList.toggle("edge", edge); e._edge = edge; }
    if (e._flip !== flip) { e.classList.toggle("flip", flip); e._flip = flip; }
    if (e._text !== text) { e.children[1].textContent = text; e._text = text; }
  }

  draw() {
    const t0 = performance.now();
    const v = this.videoOf(), s = this.sampleOf();
    const list = this.markers();
    const seen = new Set();
    this.drawn = [];
    const W = v.clientWidth, H = v.clientHeight, w = v.videoWidth, h = v.videoHeight;
    if (s && w > 0 && h > 0 && W > 0 && H > 0 && !v.hidden) {
      const centre = groundPoint(s, 0, 0);
      for (const m of list) {
        const p = picturePoint(s, m.lat, m.lon);
        if (!p) continue;
        const e = this._pin(m);
        seen.add(m.id);
        this._place(e, m, p, s, centre, W, H, w, h);
      }
    }
    for (const [id, e] of this.els) if (!seen.has(id)) { e.remove(); this.els.delete(id); }
    const ms = performance.now() - t0;
    this.cost.draws++; this.cost.ms += ms; this.cost.max = Math.max(this.cost.max, ms);
  }

  _place(e, m, p, s, centre, W, H, w, h) {
    const inside = !p.behind && Math.abs(p.u) <= 1 && Math.abs(p.v) <= 1;
    const box = pictureXY(0, 0, W, H, w, h);
    const text = m.label || kindOf(m.kind).name;
    if (inside) {
      const { x, y } = pictureXY(p.u, p.v, W, H, w, h);
      this._show(e, x, y, false, x > W * 0.7, text);
      this.drawn.push({ id: m.id, x, y, u: p.u, v: p.v, inside: true, t: s.t, W, H, w, h, box, s });
      return;
    }
    // Off the picture: an arrow on the edge, in the direction of the point.
    let dx = p.behind ? p.x : p.u, dy = p.behind ? -Math.abs(p.y) - 1 : -p.v;
    if (p.behind && Math.abs(dx) < 1e-6) dx = 1e-6;
    const hw = box.pw / 2 - 18, hh = box.ph / 2 - 18;
    const k = Math.min(hw / Math.max(1e-9, Math.abs(dx) * box.pw / 2), hh / Math.max(1e-9, Math.abs(dy) * box.ph / 2));
    const x = box.left + box.pw / 2 + dx * (box.pw / 2) * k, y = box.top + box.ph / 2 + dy * (box.ph / 2) * k;
    const angle = Math.atan2(dy * box.ph, dx * box.pw) * 180 / Math.PI;
    const from = centre || [s.lat, s.lon];
    const dist = distanceM(from[0], from[1], m.lat, m.lon);
    this._show(e, x, y, true, x > W * 0.6, `${text} · ${fmtDist(dist)}`);
    e.lastChild.style.transform = `rotate(${angle}deg)`;
    this.drawn.push({ id: m.id, x, y, inside: false, t: s.t, dist, W, H, w, h, box, s });
  }
}
