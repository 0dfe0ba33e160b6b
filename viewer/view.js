import { WhepPlayer, formatAge, levelOf } from "./whep.js";
import { askForToken, authFetch } from "./auth.js";
import { Replay } from "./replay.js";
import { DroneMap } from "./map.js";
import { formatLatLon, groundPoint, pictureUV } from "./geo.js";
import { MarkUi } from "./markui.js";

const stream = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
$("name").textContent = stream;
document.title = `${stream} · drone feed`;

const player = new WhepPlayer($("video"), stream, {
  rendition: params.get("rendition"), onAuth: askForToken, verify: params.get("verify") === "1",
  onState: (s, detail) => {
    $("state").textContent = s;
    const b = $("banner");
    if (s === "playing") { b.classList.remove("show"); }
    else if (s === "ended") { b.textContent = `Session ended: ${detail}`; b.classList.add("show"); }
    else { b.textContent = s === "retrying" ? `Reconnecting… ${detail}` : "Connecting…"; b.classList.add("show"); }
  },
  onUpdate: (st, th) => {
    // The big figure is the age of the picture on screen: its measured latency while live;
    // frozen or lost, the time since the last live picture (amber, then red), never the
    // last good figure.
    const live = st.picture === "live";
    const lat = $("lat");
    lat.textContent = st.age === null ? "— ms" : formatAge(st.age);
    lat.className = `big lvl-${levelOf(st.age, th)}`;
    $("lat-mini").textContent = lat.textContent;
    $("lat-mini").className = `mini lvl-${levelOf(st.age, th)}`;
    if (st.state === "playing") $("state").textContent = live || st.picture === "waiting" ? "playing" : st.picture;
    $("kind").textContent = !live && st.picture !== "waiting"
      ? (st.picture === "signal lost" ? "SIGNAL LOST: no live picture since" : "FROZEN: no new picture since")
      : st.kind ? (st.kind === "glass-to-glass" ? "age since the drone's camera took it"
        : "age since it reached the relay (the drone sends no capture time)") : "age unknown";
    $("kind").className = `lvl-${live ? levelOf(st.p95 ?? st.latency, th) : levelOf(st.age, th)}`;
    $("p95").textContent = st.p95 === null ? "—" : `${Math.round(st.p95)} ms`;
    $("fps").textContent = st.fps.toFixed(0);
    $("kbps").textContent = st.kbps.toFixed(0);
    $("loss").textContent = st.lossPct.toFixed(1);
    $("rtt").textContent = st.rtt === null ? "—" : st.rtt.toFixed(1);
    $("codec").textContent = st.codec || "";
    $("rend").textContent = st.rendition ? `${st.rendition}${st.auto ? " (auto)" : ""} · ${st.height || "?"}p` : "";
    $("why").textContent = st.renditionReason || "";
    // In a commander's words (the details above are one tap away for the technician)
    $("plain").textContent = plainWords(st);
    $("freezes").textContent = String(st.freezes);
  },
});
// Why the picture is what it is, in a few words: a lower rung chosen for the link or for
// this device; nothing while it is the picture asked for.
function plainWords(st) {
  const why = st.renditionReason || "";
  if (!st.auto || !why.startsWith("down")) return "";
  return /decoding/.test(why) ? "picture reduced: this device cannot keep up"
    : "picture reduced: weak link";
}
window.__plainWords = plainWords;  // (tests)
window.__player = player;  // for tests and the curious
let markUi = null;
player.onMarkers = (msg) => { if (markUi) markUi.set.apply(msg); };

