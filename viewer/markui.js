// The view page's markers: drawn in the picture and on the map; placed, moved, relabelled
// and removed by whoever may (the relay says so in /api/markers and decides each request).
// A click on the picture sends the point of the picture and the capture time of the frame
// on screen: the relay ties it to the ground with that frame's telemetry.
import { authFetch } from "./auth.js";
import { KINDS, MarkerSet, PictureMarks, fillLegend, setKindNames } from "./markers.js";
import { pictureUV } from "./geo.js";

const $ = (id) => document.getElementById(id);

function fillKinds(sel) {
  const was = sel.value;
  sel.replaceChildren();
  for (const [k, v] of Object.entries(KINDS)) {
    const o = document.createElement("option");
    o.value = k; o.textContent = v.name;
    sel.append(o);
  }
  if (was) sel.value = was;
}

export class MarkUi {
  constructor(stream, player, replay, mapOf) {
    this.stream = stream;
    this.player = player;
    this.replay = replay;
    this.mapOf = mapOf;             // () => the DroneMap, or null while there is none
    this.set = new MarkerSet();
    this.mayMark = false;
    this.pending = null;            // where the next marker goes: {u, v, t} or {lat, lon}
    this.moving = null;             // the id of a marker being moved
    this.picked = null;
    this.replayed = null;           // the markers as at the replayed moment
    this._replayAt = 0;
    this.marks = new PictureMarks($("video"), $("marklayer"), () => this._sample(),
                                  { onPick: (id) => this.pick(id), videoOf: () => this._video() });
    this.marks.markers = () => (this.replay && this.replay.playing ? this.replayed || [] : this.set.list());
    this.set.listeners.push(() => this._changed());
    fillKinds($("mark-kind")); fillKinds($("mi-kind-sel"));
    $("mark-place").onclick = () => this.place();
    $("mark-label").addEventListener("keydown", (e) => { if (e.key === "Enter") this.place(); });
    $("mi-close").onclick = () => { $("markinfo").hidden = true; this.picked = null; };
    $("mi-save").onclick = () => this.save();
    $("mi-remove").onclick = () => this.removePicked();
    $("mi-move").onclick = () => { this.moving = this.picked; $("markinfo").hidden = true; this.toast("tap the new place on the picture or the map"); };
    $("markhint").onclick = () => this.toast("tap the picture or the map where the marker goes");
    window.__marks = this;
  }

  async load() {
    const r = await authFetch("/api/markers").catch(() => null);
    if (!r || !r.ok) return;
    const doc = await r.json();
    this.mayMark = Boolean(doc.may_mark);
    $("markhint").hidden = !this.mayMark;
    setKindNames(doc.lang, doc.names);  // (the brigade's words, in its language)
    fillKinds($("mark-kind")); fillKinds($("mi-kind-sel"));
    this.set.apply({ type: "markers", all: doc.markers, n: doc.version });
    setInterval(() => this._followReplay(), 500);
  }

  _video() { return this.replay && this.replay.playing ? $("replay") : $("video"); }

  _sample() {
    if (this.replay && this.replay.playing) return this.replay.telemetryAt();
    return this.player.telemetryShown();
  }

  _changed() {
    const m = this.mapOf();
    if (m) m.setMarkers(this.marks.markers(), (id) => this.pick(id));
    this.marks.draw();
    if (this.picked && !this.set.byId.has(this.picked)) $("markinfo").hidden = true;
    // The legend: the kinds on screen, or every kind for whoever places them.
    const shown = this.marks.markers();
    const kinds = new Set(shown.map((x) => x.kind));
    const key = this.mayMark ? "all" : [...kinds].sort().join(",");
    if (key !== this._legendKey) { this._legendKey = key; fillLegend($("legend"), this.mayMark ? null : kinds); }
  }

