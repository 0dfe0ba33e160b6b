// WHEP player: plays one stream, measures latency, reports to the relay, reconnects.
import { StampReader } from "./stamp.js";
import { authHeaders, iceServers } from "./auth.js";

export class ClockOffset {
  // NTP-style offset (relay - browser, ms), keeping the minimum-RTT sample of the last 16.
  constructor() { this.samples = []; }
  add(t0, t1, t2, t3) {
    const s = { offset: ((t1 - t0) + (t2 - t3)) / 2, rtt: Math.max(0, (t3 - t0) - (t2 - t1)) };
    this.samples.push(s);
    if (this.samples.length > 16) this.samples.shift();
    return s;
  }
  get best() { return this.samples.reduce((a, b) => (a && a.rtt <= b.rtt ? a : b), null); }
}

class Window {
  constructor(horizonMs = 30000) { this.h = horizonMs; this.v = []; }
  add(x) { const t = performance.now(); this.v.push([t, x]); while (this.v.length && this.v[0][0] < t - this.h) this.v.shift(); }
  pct(q) { if (!this.v.length) return null; const s = this.v.map((e) => e[1]).sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q / 100 * s.length) - 1))]; }
}

export class WhepPlayer {
  constructor(video, stream, opts = {}) {
    this.video = video;
    this.stream = stream;
    this.rendition = opts.rendition || null;
    // "wall": one tile of many (the relay cuts its frame rate first when short of CPU)
    this.screen = opts.screen || null;
    this.onUpdate = opts.onUpdate || (() => {});
    this.onState = opts.onState || (() => {});
    this.readStamps = opts.readStamps !== false;
    // Check the RTP-timestamp figures against the drone stamp read from the pixels, frame
    // by frame (tests and the curious: ?verify=1); otherwise pixels are read only where
    // nothing else gives a capture time.
    this.verify = Boolean(opts.verify);
    this.verifyLog = [];
    this.frameTimes = new Map();   // RTP timestamp -> [arrival ms, capture ms | null, slate] (relay clock)
    this.unmatched = [];           // presented frames whose times have not arrived yet
    this._pixelMisses = 0;
    this.relayOnly = Boolean(opts.relayOnly);  // force TURN (a test, or a firewall that needs it)
    this.onAuth = opts.onAuth || null;
    this.stats = { frames: 0, latency: null, p95: null, kind: null, fps: 0, kbps: 0, lossPct: 0,
                   packetsLost: 0, rtt: null, offset: null, state: "connecting", reconnects: 0,
                   stampsRead: 0, misread: 0, rtpMatched: 0, source: null, codec: null, width: 0, height: 0, heightAt: null, freezes: 0,
                   rendition: null, auto: false, renditionReason: "",
                   // What is on screen: "live", "frozen" (no new frame for a second) or
                   // "signal lost" (the relay's slate), and how old that picture is (ms):
                   // during a loss, the time since the last live picture, growing.
                   picture: "waiting", age: null };
    this._lastLiveAt = null;   // performance.now() of the last live frame presented
    this._lastSlateAt = null;  // ... of the last slate frame presented
    this._lastFrameAt = null;
    this._renditionN = 0;  // the last rendition change shown (they come on two channels)
    this._pendingRendition = null;  // a change announced, its first frame not yet presented
    this.thresholds = { green_ms: 250, yellow_ms: 600 };
    this.clock = new ClockOffset();
    this.window = new Window();
    this.stamps = new StampReader();
    this.stopped = false;
    this.backoff = 500;
    this._lastInbound = null;
    // Telemetry: samples tagged with their capture time (relay clock, s), oldest first.
    this.telemetry = [];
    this.telemetryStale = true;
    this.telemetryAge = null;
    this._telemetryAt = 0;
    this.shownCaptureMs = null;  // capture time of the frame on screen (relay clock)
    this.onTelemetry = opts.onTelemetry || (() => {});
    this.onMarkers = opts.onMarkers || (() => {});
  }

  // The telemetry of the frame on screen: the newest sample measured at or before its
  // capture; the newest sample where the capture time is unknown.
  telemetryShown() {
    const tl = this.telemetry;
    if (!tl.length) return null;
    const cap = this.shownCaptureMs;
    if (cap === null) return tl[tl.length - 1];
    for (let i = tl.length - 1; i >= 0; i--) if (tl[i].t * 1000 <= cap) return tl[i];
    return tl[0];
  }