// ---- where the drone is: HUD lines, the map, a click on the picture -> ground point
let dmap = null;
const mapbox = $("mapbox");
function showTelemetry() {
  const replayed = window.__replay && window.__replay.playing ? window.__replay.telemetryAt() : null;
  const s = replayed || player.telemetryShown();
  if (!s) return;
  const stale = replayed ? false : player.telemetryIsStale;
  $("tele").hidden = false;
  $("tele").classList.toggle("stale", stale);
  $("tele-pos").textContent = s.lat !== undefined ? formatLatLon(s.lat, s.lon) : "position unknown";
  $("tele-alt").textContent = s.rel_alt !== undefined ? `${Math.round(s.rel_alt)} m AGL` : "alt —";
  $("tele-hdg").textContent = s.hdg !== undefined ? `${Math.round(s.hdg)}°` : "—";
  $("tele-bat").textContent = s.battery !== undefined ? `battery ${Math.round(s.battery)} %` : "battery —";
  const age = player.telemetryAge;
  $("tele").classList.toggle("replayed", Boolean(replayed));
  if (replayed) {
    $("tele-age").textContent = `REPLAY: where the drone was at ${new Date(s.t * 1000).toLocaleTimeString()}`;
  } else if (!stale && s.est_s) {
    // (DJI sends its position every 2 s: between, the relay carries it forward and says so)
    $("tele-age").textContent = `estimated: ${s.est_s.toFixed(1)} s past the drone's last report`;
  } else $("tele-age").textContent = stale
    ? `TELEMETRY STALE${age !== null && age !== undefined ? ` (${Math.round(age)} s)` : ""}: last known position`
    : `telemetry ${player.telemetryAge !== null ? `${player.telemetryAge.toFixed(1)} s` : ""} old · as of the frame on screen`;
  if (s.lat !== undefined) {
    if (!dmap) openMap();
    if (dmap) dmap.update(stream, s, stale, Boolean(replayed));
  }
}
// The map opens by itself where it has room beside or below the picture; on a phone held
// sideways it would take the picture's width, so there it waits for a tap on "Map".
const sideways = matchMedia("(max-height: 500px) and (min-aspect-ratio: 4/3)");
function openMap(cfg) {
  if (dmap || !window.L) return;
  const show = !sideways.matches;
  mapbox.hidden = !show;
  document.body.classList.toggle("with-map", show);
  dmap = new DroneMap($("map"), cfg || mapCfg || {});
  window.__map = dmap;
  dmap.onGroundClick((lat, lon) => {
    if (markUi && markUi.mapClick(lat, lon)) return;
    showGround([lat, lon], null, "");
  });
  if (markUi) markUi._changed();
  $("maptoggle").hidden = false;
  if (track.length) dmap.setTrack(stream, track);
}
let mapCfg = null, track = [];
authFetch(`/api/streams/${encodeURIComponent(stream)}/telemetry`)
  .then((r) => (r.ok ? r.json() : null))
  .then((doc) => {
    if (!doc) return;
    mapCfg = doc.map; track = doc.track || [];
    if (doc.state && doc.state.lat !== undefined) openMap({ ...doc.map, lat: doc.state.lat, lon: doc.state.lon });
  }).catch(() => {});
$("maptoggle").onclick = () => {
  const hide = !mapbox.hidden;
  mapbox.hidden = hide;
  document.body.classList.toggle("with-map", !hide);
  $("maptoggle").setAttribute("aria-pressed", String(!hide));
  if (!hide && dmap) dmap.invalidate();
};
// One tap: the picture alone, on the whole screen (the browser's full screen where it allows,
// turned sideways on a phone); one tap back brings the HUD, the map and the controls.
function setFull(on) {
  document.body.classList.toggle("full", on);
  $("fullscreen").setAttribute("aria-pressed", String(on));
  $("fullscreen").title = on ? "back to the map and the controls" : "the picture alone, full screen (tap again to come back)";
  hudFold(!on && !narrow.matches);
  if (dmap) setTimeout(() => dmap.invalidate(), 50);
}
$("fullscreen").onclick = async () => {
  const on = !document.body.classList.contains("full");
  setFull(on);
  try {
    if (on && !document.fullscreenElement && document.documentElement.requestFullscreen) {
      await document.documentElement.requestFullscreen({ navigationUI: "hide" });
      if (screen.orientation && screen.orientation.lock && innerHeight > innerWidth) {
        await screen.orientation.lock("landscape").catch(() => {});
      }
    } else if (!on && document.fullscreenElement) await document.exitFullscreen();
  } catch (_) { /* refused (no gesture, an iframe): the page's own full view still holds */ }
};
document.addEventListener("fullscreenchange", () => {
  if (!document.fullscreenElement && document.body.classList.contains("full")) setFull(false);
});
setInterval(showTelemetry, 200);  // the HUD and the map follow the frame on screen

