// WHIP publisher: this device's camera → the relay. Reconnects with backoff if the link drops.
import { authHeaders, iceServers } from "./auth.js";

const stream = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
$("name").textContent = stream;
const state = { pc: null, location: null, media: null, running: false, frames: 0, connected: false };
window.__publisher = state;

function setState(text) { $("state").textContent = text; }

async function listCameras() {
  try {
    const devices = await navigator.mediaDevices.enumerateDevices();
    for (const d of devices.filter((x) => x.kind === "videoinput")) {
      const o = document.createElement("option");
      o.value = d.deviceId; o.textContent = d.label || `camera ${$("camera").length + 1}`;
      $("camera").append(o);
    }
  } catch (_) { /* no permission yet */ }
}

async function publishOnce() {
  const [w, h] = $("quality").value.split("x").map(Number);
  if (!state.media) {
    state.media = await navigator.mediaDevices.getUserMedia({
      video: { deviceId: $("camera").value || undefined, width: w, height: h, frameRate: 30 },
      audio: false,
    });
    $("preview").srcObject = state.media;
  }
  const endpoint = `/whip/${encodeURIComponent(stream)}`;
  const pc = new RTCPeerConnection({ iceServers: await iceServers(endpoint) });
  state.pc = pc;
  const [track] = state.media.getVideoTracks();
  const tx = pc.addTransceiver(track, { direction: "sendonly" });
  const h264 = RTCRtpSender.getCapabilities("video").codecs.filter((c) => c.mimeType === "video/H264");
  if (h264.length && tx.setCodecPreferences) tx.setCodecPreferences(h264);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const t = setTimeout(resolve, 2000);
    pc.addEventListener("icegatheringstatechange", () => { if (pc.iceGatheringState === "complete") { clearTimeout(t); resolve(); } });
  });
  const headers = authHeaders({ "Content-Type": "application/sdp" });
  const resp = await fetch(endpoint, { method: "POST", body: pc.localDescription.sdp, headers });
  if (resp.status !== 201) throw new Error(`relay answered ${resp.status}: ${(await resp.text()).trim()}`);
  state.location = new URL(resp.headers.get("Location"), location.href).toString();
  await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
  await new Promise((resolve) => {
    pc.addEventListener("connectionstatechange", () => {
      state.connected = pc.connectionState === "connected";
      setState(pc.connectionState);
      if (["failed", "closed"].includes(pc.connectionState)) resolve();
    });
    state.dropped = resolve;
  });
}

async function run() {
  state.running = true; $("go").disabled = true; $("stop").disabled = false;
  let backoff = 500;
  while (state.running) {
    try { setState("connecting"); await publishOnce(); backoff = 500; }
    catch (e) { setState(`retrying: ${e.message}`); }
    if (state.pc) { state.pc.close(); state.pc = null; }
    if (!state.running) break;
    await new Promise((r) => setTimeout(r, backoff));
    backoff = Math.min(backoff * 2, 8000);
  }
}

async function stop() {
  state.running = false;
  if (state.location) {
    await fetch(state.location, { method: "DELETE", headers: authHeaders() }).catch(() => {});
    state.location = null;
  }
  if (state.dropped) state.dropped();
  $("go").disabled = false; $("stop").disabled = true; setState("stopped");
}

$("go").onclick = run;
$("stop").onclick = stop;
listCameras();
if (params.get("autostart") === "1") run();
