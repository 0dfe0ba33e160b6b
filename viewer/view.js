import { WhepPlayer, levelOf } from "./whep.js";
import { askForToken, authFetch } from "./auth.js";
import { Replay } from "./replay.js";

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
    else { b.textContent = s === "retrying" ? `Reconnecting… ${detail}` : "Connecting…"; b.classList.add("show"); }
  },
  onUpdate: (st, th) => {
    const lvl = levelOf(st.p95 ?? st.latency, th);
    const lat = $("lat");
    lat.textContent = st.latency === null ? "— ms" : `${Math.round(st.latency)} ms`;
    lat.className = `big lvl-${levelOf(st.latency, th)}`;
    $("kind").textContent = st.kind ? (st.kind === "glass-to-glass" ? "glass-to-glass (drone capture time)" : "relay → screen (no capture time)") : "latency unknown";
    $("kind").className = `lvl-${lvl}`;
    $("p95").textContent = st.p95 === null ? "—" : `${Math.round(st.p95)} ms`;
    $("fps").textContent = st.fps.toFixed(0);
    $("kbps").textContent = st.kbps.toFixed(0);
    $("loss").textContent = st.lossPct.toFixed(1);
    $("rtt").textContent = st.rtt === null ? "—" : st.rtt.toFixed(1);
    $("codec").textContent = st.codec || "";
    $("rend").textContent = st.rendition ? `${st.rendition}${st.auto ? " (auto)" : ""} · ${st.height || "?"}p` : "";
    $("why").textContent = st.renditionReason || "";
    $("freezes").textContent = String(st.freezes);
  },
});
window.__player = player;  // for tests and the curious
player.start();

authFetch(`/api/streams/${encodeURIComponent(stream)}`)
  .then((r) => (r.ok ? r.json() : null))
  .then((doc) => {
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
