import { WhepPlayer, levelOf } from "./whep.js";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const headers = token ? { Authorization: `Bearer ${token}` } : {};
const grid = document.getElementById("grid");
const tiles = new Map();  // name -> {el, player, doc}
window.__wall = tiles;

function tile(doc) {
  const el = document.createElement("div");
  el.className = "tile"; el.dataset.name = doc.name;
  el.innerHTML = `<video autoplay muted playsinline></video><div class="label"></div><div class="age lvl-unknown">—</div><div class="health"></div><button>stats</button>`;
  el.querySelector(".label").textContent = doc.title || doc.name;
  el.querySelector("button").onclick = () => showStats(doc.name);
  const rendition = params.get("rendition") || doc.renditions[doc.renditions.length - 1].name;
  const player = new WhepPlayer(el.querySelector("video"), doc.name, {
    token, rendition,
    onUpdate: (st, th) => {
      const age = el.querySelector(".age");
      age.textContent = st.latency === null ? "age —" : `age ${Math.round(st.latency)} ms${st.kind === "glass-to-glass" ? "" : "*"}`;
      age.title = st.kind || "";
      age.className = `age lvl-${levelOf(st.latency, th)}`;
    },
  });
  player.start();
  grid.append(el);
  return { el, player, doc };
}

async function showStats(name) {
  const r = await fetch(`/api/streams/${encodeURIComponent(name)}/stats`, { headers });
  const doc = await r.json();
  document.getElementById("dlg-title").textContent = `${name}: ${doc.viewers.length} viewer(s)`;
  const rows = doc.viewers.map((v) => {
    const rep = v.report || {};
    const f = (x, d = 0) => (x === undefined || x === null ? "—" : Number(x).toFixed(d));
    return `<tr><td>${v.id.slice(0, 8)} ${v.remote}</td><td>${v.rendition}</td><td>${f(rep.latency_ms)}</td><td>${f(rep.latency_p95_ms)}</td><td>${rep.latency_kind || "—"}</td><td>${f(rep.fps)}</td><td>${f(rep.loss_pct, 1)}</td><td>${f(v.rtt_ms, 1)}</td><td>${v.queue.dropped}</td></tr>`;
  }).join("");
  const relay = Object.entries(doc.relay_latency).map(([k, v]) => `${k}: p50 ${v.relay_ms.p50} / p95 ${v.relay_ms.p95} / p99 ${v.relay_ms.p99} ms`).join("<br>");
  document.getElementById("dlg-body").innerHTML = `<p>relay-added: ${relay || "—"}</p><table><tr><th>viewer</th><th>rendition</th><th>latency ms</th><th>p95</th><th>kind</th><th>fps</th><th>loss %</th><th>rtt ms</th><th>dropped</th></tr>${rows}</table>`;
  document.getElementById("dlg").showModal();
}

async function refresh() {
  try {
    const r = await fetch("/api/streams", { headers });
    if (!r.ok) throw new Error(`${r.status}`);
    const { streams } = await r.json();
    document.getElementById("status").textContent = "";
    document.getElementById("empty").hidden = streams.length > 0;
    const names = new Set(streams.map((s) => s.name));
    for (const s of streams) {
      const t = tiles.get(s.name) || tiles.set(s.name, tile(s)).get(s.name);
      t.doc = s;
      t.el.className = `tile ${s.state}`;
      const others = Math.max(0, s.viewers - 1);  // this wall is one of the viewers
      const health = s.state === "live"
        ? `live · ${s.fps.toFixed(0)} fps · ${others ? `${others} other viewer${others > 1 ? "s" : ""}` : "no other viewers"}`
        : s.state === "lost" ? `SIGNAL LOST ${Math.round(Date.now() / 1000 - s.state_since)} s ago`
        : "waiting for drone";
      t.el.querySelector(".health").textContent = health;
    }
    for (const [name, t] of tiles) if (!names.has(name)) { t.player.stop(); t.el.remove(); tiles.delete(name); }
    const n = Math.max(1, tiles.size);
    grid.style.setProperty("--cols", String(Math.ceil(Math.sqrt(n))));
  } catch (e) {
    document.getElementById("status").textContent = `relay unreachable (${e.message}); retrying`;
  }
}
refresh();
setInterval(refresh, 2000);