  // Stale as the relay says, or when its telemetry messages stopped reaching this page.
  get telemetryIsStale() {
    return this.telemetryStale || performance.now() - this._telemetryAt > 3000;
  }

  headers(extra = {}) { return authHeaders(extra); }

  setState(s, detail = "") { this.stats.state = s; this.onState(s, detail); }

  async start() {
    this._endOnPageHide();
    this._frameLoop();
    // The age shown follows the picture on screen even while no stats come (a loss, a
    // reconnect): it never stays on the last good figure.
    setInterval(() => { this._picture(); this.onUpdate(this.stats, this.thresholds); }, 500);
    while (!this.stopped) {
      try {
        await this._connectOnce();
        this.backoff = 500;
        await this._untilDropped();
      } catch (e) {
        this.setState("retrying", String(e.message || e));
        if (e.status === 401 && this.onAuth) await this.onAuth(e.message);
      }
      await this._teardown();
      if (this.stopped) break;
      this.stats.reconnects++;
      await new Promise((r) => setTimeout(r, this.backoff));
      this.backoff = Math.min(this.backoff * 2, 8000);
    }
  }

  async _connectOnce() {
    this.setState("connecting");
    const endpoint = `/whep/${encodeURIComponent(this.stream)}`;
    this.iceServers = await iceServers(endpoint);  // STUN/TURN from the relay, before the offer
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, iceTransportPolicy: this.relayOnly ? "relay" : "all" });
    this.pc = pc;
    this._renditionN = 0; this._pendingRendition = null;  // a new session counts its changes anew
    pc.addTransceiver("video", { direction: "recvonly" });
    const ch = pc.createDataChannel("relay");
    this.channel = ch;
    ch.onmessage = (ev) => this._onMessage(ev.data);
    ch.onopen = () => this._pinger();
    // The relay times round trips on this one (every 0.1 s on "auto", faster while it
    // probes the link for a higher rendition): a queue on the link shows as a growing
    // round trip. Unordered and never retransmitted, so a lost message is just missing.
    const echo = pc.createDataChannel("echo", { ordered: false, maxRetransmits: 0 });
    echo.onmessage = (ev) => {
      if (typeof ev.data !== "string") return;
      if (ev.data.length <= 16) { if (echo.readyState === "open") echo.send(ev.data); return; }
      this._onMessage(ev.data);  // a copy of a rendition change, sent here too: never held up
    };
    pc.ontrack = (ev) => {
      const rx = ev.receiver;
      try { rx.jitterBufferTarget = 0; } catch (_) { /* older browsers */ }
      try { rx.playoutDelayHint = 0; } catch (_) { /* non-Chromium */ }
      this.receiver = rx;
      this.video.srcObject = new MediaStream([ev.track]);
      this.video.play().catch(() => {});
    };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      const t = setTimeout(resolve, 2000);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(t); resolve(); }
      });
    });
    const query = new URLSearchParams();
    if (this.rendition) query.set("rendition", this.rendition);
    if (this.screen) query.set("screen", this.screen);
    const q = query.toString() ? `?${query}` : "";
    const resp = await fetch(`${endpoint}${q}`, {
      method: "POST", body: pc.localDescription.sdp,
      headers: this.headers({ "Content-Type": "application/sdp" }),
    });
    if (resp.status !== 201) {
      const err = new Error(`relay answered ${resp.status}: ${(await resp.text()).trim()}`);
      err.status = resp.status;
      throw err;
    }
    // (resp.url: where a 307 of a cluster node sent the offer — the session lives there)
    this.location = new URL(resp.headers.get("Location"), resp.url || location.href).toString();
    await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
  }

  _untilDropped() {
    const pc = this.pc;
    return new Promise((resolve) => {
      let timer = null;
      const check = () => {
        const s = pc.connectionState;
        if (s === "connected") { this.setState("playing"); clearTimeout(timer); timer = null; }
        if (s === "failed" || s === "closed") resolve();
        if (s === "disconnected" && !timer) timer = setTimeout(resolve, 3000);
      };
      pc.addEventListener("connectionstatechange", check);
      this._dropped = resolve;
      check();
    });
  }

  async _teardown() {
    clearInterval(this._pingTimer); clearInterval(this._statsTimer);
    if (this.location) {
      fetch(this.location, { method: "DELETE", headers: this.headers() }).catch(() => {});
      this.location = null;
    }
    if (this.pc) { this.pc.close(); this.pc = null; }
  }

  stop() { this.stopped = true; if (this._dropped) this._dropped(); }

  // A closed tab or a reload ends the session at once (keepalive outlives the page), so the
  // relay stops sending into a link the next page needs.
  _endOnPageHide() {
    addEventListener("pagehide", () => {
      if (this.location) fetch(this.location, { method: "DELETE", headers: this.headers(), keepalive: true }).catch(() => {});
    });
  }

  _pinger() {
    let id = 0;
    const ping = () => {
      if (this.channel && this.channel.readyState === "open") {
        this.channel.send(JSON.stringify({ type: "ping", id: id++, t0: performance.timeOrigin + performance.now() }));
      }
    };
    for (let i = 0; i < 5; i++) setTimeout(ping, i * 150);
    this._pingTimer = setInterval(ping, 2000);
    this._statsTimer = setInterval(() => this._collect(), 1000);
  }

  _onMessage(data) {
    const t3 = performance.timeOrigin + performance.now();
    let msg;
    try { msg = JSON.parse(data); } catch (_) { return; }
    if (msg.type === "pong") {
      this.clock.add(msg.t0, msg.t1, msg.t2, t3);
      const b = this.clock.best;
      this.stats.offset = b.offset; this.stats.rtt = b.rtt;
    } else if (msg.type === "hello") {
      this.thresholds = msg.thresholds || this.thresholds;
      this.stats.rendition = msg.rendition; this.stats.auto = Boolean(msg.auto);
      this.stats.renditionReason = msg.reason || "";
    } else if (msg.type === "frames") {
      // Which arrival/capture time belongs to which RTP timestamp on this viewer's wire.
      for (const [rtp, arr, cap, slate] of msg.f || []) this.frameTimes.set(rtp, [arr, cap, slate === 1]);
      while (this.frameTimes.size > 600) this.frameTimes.delete(this.frameTimes.keys().next().value);
      const still = [];
      for (const p of this.unmatched) {
        const t = this.frameTimes.get(p.rtp);
        if (t) this._fromRtp(p.relayNow, t, p.px); else if (performance.now() - p.at < 2000) still.push(p);
      }
      this.unmatched = still;
    } else if (msg.type === "telemetry") {
      for (const smp of msg.s || []) {
        const tl = this.telemetry;
        if (tl.length && smp.t < tl[tl.length - 1].t) continue;
        tl.push(smp);
      }
      while (this.telemetry.length > 600) this.telemetry.shift();
      this.telemetryStale = Boolean(msg.stale); this.telemetryAge = msg.age;
      this._telemetryAt = performance.now();
      this.onTelemetry(this);
    } else if (msg.type === "markers" || msg.type === "marker") {
      this.onMarkers(msg);
    } else if (msg.type === "end") {
      // The relay ended this session for good (share link revoked or expired).
      this.stopped = true;
      this.setState("ended", msg.reason || "");
      if (this._dropped) this._dropped();
    } else if (msg.type === "rendition") {
      // The relay moved this viewer (auto): same track, from the next keyframe on. It comes
      // on both channels: the first copy counts. The label changes with the picture: at the
      // first frame presented after the old rung's last RTP timestamp.
      if (typeof msg.n === "number") {
        if (msg.n <= this._renditionN) return;
        this._renditionN = msg.n;
      }
      if (typeof msg.after_rtp === "number" && "requestVideoFrameCallback" in HTMLVideoElement.prototype) {
        this._pendingRendition = { msg, at: performance.now() };
      } else this._showRendition(msg);
    }
  }

  _showRendition(msg) {
    this._pendingRendition = null;
    this.stats.rendition = String(msg.name); this.stats.renditionReason = String(msg.reason || "");
    this.onUpdate(this.stats, this.thresholds);
  }

  _renditionDue(rtp, now) {
    const p = this._pendingRendition;
    if (!p) return;
    const ahead = rtp === undefined ? 0 : ((rtp - p.msg.after_rtp) >>> 0);
    // (RTP timestamps wrap at 2^32: "after" is less than half the circle ahead.) A picture
    // that never changes (a frozen link) gets its label within 3 s anyway.
    if ((ahead > 0 && ahead < 2 ** 31) || now - p.at > 3000) this._showRendition(p.msg);
  }

  _frameLoop() {
    const v = this.video;
    if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) return;
    const onFrame = (now, meta) => {
      this.stats.frames++;
      // A freeze: over 200 ms between presented frames while playing.
      if (this._lastFrameAt !== null && now - this._lastFrameAt > 200 && this.stats.state === "playing") this.stats.freezes++;
      this._lastFrameAt = now;
      // When the picture's size last changed (wall clock, ms): a rendition switch as seen.
      if (meta.height !== this.stats.height) this.stats.heightAt = performance.timeOrigin + now;
      this.stats.width = meta.width; this.stats.height = meta.height;
      this._renditionDue(meta.rtpTimestamp, now);  // (after the size: the HUD shows both)
      if (this.readStamps && this.stats.offset !== null) {
        const shownWall = performance.timeOrigin + (meta.expectedDisplayTime || now);
        const relayNow = shownWall + this.stats.offset;
        const rtp = meta.rtpTimestamp;
        if (rtp !== undefined) {
          const t = this.frameTimes.get(rtp);
          const px = this.verify ? this.stamps.read(v, meta.width, meta.height, "drone") : null;
          if (t) this._fromRtp(relayNow, t, px);
          else {
            this.unmatched.push({ rtp, relayNow, px, at: performance.now() });
            if (this.unmatched.length > 120) this.unmatched.shift();
          }
        } else {
          // No RTP timestamp from this browser: the painted stamps are the only way.
          const s = this.stamps.read(v, meta.width, meta.height, "drone");
          if (s) this._record(relayNow - s.captureMs, "glass-to-glass", "drone stamp", relayNow);
          else {
            const r = this.stamps.read(v, meta.width, meta.height, "relay");
            if (r) this._record(relayNow - r.captureMs, "relay-to-screen", "relay stamp", relayNow);
          }
        }
      }
      v.requestVideoFrameCallback(onFrame);
    };
    v.requestVideoFrameCallback(onFrame);
  }

  // A presented frame whose times the relay sent: capture time where the relay read the
  // drone's stamp at ingest; otherwise, where the picture carries one the relay could not
  // read (passthrough), the pixels; otherwise the relay's arrival time.
  _fromRtp(relayNow, [arr, cap, slate], px) {
    this.stats.rtpMatched++;
    if (slate) {  // the relay's "signal lost" card: it carries the last live picture's times
      this._lastSlateAt = performance.now();
      this.shownCaptureMs = cap ?? arr;
      return;
    }
    this._lastLiveAt = performance.now();
    if (cap !== null && cap !== undefined) {
      this._record(relayNow - cap, "glass-to-glass", "rtp", relayNow);
      if (this.verify) {
        this.verifyLog.push({ rtp: relayNow - cap, pixel: px ? relayNow - px.captureMs : null });
        if (this.verifyLog.length > 600) this.verifyLog.shift();
      }
      return;
    }
    if (this._pixelMisses < 30 || this.stats.frames % 150 === 0) {
      const s = px || this.stamps.read(this.video, this.stats.width, this.stats.height, "drone");
      // (captured after the relay received this frame: the canvas held the next frame)
      if (s && s.captureMs > arr) { this.stats.misread++; return; }
      if (s) { this._pixelMisses = 0; this._record(relayNow - s.captureMs, "glass-to-glass", "drone stamp", relayNow); return; }
      this._pixelMisses++;
    }
    this._record(relayNow - arr, "relay-to-screen", "rtp", relayNow);
  }

  _record(lat, kind, source, relayNow) {
    // A picture cannot be shown before it was captured: a figure below zero is a misread
    // (the canvas can already hold the next frame than the one whose callback this is, a
    // capture time one frame later) or a clock offset not yet known. It is counted, never
    // shown: the wall once read "age 0 ms" (the negative figure clamped) on a 13 ms feed.
    if (!(lat >= 0 && lat < 60000)) { this.stats.misread++; return; }
    this.shownCaptureMs = relayNow - lat;
    this.stats.stampsRead++;
    this.stats.latency = lat; this.stats.kind = kind; this.stats.source = source;
    this.window.add(lat);
    this.stats.p95 = this.window.pct(95);
  }

  // What is on screen and its age: a live picture's measured latency; otherwise (frozen, or
  // the slate) the time since the last live picture was captured, on the relay's clock.
  _picture() {
    const st = this.stats, t = performance.now();
    const lastFrame = this._lastFrameAt;  // (requestVideoFrameCallback's clock: performance.now)
    if (this._lastSlateAt !== null && (this._lastLiveAt === null || this._lastSlateAt > this._lastLiveAt)) st.picture = "signal lost";
    else if (lastFrame === null) st.picture = "waiting";
    else if (t - lastFrame > 1000 || st.state !== "playing") st.picture = "frozen";
    // Frames on screen, none yet known to be live (their times come on the channel): the
    // relay's slate looks like any picture, so a lost feed once showed "live" for its first
    // second on the wall. Not "live" before one is, or three seconds without any times.
    else if (this._lastLiveAt === null && this.readStamps && st.frames < 90) st.picture = "waiting";
    else st.picture = "live";
    if (st.picture === "live") st.age = st.latency === null ? null : Math.max(0, st.latency);
    else if (this.shownCaptureMs !== null && st.offset !== null) {
      st.age = Math.max(0, performance.timeOrigin + t + st.offset - this.shownCaptureMs);
    } else st.age = null;
  }

  async _collect() {
    if (!this.pc) return;
    const stats = await this.pc.getStats();
    let inbound = null, codecs = {};
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") inbound = s;
      if (s.type === "codec") codecs[s.id] = s;
    });
    if (inbound) {
      const prev = this._lastInbound;
      if (prev) {
        const dt = (inbound.timestamp - prev.timestamp) / 1000;
        this.stats.fps = (inbound.framesDecoded - prev.framesDecoded) / dt;
        this.stats.kbps = (8 * (inbound.bytesReceived - prev.bytesReceived)) / dt / 1000;
        const lost = inbound.packetsLost - prev.packetsLost;
        const got = inbound.packetsReceived - prev.packetsReceived;
        this.stats.lossPct = got + lost > 0 ? (100 * lost) / (got + lost) : 0;
      }
      this.stats.packetsLost = inbound.packetsLost;
      this.stats.framesDecoded = inbound.framesDecoded;
      this.stats.framesDropped = inbound.framesDropped || 0;
      this.stats.jitterBufferMs = inbound.jitterBufferEmittedCount
        ? (1000 * inbound.jitterBufferDelay) / inbound.jitterBufferEmittedCount : null;
      const c = codecs[inbound.codecId];
      this.stats.codec = c ? c.mimeType : null;
      this._lastInbound = inbound;
    }
    this._report();
    this._picture();
    this.onUpdate(this.stats, this.thresholds);
  }

  _report() {
    if (!this.channel || this.channel.readyState !== "open") return;
    const s = this.stats;
    const r = { fps: s.fps, bitrate_kbps: s.kbps, loss_pct: s.lossPct, packets_lost: s.packetsLost,
                frames_decoded: s.framesDecoded, frames_dropped: s.framesDropped,
                width: s.width, height: s.height, user_agent: navigator.userAgent, freezes: s.freezes };
    if (s.latency !== null) { r.latency_ms = s.latency; r.latency_p95_ms = s.p95; r.latency_kind = s.kind; }
    if (s.offset !== null) { r.clock_offset_ms = s.offset; r.clock_rtt_ms = s.rtt; }
    if (s.jitterBufferMs !== null && s.jitterBufferMs !== undefined) r.jitter_buffer_ms = s.jitterBufferMs;
    this.channel.send(JSON.stringify({ type: "report", report: r }));
  }
}

// An age for people: "85 ms", "4.2 s", "3 min".
export function formatAge(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60000)} min`;
}

export function levelOf(ms, th) {
  if (ms === null || ms === undefined) return "unknown";
  return ms <= th.green_ms ? "green" : ms <= th.yellow_ms ? "yellow" : "red";
}
