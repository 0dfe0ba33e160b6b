// The incident record per stream: what was recorded (time spans), the snapshots, and clips
// to download. Text from the relay is put into the page as text, never as HTML.
import { authFetch } from "./auth.js";
import { KINDS, setKindNames } from "./markers.js";

const root = document.getElementById("streams");
const status = document.getElementById("status");

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

const time = (ms) => new Date(ms).toLocaleString();
const mb = (b) => `${(b / 1e6).toFixed(1)} MB`;
const dur = (ms) => { const s = Math.round(ms / 1000); return `${Math.floor(s / 60)} min ${s % 60} s`; };

async function download(stream, startMs, seconds) {
  const q = new URLSearchParams({ start: (startMs / 1000).toFixed(3), duration: String(seconds) });
  const r = await authFetch(`/api/recordings/${encodeURIComponent(stream)}/clip.mp4?${q}`);
  if (!r.ok) { status.textContent = `clip: ${(await r.text()).trim()}`; return; }
  const name = /filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "")?.[1] || "clip.mp4";
  const a = el("a", { download: name });
  a.href = URL.createObjectURL(await r.blob());
  document.body.append(a);
  a.click();
  a.remove();
  status.textContent = `saved ${name}`;
}

async function thumb(img, stream, file) {
  const r = await authFetch(`/api/recordings/${encodeURIComponent(stream)}/snapshots/${encodeURIComponent(file)}`);
  if (r.ok) img.src = URL.createObjectURL(await r.blob());
}

function render(rec) {
  const box = el("section", { class: "record" });
  const st = rec.status || {};
  const state = st.paused ? `paused: ${st.paused}` : st.recording ? `recording (${st.from})` : "not recording";
  box.append(el("h2", {}, rec.stream, " ", el("small", { class: st.paused ? "lvl-red" : "lvl-green" }, state)));
  if (rec.vehicles && rec.vehicles.length) {
    // The vehicles' full-quality record, kept here as they signed it (checked on arrival).
    box.append(el("p", {}, `record from ${rec.vehicles.join(", ")}, verified against its key on arrival`));
  }
  const table = el("table", {}, el("tr", {}, el("th", {}, "from"), el("th", {}, "to"), el("th", {}, "length"),
                                   el("th", {}, "size"), el("th", {}, "")));
  // A source that flapped leaves spans of no length: nothing to watch or download, hidden.
  const spans = rec.spans.filter((sp) => sp.open || (sp.end_ms - sp.start_ms >= 1000 && sp.bytes > 0));
  for (const sp of spans) {
    const btn = el("button", {}, "download first 60 s");
    btn.onclick = () => download(rec.stream, sp.start_ms, Math.min(60, Math.max(1, (sp.end_ms - sp.start_ms) / 1000)));
    table.append(el("tr", {}, el("td", {}, time(sp.start_ms)), el("td", {}, sp.open ? "now (recording)" : time(sp.end_ms)),
                    el("td", {}, dur(sp.end_ms - sp.start_ms)), el("td", {}, sp.open && !sp.bytes ? "(being written)" : mb(sp.bytes)), el("td", {}, btn)));
  }
  const empty = rec.spans.length - spans.length;
  if (!spans.length) table.append(el("tr", {}, el("td", { colspan: "5" }, "nothing recorded")));
  if (empty) table.append(el("tr", {}, el("td", { colspan: "5", class: "muted" },
    `${empty} span${empty > 1 ? "s" : ""} under a second (the source came and went) not listed`)));
  box.append(table);
  // A clip of any span: start time (local) and length.
  const start = el("input", { type: "datetime-local", step: "1" });
  const length = el("input", { type: "number", min: "1", max: "600", value: "30", size: "4" });
  const go = el("button", {}, "download clip");
  go.onclick = () => { const t = Date.parse(start.value); if (!Number.isNaN(t)) download(rec.stream, t, Number(length.value)); };
  box.append(el("p", { class: "clipform" }, "clip from ", start, " for ", length, " s ", go));
  const snaps = el("div", { class: "snaps" });
  for (const s of rec.snapshots) {
    const img = el("img", { alt: `snapshot ${s.time}` });
    thumb(img, rec.stream, s.file);
    const a = el("a", { href: "#", title: "open full size" }, img, el("span", {}, time(s.time_ms)));
    a.onclick = (ev) => { ev.preventDefault(); if (img.src) window.open(img.src, "_blank"); };
    snaps.append(a);
  }
  if (rec.snapshots.length) box.append(el("h3", {}, `Snapshots (${rec.snapshots.length})`), snaps);
  return box;
}

// The incident's markers (as text), and their export for the brigade's GIS.
async function saveAs(path) {
  const r = await authFetch(path);
  if (!r.ok) { status.textContent = `${path}: ${(await r.text()).trim()}`; return; }
  const name = /filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "")?.[1] || "markers";
  const a = el("a", { download: name });
  a.href = URL.createObjectURL(await r.blob());
  document.body.append(a); a.click(); a.remove();
}
async function loadMarkers() {
  const r = await authFetch("/api/markers");
  if (!r.ok) return;
  const doc = await r.json();
  setKindNames(doc.lang, doc.names);
  document.getElementById("markers").hidden = false;
  document.getElementById("markers-note").textContent = doc.recorded
    ? "every change is a signed line of the record" : "not recorded (the record is off)";
  const table = document.getElementById("markers-table");
  table.replaceChildren(el("tr", {}, ...["kind", "label", "where", "placed by", "when", "on"].map((h) => el("th", {}, h))));
  for (const m of doc.markers) {
    table.append(el("tr", {}, el("td", {}, (KINDS[m.kind] || KINDS.note).name), el("td", {}, m.label || "—"),
                    el("td", {}, `${m.lat.toFixed(6)}, ${m.lon.toFixed(6)}`), el("td", {}, m.by),
                    el("td", {}, time(m.placed * 1000)), el("td", {}, m.stream || "map")));
  }
  if (!doc.markers.length) table.append(el("tr", {}, el("td", { colspan: "6" }, "no markers")));
}
document.getElementById("dl-geojson").onclick = () => saveAs("/api/markers.geojson");
document.getElementById("dl-kml").onclick = () => saveAs("/api/markers.kml");
loadMarkers();

async function load() {
  const r = await authFetch("/api/recordings");
  if (!r.ok) { status.textContent = (await r.text()).trim(); return; }
  const doc = await r.json();
  root.replaceChildren(...doc.recordings.map(render));
  if (!doc.recordings.length) root.append(el("p", { class: "empty" }, "Nothing recorded yet."));
}
load();
