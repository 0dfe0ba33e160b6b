import { WhepPlayer, formatAge, levelOf } from "./whep.js";
import { askForToken, authFetch } from "./auth.js";
import { DroneMap } from "./map.js";
import { MarkerSet, PictureMarks, fillLegend, setKindNames } from "./markers.js";

const params = new URLSearchParams(location.search);
const grid = document.getElementById("grid");
const tiles = new Map();  // name -> {el, player, doc}
window.__wall = tiles;
// The incident's markers: every tile's data channel brings them (and /api/streams); each
// tile draws them in its picture, the map shows them all.
const markers = new MarkerSet();
window.__markers = markers;
markers.listeners.push(() => { if (dmap) dmap.setMarkers(markers.list()); for (const t of tiles.values()) t.marks.draw(); legend(); });
// The legend (the kinds on the wall) in the header, in the brigade's words.
let legendKey = null;
function legend() {
  const kinds = new Set(markers.list().map((m) => m.kind));
  const key = [...kinds].sort().join(",");
  if (key !== legendKey) { legendKey = key; fillLegend(document.getElementById("legend"), kinds); }
}
authFetch("/api/markers").then((r) => (r.ok ? r.json() : null)).then((doc) => {
  if (!doc) return;
  setKindNames(doc.lang, doc.names);
  legendKey = null; legend();
  for (const t of tiles.values()) for (const e of t.marks.els.values()) { e._text = null; e._kind = null; }
}).catch(() => {});

// Each tile plays the rung that fits its size (the smallest transcoded rung at least as tall
// as the tile's pixels), which carries the relay's overlay (name, clock, LIVE): not the
// drone's full-bitrate source, unless the stream has nothing else. ?rendition= forces one.
export function rungFor(renditions, px) {
  const rungs = renditions.filter((r) => !r.passthrough && r.height).sort((a, b) => a.height - b.height);
  if (!rungs.length) return renditions.length ? renditions[renditions.length - 1].name : null;
  const fits = rungs.find((r) => r.height >= px * 0.9);
  return (fits || rungs[rungs.length - 1]).name;
}
window.__rungFor = rungFor;

function tile(doc) {
  const el = document.createElement("div");
  el.className = "tile"; el.dataset.name = doc.name;
  el.append(node("video", { autoplay: "", muted: "", playsinline: "" }), node("div", { class: "label" }),
            node("div", { class: "age lvl-unknown" }, "—"), node("div", { class: "tele" }), node("div", { class: "health" }),
            node("button", {}, "stats"));
  el.querySelector("video").muted = true;
  el.querySelector(".label").textContent = doc.title || doc.name;
  el.querySelector("button").onclick = () => showStats(doc.name);
  const t = { el, player: null, rung: null, doc, video: el.querySelector("video"), next: null };
  const layer = node("div", { class: "marklayer" });
  el.querySelector("video").after(layer);
  t.marks = new PictureMarks(t.video, layer, () => (t.player ? t.player.telemetryShown() : null),
                             { videoOf: () => t.video });
  t.marks.markers = () => markers.list();
  grid.insertBefore(el, document.getElementById("maptile"));
  return t;
}

// (Re)start a tile's player on the rung its size wants: at first, and when the layout has
// changed the tile's size across a rung (a drone joined or left, the window resized). A change
// of rung plays the new session in a second <video> under the first and swaps them at its
// first frame: the wall never goes black because a drone joined.
function play(t) {
  const rung = wanted(t);
  if (!rung || rung === t.rung) return;
  if (t.next && rung === t.playing) {  // back to the rung on screen before the swap: keep it
    t.next.player.stop(); t.next.video.remove(); t.next = null;
    t.rung = rung; t.el.dataset.rung = rung;
    return;
  }
  t.rung = rung;
  t.el.dataset.rung = rung;
  const el = t.el, name = t.doc.name, first = !t.player;
  const video = first ? t.video : node("video", { autoplay: "", muted: "", playsinline: "", class: "next" });
  video.muted = true;
  if (!first) t.video.before(video);
  if (t.next) { t.next.player.stop(); t.next.video.remove(); }  // (a swap still waiting: replaced)
  const player = new WhepPlayer(video, name, {
    rendition: rung, screen: "wall", onAuth: askForToken,
    onUpdate: (st, th) => {
      if (player.stopped) return;  // (its interval outlives it)
      if (t.player !== player) {  // the next rung: shown once it has a picture
        if (st.frames > 0) swap(t, player, video);
        return;
      }
      // The age of the picture in the tile: while live its latency; frozen or lost, the
      // time since the last live picture (amber, then red) — never the last good figure.
      const age = el.querySelector(".age");
      const live = st.picture === "live" || st.picture === "waiting";
      age.textContent = st.age === null ? "age —"
        : live ? `age ${formatAge(st.age)}${st.kind === "glass-to-glass" ? "" : "*"}`
          : `${st.picture === "signal lost" ? "LOST" : "FROZEN"} · ${formatAge(st.age)}`;
      age.title = live ? st.kind || "" : "no live picture: the time since the last one";
      age.className = `age lvl-${levelOf(st.age, th)}`;
      t.th = th;
      showHealth(t);  // (the footer and border in step with the picture, frame by frame)
    },
  });
  player.onMarkers = (msg) => markers.apply(msg);
  player.start();
  if (first) { t.player = player; t.playing = rung; } else t.next = { player, video, rung };
}

