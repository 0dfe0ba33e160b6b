// Markers everyone sees: the set the relay sends on the data channel ("markers" once, then
// one "marker" per change), drawn in the picture — each ground point projected through the
// footprint of the frame on screen, so a marker stays on its roof as the drone moves — and
// on the map. A marker off the picture is an arrow on the picture's edge with its distance.
// Labels are put in as text, never as HTML.
import { distanceM, groundPoint, picturePoint, pictureXY } from "./geo.js";

// Each kind: a colour and a symbol a crew reads at a glance (drawn here as SVG, no font
// needed; after the shapes of the German tactical signs: a figure, a flame, a warning
// triangle, an arrow into an opening, a drop), and its name in English and German. A
// brigade may set its own words ([markers] names in the relay's config).
const NAMES = {
  en: { person: "Person", hotspot: "Hot spot", hazard: "Hazard", access: "Access point", water: "Water source", note: "Note" },
  de: { person: "Person", hotspot: "Glutnest", hazard: "Gefahr", access: "Zugang", water: "Wasserentnahme", note: "Notiz" },
};
const SYMBOLS = {
  person: [["M12 2.6a2.7 2.7 0 1 0 0 5.4a2.7 2.7 0 1 0 0-5.4z", true], ["M12 9.8v6.4M6.8 11.6 12 10l5.2 1.6M12 16.2l-3.6 5.2M12 16.2l3.6 5.2", false]],
  hotspot: [["M12 2.2c.8 3.6 6 5.8 6 11.4a6 6 0 0 1-12 0c0-3 1.7-4.5 2.5-6.8 1.5 1.3 2.2 3 2.1 4.9 1.7-1.9 2-5.6 1.4-9.5z", true]],
  hazard: [["M12 3.2 21.6 20.2H2.4z", false], ["M12 9.6v5.2M12 17.4v.1", false]],
  access: [["M3.5 12h10.5M9.8 7.2 14.6 12l-4.8 4.8M17 3.8h3.4v16.4H17", false]],
  water: [["M12 2.8c3.2 4.8 6.6 8.2 6.6 12.2a6.6 6.6 0 0 1-13.2 0c0-4 3.4-7.4 6.6-12.2z", true]],
  note: [["M12 2.8a9.2 9.2 0 1 0 0 18.4a9.2 9.2 0 1 0 0-18.4z", false], ["M12 7.3v.1M12 10.6v6.6", false]],
};
const COLORS = { person: "#ff4fd8", hotspot: "#ff6a00", hazard: "#ffd400", access: "#2ecc71", water: "#3fa9ff", note: "#e8e8e8" };
// The order a crew needs them in: a label that must give way to another gives way to this.
export const PRIORITY = ["person", "hazard", "hotspot", "access", "water", "note"];
let names = { ...NAMES.en };

// The names the pages use: ``lang`` "en", "de" or "auto" (the browser's language), then the
// brigade's own words (``overrides``: kind -> name, text from the relay's config).
export function setKindNames(lang, overrides) {
  const want = lang === "de" || lang === "en" ? lang
    : ((navigator.languages && navigator.languages[0]) || navigator.language || "en").toLowerCase().startsWith("de") ? "de" : "en";
  names = { ...NAMES[want] };
  for (const [k, v] of Object.entries(overrides || {})) if (k in names && typeof v === "string" && v) names[k] = v.slice(0, 40);
  document.documentElement.dataset.kindLang = want;
  return want;
}

export const KINDS = Object.fromEntries(Object.keys(COLORS).map((k) => [k, {
  color: COLORS[k],
  get name() { return names[k]; },
}]));
const kindOf = (k) => KINDS[k] || KINDS.note;

// The kind's symbol: a small SVG built node by node (nothing parsed as markup).
export function symbol(kind) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.classList.add("sym-svg");
  for (const [d, filled] of SYMBOLS[kind] || SYMBOLS.note) {
    const p = document.createElementNS(NS, "path");
    p.setAttribute("d", d);
    p.setAttribute("fill", filled ? "#000" : "none");
    p.setAttribute("stroke", "#000");
    p.setAttribute("stroke-width", filled ? "1" : "2.3");
    p.setAttribute("stroke-linecap", "round");
    p.setAttribute("stroke-linejoin", "round");
    svg.append(p);
  }
  return svg;
}

// A legend: each kind's symbol and name (all kinds, or those in ``only``).
export function fillLegend(box, only) {
  const items = PRIORITY.filter((k) => !only || only.has(k)).map((k) => {
    const item = document.createElement("span");
    item.className = "item";
    item.dataset.kind = k;
    const sym = document.createElement("span");
    sym.className = "sym";
    sym.style.setProperty("--mc", COLORS[k]);
    sym.append(symbol(k));
    item.append(sym, names[k]);
    return item;
  });
  box.replaceChildren(...items);
  box.hidden = items.length === 0;
}