function onPictureClick(ev) {
  const v = ev.currentTarget, r = v.getBoundingClientRect();
  if (markUi && markUi.pictureClick(ev.clientX - r.left, ev.clientY - r.top, r)) return;
  const uv = pictureUV(ev.clientX - r.left, ev.clientY - r.top, r.width, r.height, v.videoWidth, v.videoHeight);
  const s = markUi ? markUi._sample() : player.telemetryShown();
  const p = uv && s ? groundPoint(s, uv[0], uv[1]) : null;
  showGround(p, s, s ? "not on the ground (above the horizon or no field of view)" : "no telemetry: place a marker on the map");
}
$("video").addEventListener("click", onPictureClick);
$("replay").addEventListener("click", onPictureClick);

// The ground point of a click (picture or map): coordinates to copy or send, and the form
// that places a marker there (for those who may).
function showGround(p, s, why) {
  const box = $("groundinfo");
  $("markinfo").hidden = true;
  if (!p) {
    $("ground-text").textContent = why;
    $("ground-geo").hidden = true; $("ground-copy").hidden = true; $("ground-send").hidden = true;
    $("markform").hidden = true;
  } else {
    const text = `${p[0].toFixed(6)}, ${p[1].toFixed(6)}`;
    $("ground-text").textContent = `${formatLatLon(p[0], p[1])}${s && player.telemetryIsStale ? " (telemetry stale!)" : ""}`;
    $("ground-text").dataset.value = text;
    $("ground-geo").href = `geo:${p[0].toFixed(6)},${p[1].toFixed(6)}`;
    $("ground-geo").hidden = false; $("ground-copy").hidden = false; $("ground-send").hidden = !navigator.share;
    if (dmap) dmap.mark(p[0], p[1]);
    window.__ground = p;
  }
  box.hidden = false;
}
$("ground-copy").onclick = async () => {
  const text = $("ground-text").dataset.value || "";
  try { await navigator.clipboard.writeText(text); $("ground-copy").textContent = "Copied"; }
  catch (_) { getSelection().selectAllChildren($("ground-text")); $("ground-copy").textContent = "Select + copy"; }
  setTimeout(() => { $("ground-copy").textContent = "Copy"; }, 1500);
};
$("ground-close").onclick = () => { $("groundinfo").hidden = true; };
// Send: the phone's share sheet (messenger, mail, radio dispatch app) where there is one.
if (navigator.share) {
  $("ground-send").hidden = false;
  $("ground-send").onclick = () => {
    const v = $("ground-text").dataset.value || "";
    navigator.share({ title: `${stream}: ground point`, text: `${stream}: ${v}`, url: `geo:${v.replace(" ", "")}` }).catch(() => {});
  };
}
player.start();

// A stream forwarded by another relay (the command vehicle's): the path it took and each
// hop's delay, as text ("drone → vehicle 12 ms → centre 35 ms").
function showPath(doc) {
  const el = $("path");
  const hops = (doc && doc.hops) || [];
  if (!doc || !doc.path || doc.path.length < 2) { el.hidden = true; return; }
  const parts = [doc.path[0]];
  for (let i = 1; i < doc.path.length; i++) {
    const hop = hops[i - 1];
    parts.push(`${doc.path[i]}${hop && hop.ms !== null && hop.ms !== undefined ? ` ${Math.round(hop.ms)} ms` : ""}`);
  }
  el.textContent = `path: ${parts.join(" → ")}`;
  el.hidden = false;
}
// The relay short of CPU: it says what it sheds (frame rate, overlay), in the HUD's top lines
// (folded or not), so a lower frame rate is never mistaken for the link.
function showOverload(doc) {
  const el = $("overload"), o = doc && doc.overload;
  el.hidden = !(o && o.overloaded);
  if (!el.hidden) el.textContent = `relay overloaded: ${o.summary || o.shed.join(", ") || "shedding work"}`;
}
function showDoc(doc) { showPath(doc); showOverload(doc); }
setInterval(() => {
  authFetch(`/api/streams/${encodeURIComponent(stream)}`)
    .then((r) => (r.ok ? r.json() : null)).then(showDoc).catch(() => {});
}, 3000);