// The rung a tile's size asks for. Near a rung's edge (within 15 %) a tile keeps the one it has:
// the header growing a line moves every tile by a few pixels, which must not flip sessions.
function wanted(t) {
  const forced = params.get("rendition");
  if (forced) return forced;
  const px = t.el.clientHeight * (devicePixelRatio || 1);
  const r = rungFor(t.doc.renditions, px);
  if (!t.rung) return r;
  return rungFor(t.doc.renditions, px / 1.15) === rungFor(t.doc.renditions, px * 1.15) ? r : t.rung;
}

function swap(t, player, video) {
  const old = t.player, oldVideo = t.video;
  t.playing = t.next.rung;
  t.player = player; t.video = video; t.next = null;
  video.classList.remove("next");
  oldVideo.remove();
  old.stop();
  showHealth(t);
}

// All drones on one map: each at the position of the frame its tile shows.
let dmap = null;
function mapTick() {
  for (const [name, t] of tiles) {
    if (!t.player) continue;
    const s = t.player.telemetryShown() || t.doc.telemetry;
    if (!s || s.lat === undefined) continue;
    if (!dmap) {
      document.getElementById("maptile").hidden = false;
      layout();
      dmap = new DroneMap(document.getElementById("map"), { ...(mapCfg || {}), lat: s.lat, lon: s.lon });
      window.__map = dmap;
      dmap.setMarkers(markers.list());
    }
    const stale = t.player.telemetry.length ? t.player.telemetryIsStale : Boolean(t.doc.telemetry && t.doc.telemetry.stale);
    dmap.update(name, s, stale);
  }
  if (dmap) for (const name of dmap.drones.keys()) if (!tiles.has(name)) dmap.remove(name);
}
setInterval(mapTick, 250);
let mapCfg = null;

// 1 to 9 feeds and the map fill the screen. Candidates: the map as a column on the right or
// a band at the bottom (a quarter to a half of the screen), or no map; in what is left the
// feeds take the column count that gives the largest 16:9 tiles. The candidate that covers
// most of the screen wins (the map at least 15 % of it). Tiles are placed absolutely.
const GAP = 6;
function bestGrid(n, w, h) {
  let best = { w: 0, h: 0, cols: 1, rows: 1 };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const tw = Math.min((w - GAP * (cols - 1)) / cols, ((h - GAP * (rows - 1)) / rows) * 16 / 9);
    if (tw > best.w) best = { w: tw, h: tw * 9 / 16, cols, rows };
  }
  return best;
}
function chooseLayout(n, W, H, mapOn) {
  const cands = [];
  if (!mapOn) cands.push({ feeds: [0, 0, W, H], map: null });
  else {
    for (const f of [0.25, 0.33, 0.4, 0.5]) {
      const mw = Math.round(W * f), mh = Math.round(H * f);
      cands.push({ feeds: [0, 0, W - mw - GAP, H], map: [W - mw, 0, mw, H] });
      cands.push({ feeds: [0, 0, W, H - mh - GAP], map: [0, H - mh, W, mh] });
    }
  }
  let best = null;
  for (const c of cands) {
    const g = bestGrid(n, c.feeds[2], c.feeds[3]);
    const mapArea = c.map ? c.map[2] * c.map[3] : 0;
    if (c.map && (mapArea < 0.15 * W * H || Math.min(c.map[2], c.map[3]) < 200)) continue;
    const used = n * g.w * g.h + mapArea;
    if (!best || used > best.used + 1) best = { ...c, g, used };
  }
  return best;
}
function layout() {
  const maptile = document.getElementById("maptile");
  const mapOn = !maptile.hidden;
  const n = Math.max(1, tiles.size);
  const W = grid.clientWidth || innerWidth - 12;
  const H = Math.max(200, innerHeight - grid.getBoundingClientRect().top - 8);
  grid.style.height = `${H}px`;
  const L = chooseLayout(n, W, H, mapOn);
  const { g } = L;
  const [fx, fy, fw, fh] = L.feeds;
  const x0 = fx + (fw - (g.cols * g.w + (g.cols - 1) * GAP)) / 2;
  const y0 = fy + (fh - (g.rows * g.h + (g.rows - 1) * GAP)) / 2;
  let i = 0;
  for (const t of tiles.values()) {
    const c = i % g.cols, r = Math.floor(i / g.cols);
    Object.assign(t.el.style, { left: `${Math.round(x0 + c * (g.w + GAP))}px`, top: `${Math.round(y0 + r * (g.h + GAP))}px`,
                                width: `${Math.floor(g.w)}px`, height: `${Math.floor(g.h)}px` });
    i++;
  }
  if (L.map) {
    const [mx, my, mw, mh] = L.map;
    Object.assign(maptile.style, { left: `${mx}px`, top: `${my}px`, width: `${mw}px`, height: `${mh}px` });
  }
  if (dmap) dmap.invalidate();
}
addEventListener("resize", layout);

