// Instant replay beside the live picture: a timeline of the last minutes of the record,
// clips fetched from the relay (cut at keyframes, no re-encode) and played in a second
// <video>; the live picture keeps running in a corner and one click returns to it.
import { authFetch } from "./auth.js";

const CHUNK_S = 30;

export class Replay {
  constructor(stream, els) {
    this.stream = stream;
    this.els = els;           // { stage, live, replay, badge, bar, timeline, when, liveBtn, back30, saveclip, snapshot, toast }
    this.minutes = 10;
    this.playing = false;     // replaying (not live)
    this.startMs = null;      // wall clock of the replayed clip's start
    this.clipStart = null;    // what the relay says the clip holds
    this.log = [];            // for tests: what was replayed
    this._url = null;
    this._tick = null;
  }

  async init() {
    const e = this.els;
    const r = await authFetch(`/api/recordings?stream=${encodeURIComponent(this.stream)}`);
    if (r.ok) {
      const doc = await r.json();
      this.minutes = doc.replay_minutes || 10;
      this.offset = doc.server_time_ms - Date.now();  // relay clock - browser clock
      e.timeline.min = String(-Math.round(this.minutes * 60));
      e.bar.hidden = false;
    }
    // Snapshots need only the right to watch; the record (replay, clips) needs "playback".
    e.snapshot.hidden = r.status === 404;
    e.timeline.addEventListener("input", () => this._label());
    e.timeline.addEventListener("change", () => {
      const ago = -Number(e.timeline.value);
      if (ago < 2) this.goLive(); else this.replayFrom(this.now() - ago * 1000);
    });
    e.back30.onclick = () => this.replayFrom(this.now() - 30000);
    e.liveBtn.onclick = () => this.goLive();
    e.saveclip.onclick = () => this.saveClip();
    e.snapshot.onclick = () => this.snapshot();
    e.replay.addEventListener("ended", () => this._next());
    this._label();
    return r.ok;
  }

  now() { return Date.now() + (this.offset || 0); }

  _label() {
    const ago = -Number(this.els.timeline.value);
    this.els.when.textContent = ago < 2 ? "live" : `−${fmt(ago)}`;
  }

  toast(text) {
    const t = this.els.toast;
    t.textContent = text;
    t.classList.add("show");
    clearTimeout(this._toastTimer);
    this._toastTimer = setTimeout(() => t.classList.remove("show"), 3500);
  }

  async _clip(startMs, seconds, purpose) {
    const q = new URLSearchParams({ start: (startMs / 1000).toFixed(3), duration: String(seconds), purpose });
    const r = await authFetch(`/api/recordings/${encodeURIComponent(this.stream)}/clip.mp4?${q}`);
    if (!r.ok) throw new Error((await r.text()).trim() || `HTTP ${r.status}`);
    return { blob: await r.blob(), start: r.headers.get("X-Clip-Start"), end: r.headers.get("X-Clip-End"),
             name: /filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "")?.[1] || "clip.mp4" };
  }

  async replayFrom(startMs) {
    const e = this.els;
    const seconds = Math.max(1, Math.min(CHUNK_S, (this.now() - startMs) / 1000));
    let clip;
    try {
      clip = await this._clip(startMs, seconds, "replay");
    } catch (err) {
      this.toast(`Replay: ${err.message}`);
      return;
    }
    this.playing = true;
    this.startMs = startMs;
    this.clipStart = Date.parse(clip.start);
    this.clipEnd = Date.parse(clip.end);
    this._loadTrack(this.clipStart, this.clipEnd);
    this.log.push({ asked: startMs, start: clip.start, end: clip.end });
    if (this._url) URL.revokeObjectURL(this._url);
    this._url = URL.createObjectURL(clip.blob);
    e.replay.src = this._url;
    e.replay.hidden = false;
    e.badge.hidden = false;
    e.liveBtn.hidden = false;
    e.stage.classList.add("replaying");
    await e.replay.play().catch(() => {});
    clearInterval(this._tick);
    this._tick = setInterval(() => this._update(), 250);
  }

  // Where the drone was during the replayed clip (the record's telemetry track).
  async _loadTrack(fromMs, toMs) {
    this.track = [];
    try {
      const q = new URLSearchParams({ from: (fromMs / 1000).toFixed(3), to: (toMs / 1000).toFixed(3) });
      const r = await authFetch(`/api/recordings/${encodeURIComponent(this.stream)}/telemetry?${q}`);
      if (r.ok) this.track = (await r.json()).samples || [];
    } catch (_) { /* no track: the map keeps the live position, marked as such */ }
  }

  // The recorded sample of the replayed frame on screen, or null.
  telemetryAt() {
    if (!this.playing || !this.track || !this.track.length) return null;
    const at = this.clipStart + this.els.replay.currentTime * 1000;
    let found = null;
    for (const smp of this.track) { if (smp.t * 1000 <= at) found = smp; else break; }
    return found || this.track[0];
  }

  _update() {
    if (!this.playing) return;
    const at = this.clipStart + this.els.replay.currentTime * 1000;
    const ago = Math.max(0, (this.now() - at) / 1000);
    this.els.badge.textContent = `REPLAY ${new Date(at).toLocaleTimeString()} (−${fmt(ago)})`;
    this.els.timeline.value = String(-Math.round(ago));
    this._label();
  }

  _next() {
    // Go on with the next chunk until close to live, then return to live.
    if (!this.playing) return;
    if (this.now() - this.clipEnd < 3000) this.goLive();
    else this.replayFrom(this.clipEnd + 1);
  }

  goLive() {
    const e = this.els;
    this.playing = false;
    clearInterval(this._tick);
    e.replay.pause();
    e.replay.hidden = true;
    e.badge.hidden = true;
    e.liveBtn.hidden = true;
    e.stage.classList.remove("replaying");
    e.timeline.value = "0";
    this._label();
    if (this._url) { URL.revokeObjectURL(this._url); this._url = null; }
  }

  async saveClip() {
    const startMs = this.playing ? this.clipStart : this.now() - 30000;
    try {
      const clip = await this._clip(startMs, 30, "download");
      const a = document.createElement("a");
      a.href = URL.createObjectURL(clip.blob);
      a.download = clip.name;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      this.toast(`Clip saved: ${clip.name}`);
    } catch (err) {
      this.toast(`Clip: ${err.message}`);
    }
  }

  async snapshot() {
    const r = await authFetch(`/api/streams/${encodeURIComponent(this.stream)}/snapshot`, { method: "POST" });
    const text = await r.text();
    if (!r.ok) { this.toast(`Snapshot: ${text.trim()}`); return; }
    const doc = JSON.parse(text);
    this.toast(`Snapshot saved to the record (${new Date(doc.time).toLocaleTimeString()})`);
  }
}

function fmt(s) {
  s = Math.round(s);
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}