authFetch(`/api/streams/${encodeURIComponent(stream)}`)
  .then((r) => (r.ok ? r.json() : null))
  .then((doc) => {
    showDoc(doc);
    const sel = $("rendition");
    if (!doc) { sel.hidden = true; return; }
    const chosen = params.get("rendition") || "auto";
    const auto = document.createElement("option");
    auto.value = "auto"; auto.textContent = "auto (fits the link)";
    sel.append(auto);
    for (const r of doc.renditions) {
      const o = document.createElement("option");
      o.value = r.name;
      o.textContent = r.passthrough ? `${r.name} (drone's own)` : `${r.name} (${r.height}p, ${r.bitrate_kbps} kbit/s)`;
      sel.append(o);
    }
    sel.value = chosen;
    sel.onchange = () => {
      if (sel.value === "auto") params.delete("rendition"); else params.set("rendition", sel.value);
      location.search = params.toString();
    };
  });

const replay = new Replay(stream, {
  stage: $("stage"), live: $("video"), replay: $("replay"), badge: $("replay-badge"), bar: $("replaybar"),
  timeline: $("timeline"), when: $("when"), liveBtn: $("live"), back30: $("back30"),
  saveclip: $("saveclip"), snapshot: $("snapshot"), toast: $("toast"),
});
window.__replay = replay;
replay.init();
markUi = new MarkUi(stream, player, replay, () => dmap);
markUi.load();

// The HUD: one line on a phone (tap ▾ for the rest), everything on a wider screen.
const narrow = matchMedia("(max-width: 600px), (max-height: 500px)");
function hudFold(open) {
  $("hud").classList.toggle("folded", !open);
  $("hudtoggle").setAttribute("aria-expanded", String(open));
  $("hudtoggle").textContent = open ? "▴" : "▾";
}
hudFold(!narrow.matches);
narrow.addEventListener("change", () => hudFold(!narrow.matches && !document.body.classList.contains("full")));
addEventListener("resize", () => { if (dmap) dmap.invalidate(); });
$("hudtoggle").onclick = () => hudFold($("hud").classList.contains("folded"));

// A DJI drone (the relay is its DJI Cloud API platform): which aircraft and lens; for the
// control role, start and stop its picture and switch the lens. Replies in words.
async function djiPanel() {
  const r = await authFetch(`/api/dji/${encodeURIComponent(stream)}`).catch(() => null);
  if (!r || !r.ok) return;
  const a = await r.json();
  const show = (x) => {
    $("dji-what").textContent = `DJI ${x.name} · lens ${x.lens}${x.fov_known === false ? " (field of view unknown)" : ""}`
      + `${x.live && x.live.error ? ` · ${x.live.error}` : ""}`;
  };
  show(a);
  $("djibar").hidden = false;
  $("dji-controls").hidden = !a.may_control;
  for (const b of $("dji-controls").querySelectorAll("button")) {
    b.onclick = async () => {
      b.disabled = true;
      const body = { action: b.dataset.dji, ...(b.dataset.lens ? { lens: b.dataset.lens } : {}) };
      try {
        const resp = await authFetch(`/api/dji/${encodeURIComponent(stream)}`, {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
        const doc = (resp.headers.get("Content-Type") || "").includes("json") ? await resp.json() : null;
        replay.toast(doc ? `DJI: ${doc.message}` : `DJI: ${resp.status} ${(await resp.text()).trim()}`);
        if (doc && doc.aircraft) show(doc.aircraft);
      } finally { b.disabled = false; }
    };
  }
}
djiPanel();
