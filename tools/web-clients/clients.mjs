// WHIP/WHEP client libraries we did not write, exposed to a test page (bundled with esbuild
// at test time; nothing third-party is committed). Each returns once its session is up;
// window.frames() counts the frames the page's <video> presents.
import { WebRTCPlayer } from "@eyevinn/webrtc-player";
import { WHIPClient as EyevinnWHIP } from "@eyevinn/whip-web-client";
import { WHEPClient } from "whip-whep/whep.js";
import { WHIPClient } from "whip-whep/whip.js";

const video = () => document.getElementById("v");

function countFrames(v) {
  let n = 0;
  const tick = () => { n++; v.requestVideoFrameCallback(tick); };
  v.requestVideoFrameCallback(tick);
  window.frames = () => n;
}

// A moving picture to publish: a canvas at 30 fps (no camera on a test machine).
function canvasStream() {
  const c = document.createElement("canvas");
  c.width = 640; c.height = 360;
  const g = c.getContext("2d");
  let n = 0;
  setInterval(() => {
    g.fillStyle = `hsl(${(n * 7) % 360}, 70%, 45%)`; g.fillRect(0, 0, 640, 360);
    g.fillStyle = "#fff"; g.font = "48px sans-serif"; g.fillText(String(n++), 40, 80);
  }, 33);
  return c.captureStream(30);
}

window.clients = {
  async eyevinnPlayer(url) {
    const player = new WebRTCPlayer({ video: video(), type: "whep", iceServers: [] });
    await player.load(new URL(url));
    countFrames(video());
  },
  async whipWhepView(url) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.ontrack = (e) => { video().srcObject = new MediaStream([e.track]); };
    await new WHEPClient().view(pc, url);
    countFrames(video());
  },
  async eyevinnWhip(url) {
    const client = new EyevinnWHIP({ endpoint: url, opts: { iceServers: [], noTrickleIce: true } });
    await client.ingest(canvasStream());
  },
  async whipWhepPublish(url) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    for (const t of canvasStream().getTracks()) pc.addTransceiver(t, { direction: "sendonly" });
    await new WHIPClient().publish(pc, url);
  },
};