  // Replay: the markers as they were at the replayed moment (asked again each second or so).
  async _followReplay() {
    if (!this.replay || !this.replay.playing) {
      if (this.replayed) { this.replayed = null; this._changed(); }
      return;
    }
    const at = this.replay.clipStart + $("replay").currentTime * 1000;
    if (this.replayed && Math.abs(at - this._replayAt) < 1000) return;
    this._replayAt = at;
    const r = await authFetch(`/api/markers?at=${(at / 1000).toFixed(3)}`).catch(() => null);
    if (r && r.ok) { this.replayed = (await r.json()).markers; this._changed(); }
  }

  // A click on the picture at (x, y) px of the video box: true when it was for markers.
  pictureClick(x, y, box) {
    const v = this._video();
    const uv = pictureUV(x, y, box.width, box.height, v.videoWidth, v.videoHeight);
    const s = this._sample();
    if (!uv) return false;
    const where = { stream: this.stream, u: +uv[0].toFixed(5), v: +uv[1].toFixed(5), t: s ? s.t : undefined };
    if (this.moving) { this._move(where); return true; }
    this.pending = s ? where : null;
    $("markform").hidden = !(this.mayMark && s);
    return false;
  }

  mapClick(lat, lon) {
    const where = { lat: +lat.toFixed(7), lon: +lon.toFixed(7) };
    if (this.moving) { this._move(where); return true; }
    this.pending = where;
    $("markform").hidden = !this.mayMark;
    return false;
  }

  async _send(method, path, body) {
    const r = await authFetch(path, { method, headers: { "Content-Type": "application/json" },
                                      body: body ? JSON.stringify(body) : undefined });
    if (!r.ok) { this.toast(`marker: ${(await r.text()).trim()}`); return null; }
    return r.json();
  }

  async place() {
    if (!this.pending) return;
    const body = { kind: $("mark-kind").value, label: $("mark-label").value.trim(), ...this.pending };
    const m = await this._send("POST", "/api/markers", body);
    if (m) {
      this.set.apply({ type: "marker", op: "add", m, n: m.n });  // (the channel brings it too)
      $("groundinfo").hidden = true; $("mark-label").value = "";
      const map = this.mapOf();
      if (map && map.clicked) { map.clicked.remove(); map.clicked = null; }
      this.toast(`marker placed: ${KINDS[m.kind].name}${m.label ? ` "${m.label}"` : ""}`);
    }
  }

  async _move(where) {
    const id = this.moving;
    this.moving = null;
    const m = await this._send("PATCH", `/api/markers/${encodeURIComponent(id)}`, where);
    if (m) { this.set.apply({ type: "marker", op: "change", m, n: m.n }); this.toast("marker moved"); }
  }

  pick(id) {
    const m = this.set.byId.get(id) || (this.replayed || []).find((x) => x.id === id);
    if (!m) return;
    this.picked = id;
    $("mi-kind").textContent = (KINDS[m.kind] || KINDS.note).name;
    $("mi-label").textContent = m.label || "";
    const when = new Date(m.placed * 1000).toLocaleTimeString();
    $("mi-by").textContent = `placed by ${m.by} at ${when}${m.changed_by ? `, changed by ${m.changed_by}` : ""}`;
    $("mi-edit").hidden = !this.mayMark || Boolean(this.replay && this.replay.playing);
    $("mi-kind-sel").value = m.kind; $("mi-label-in").value = m.label || "";
    $("groundinfo").hidden = true;
    $("markinfo").hidden = false;
  }

  async save() {
    const m = await this._send("PATCH", `/api/markers/${encodeURIComponent(this.picked)}`,
                               { kind: $("mi-kind-sel").value, label: $("mi-label-in").value.trim() });
    if (m) { this.set.apply({ type: "marker", op: "change", m, n: m.n }); $("markinfo").hidden = true; }
  }

  async removePicked() {
    const id = this.picked;
    const m = await this._send("DELETE", `/api/markers/${encodeURIComponent(id)}`);
    if (m) { this.set.apply({ type: "marker", op: "remove", m: { id }, n: m.n }); $("markinfo").hidden = true; }
  }

  toast(text) {
    const t = $("toast");
    t.textContent = text;
    t.classList.add("show");
    clearTimeout(this._toast);
    this._toast = setTimeout(() => t.classList.remove("show"), 3500);
  }
}