// Everything from outside (viewer reports, user agents, addresses, titles) becomes text
// nodes: nothing a viewer or publisher sends is ever parsed as HTML.
function node(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children.map((c) => (c instanceof Node ? c : String(c))));
  return e;
}

async function showStats(name) {
  const body = document.getElementById("dlg-body");
  const r = await authFetch(`/api/streams/${encodeURIComponent(name)}/stats`);
  if (!r.ok) {
    document.getElementById("dlg-title").textContent = `${name}: stats unavailable`;
    body.replaceChildren(node("p", {}, `${r.status}: ${(await r.text()).trim()}`));
    document.getElementById("dlg").showModal();
    return;
  }
  const doc = await r.json();
  document.getElementById("dlg-title").textContent = `${name}: ${doc.viewers.length} viewer(s)`;
  const f = (x, d = 0) => (x === undefined || x === null ? "—" : Number(x).toFixed(d));
  const head = node("tr", {}, ...["viewer", "who", "from", "rendition", "latency ms", "p95", "kind", "fps", "loss %", "rtt ms", "dropped", "browser"].map((h) => node("th", {}, h)));
  const rows = doc.viewers.map((v) => {
    const rep = v.report || {};
    return node("tr", {}, ...[v.id.slice(0, 8), v.who || "—", v.remote, v.rendition, f(rep.latency_ms), f(rep.latency_p95_ms),
      rep.latency_kind || "—", f(rep.fps), f(rep.loss_pct, 1), f(v.rtt_ms, 1), v.queue.dropped, rep.user_agent || "—"].map((c) => node("td", {}, c)));
  });
  const relay = node("p", {}, "relay-added: ");
  const entries = Object.entries(doc.relay_latency);
  if (!entries.length) relay.append("—");
  for (const [k, v] of entries) relay.append(node("div", {}, `${k}: p50 ${v.relay_ms.p50} / p95 ${v.relay_ms.p95} / p99 ${v.relay_ms.p99} ms`));
  body.replaceChildren(relay, node("table", {}, head, ...rows));
  document.getElementById("dlg").showModal();
}