// Labels that would overlap give way: each in turn (by PRIORITY, then nearest the centre)
// takes the first free place of right, left, below or above its pin, or is hidden (its pin
// stays; a tap on it shows the label). ``items``: {x, y, w, kind, near}; returns for each
// {place, box} (box null when hidden). Pins are obstacles too.
// A label's width as drawn, at most ``maxPx`` (longer text ends in "…"): measured once per
// text and size by its caller, a layout read that must not happen every frame.
export function labelWidth(label, maxPx) {
  label.style.maxWidth = `${Math.round(maxPx)}px`;
  return Math.ceil(label.getBoundingClientRect().width);
}

const PLACES = [["r", 17, -11], ["l", -17, -11], ["rb", 17, 9], ["lb", -17, 9], ["ra", 17, -31], ["la", -17, -31]];
export function declutter(items, W, H) {
  const taken = items.map((it) => ({ x: it.x - 13, y: it.y - 13, w: 26, h: 26 }));
  const order = items.map((it, i) => i).sort((a, b) =>
    (PRIORITY.indexOf(items[a].kind) - PRIORITY.indexOf(items[b].kind)) || (items[a].near - items[b].near));
  const out = new Array(items.length);
  const hits = (b, skip) => taken.some((t, j) => j !== skip && b.x < t.x + t.w && t.x < b.x + b.w && b.y < t.y + t.h && t.y < b.y + b.h);
  for (const i of order) {
    const it = items[i];
    out[i] = { place: "none", box: null };
    const pref = it.x > W * 0.7 ? [1, 0, 3, 2, 5, 4] : [0, 1, 2, 3, 4, 5];
    for (const p of pref) {
      const [name, dx, dy] = PLACES[p];
      const box = { x: dx > 0 ? it.x + dx : it.x + dx - it.w, y: it.y + dy, w: it.w, h: 20 };
      if (box.x < 0 || box.x + box.w > W || box.y < 0 || box.y + box.h > H) continue;
      if (hits(box, i)) continue;
      taken.push(box);
      out[i] = { place: name, box };
      break;
    }
  }
  return out;
}

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
      e.firstChild.replaceChildren(symbol(m.kind));
      e.dataset.kind = m.kind;
      e.style.zIndex = String(10 - Math.max(0, PRIORITY.indexOf(m.kind)));  // a person's pin on top
      e._kind = m.kind;
    }
    return e;
  }

  _show(e, x, y, edge, text) {
    e.style.transform = `translate(${x.toFixed(1)}px, ${y.toFixed(1)}px)`;
    if (e._edge !== edge) { e.classList.toggle("edge", edge); e._edge = edge; }
    if (e._text !== text) {
      e.children[1].textContent = text; e._text = text;
      e.children[1].title = text;
      e._lw = null;  // measured again (once) below
    }
  }

  // Where each label goes (or none): the drawn pins and arrows, decluttered.
  _labels(W, H) {
    const items = this.drawn.map((d) => {
      const e = this.els.get(d.id);
      if (e._lw === null || e._lw === undefined || e._lwW !== W) {  // (once per text and size)
        e._lw = labelWidth(e.children[1], W * 0.4);
        e._lwW = W;
      }
      return { x: d.x, y: d.y, w: e._lw, kind: d.kind, near: Math.hypot(d.x - W / 2, d.y - H / 2) };
    });
    const placed = declutter(items, W, H);
    this.drawn.forEach((d, i) => {
      const e = this.els.get(d.id);
      d.label = placed[i].box;
      if (e.dataset.lp !== placed[i].place) e.dataset.lp = placed[i].place;
    });
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
    if (this.drawn.length) this._labels(W, H);
    const ms = performance.now() - t0;
    this.cost.draws++; this.cost.ms += ms; this.cost.max = Math.max(this.cost.max, ms);
  }

  _place(e, m, p, s, centre, W, H, w, h) {
    const inside = !p.behind && Math.abs(p.u) <= 1 && Math.abs(p.v) <= 1;
    const box = pictureXY(0, 0, W, H, w, h);
    const text = m.label || kindOf(m.kind).name;
    if (inside) {
      const { x, y } = pictureXY(p.u, p.v, W, H, w, h);
      this._show(e, x, y, false, text);
      this.drawn.push({ id: m.id, kind: m.kind, x, y, u: p.u, v: p.v, inside: true, t: s.t, W, H, w, h, box, s });
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
    this._show(e, x, y, true, `${text} · ${fmtDist(dist)}`);
    e.lastChild.style.transform = `rotate(${angle}deg)`;
    this.drawn.push({ id: m.id, kind: m.kind, x, y, inside: false, t: s.t, dist, W, H, w, h, box, s });
  }
}