async function refresh() {
  try {
    const r = await authFetch("/api/streams");
    if (!r.ok) throw new Error(`${r.status}`);
    const { streams, map, markers: all, markers_version: n, nodes, overload } = await r.json();
    const clustered = (nodes || []).length > 1;  // say which node each stream lives on
    mapCfg = map;
    if (all) markers.apply({ type: "markers", all, n });
    // Short of CPU, the relay says what it sheds: a lower frame rate is not the drone's link.
    document.getElementById("status").textContent = overload && overload.overloaded
      ? `relay overloaded since ${new Date(overload.since * 1000).toLocaleTimeString()}: ${overload.summary || overload.shed.join(", ")}` : "";
    document.getElementById("empty").hidden = streams.length > 0;
    const names = new Set(streams.map((s) => s.name));
    for (const s of streams) {
      const t = tiles.get(s.name) || tiles.set(s.name, tile(s)).get(s.name);
      t.doc = s;
      t.overload = overload;
      t.clustered = clustered;
      const tel = s.telemetry;
      const teleEl = t.el.querySelector(".tele");
      teleEl.textContent = !tel ? "" : tel.stale
        ? `TELEMETRY STALE ${tel.age_s !== null ? `${Math.round(tel.age_s)} s` : ""}`
        : `${tel.lat !== undefined ? `${tel.lat.toFixed(5)}, ${tel.lon.toFixed(5)}` : "—"} · ${tel.rel_alt !== undefined ? `${Math.round(tel.rel_alt)} m` : "alt —"} · ${tel.battery !== undefined ? `bat ${Math.round(tel.battery)} %` : "bat —"}`;
      teleEl.classList.toggle("stale", Boolean(tel && tel.stale));
      teleEl.hidden = !tel;
    }
    for (const [name, t] of tiles) {
      if (names.has(name)) continue;
      if (t.player) t.player.stop();
      if (t.next) t.next.player.stop();
      t.el.remove(); tiles.delete(name);
    }
    layout();
    for (const t of tiles.values()) { play(t); showHealth(t); }
    summary();
  } catch (e) {
    document.getElementById("status").textContent = `relay unreachable (${e.message}); retrying`;
  }
}
// A tile's border and footer: live, degraded or lost as its picture shows (each frame), the
// list's state (every 2 s) only where the picture does not tell yet — a footer once read
// "SIGNAL LOST 6 s ago" over a live picture, and "2 s" while the slate in the picture said 4 s.
// Degraded: a live picture that is old (amber or red), frozen, or at well under the drone's
// frame rate (a weak link, or the relay short of CPU cutting the wall first) — said why.
export function tileState(s, st, th) {
  if (st.picture === "signal lost") return { state: "lost" };
  if (st.picture === "frozen" && s.state === "live") return { state: "degraded", why: "FROZEN" };
  if (st.picture !== "live") return { state: s.state };
  const level = th ? levelOf(st.age, th) : "unknown";
  if (level === "red" || level === "yellow") return { state: "degraded", why: `OLD PICTURE ${formatAge(st.age)}` };
  if (s.fps >= 5 && st.fps > 0 && st.fps < s.fps * 0.6) return { state: "degraded", why: `${st.fps.toFixed(0)} of ${s.fps.toFixed(0)} fps` };
  return { state: "live" };
}
window.__tileState = tileState;

function showHealth(t) {
  const s = t.doc, st = t.player.stats;
  const { state, why } = tileState(s, st, t.th);
  const others = Math.max(0, s.viewers - 1);  // this wall is one of the viewers
  const lostFor = st.picture === "signal lost" && st.age !== null ? formatAge(st.age)
    : `${Math.round(Date.now() / 1000 - (s.last_frame_at || s.state_since))} s`;
  const shed = t.overload && t.overload.overloaded ? " (relay short of CPU)" : "";
  const health = s.problem ? `NO PICTURE: ${s.problem}`  // an unsupported codec: said, not silent
    : state === "live"
    ? `live · ${s.fps.toFixed(0)} fps · ${others ? `${others} other viewer${others > 1 ? "s" : ""}` : "no other viewers"}`
    : state === "degraded" ? `DEGRADED: ${why}${shed}`
    : state === "lost" ? `SIGNAL LOST ${lostFor} ago`
    : "waiting for drone";
  const rec = s.record || {};
  const recText = !rec.enabled ? "" : rec.paused ? " · REC PAUSED (disk)" : rec.recording ? " · ● REC" : " · rec idle";
  const text = health + recText + (t.clustered && s.node ? ` · node ${s.node}` : "");
  const foot = t.el.querySelector(".health");
  if (foot.textContent !== text) foot.textContent = text;
  t.state = state;
  t.el.className = `tile ${state}`;
  t.el.classList.toggle("rec-paused", Boolean(rec.paused));
}
// One glance: how many feeds are live, degraded, lost, in the header.
function summary() {
  const n = { live: 0, degraded: 0, lost: 0, waiting: 0 };
  for (const t of tiles.values()) if (t.state in n) n[t.state]++;
  const parts = [];
  for (const k of ["live", "degraded", "lost", "waiting"]) {
    if (!n[k]) continue;
    const b = node("b", { class: `count ${k}` }, `${n[k]} ${k}`);
    parts.push(b);
  }
  document.getElementById("counts").replaceChildren(...parts);
}
setInterval(summary, 1000);
refresh();
setInterval(refresh, 2000);
