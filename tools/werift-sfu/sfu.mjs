// A tiny WHIP-in, WHEP-out forwarder built on werift (a TypeScript WebRTC stack the relay's
// authors did not write): the vehicle relay forwards into it over WHIP, the centre relay
// pulls from it over WHEP. RTP is passed through untouched; a viewer's PLI goes to the
// publisher. Only for tests: no auth, one stream per name, loopback or a test namespace.
//   node sfu.mjs PORT [HOST]      GET /stats -> JSON counters
import http from "node:http";
import { RTCPeerConnection, MediaStreamTrack, RTCRtpCodecParameters } from "werift";

const port = Number(process.argv[2] || 8890);
const host = process.argv[3] || "127.0.0.1";
const streams = new Map(); // name -> { receiver, ssrc, viewers: Set<MediaStreamTrack> }
const stats = { whip: 0, whep: 0, rtp_in: 0, rtp_out: 0, plis_forwarded: 0, datachannels: 0 };

const codecs = () => ({
  video: [new RTCRtpCodecParameters({
    mimeType: "video/H264", clockRate: 90000,
    rtcpFeedback: [{ type: "nack" }, { type: "nack", parameter: "pli" }, { type: "goog-remb" }],
    parameters: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
  })],
});

function peer() {
  const pc = new RTCPeerConnection({ codecs: codecs(), iceAdditionalHostAddresses: [host], iceUseIpv6: false });
  pc.onDataChannel.subscribe(() => { stats.datachannels++; });  // opened, never answered
  return pc;
}

async function answer(pc, offer) {
  await pc.setRemoteDescription({ type: "offer", sdp: offer });
  await pc.setLocalDescription(await pc.createAnswer());
  for (let i = 0; i < 100 && pc.iceGatheringState !== "complete"; i++) await new Promise((r) => setTimeout(r, 50));
  return pc.localDescription.sdp;
}

function stream(name) {
  if (!streams.has(name)) streams.set(name, { receiver: null, ssrc: 0, viewers: new Set() });
  return streams.get(name);
}

async function whip(name, offer) {
  const pc = peer();
  const s = stream(name);
  pc.onTransceiverAdded.subscribe((t) => {
    t.onTrack.subscribe((track) => {
      s.receiver = t.receiver;
      track.onReceiveRtp.subscribe((rtp) => {
        stats.rtp_in++;
        s.ssrc = rtp.header.ssrc;
        for (const v of s.viewers) { v.writeRtp(rtp); stats.rtp_out++; }
      });
    });
  });
  stats.whip++;
  return answer(pc, offer);
}

async function whep(name, offer) {
  const pc = peer();
  const s = stream(name);
  const track = new MediaStreamTrack({ kind: "video" });
  const t = pc.addTransceiver(track, { direction: "sendonly" });
  t.sender.onRtcp.subscribe((rtcp) => {
    if (rtcp.type === 206 && s.receiver && s.ssrc) {  // payload-specific feedback: PLI/FIR
      stats.plis_forwarded++;
      s.receiver.sendRtcpPLI(s.ssrc);
    }
  });
  s.viewers.add(track);
  pc.connectionStateChange.subscribe((st) => { if (st === "closed" || st === "failed") s.viewers.delete(track); });
  stats.whep++;
  const sdp = await answer(pc, offer);
  if (s.receiver && s.ssrc) s.receiver.sendRtcpPLI(s.ssrc);  // a new viewer needs a keyframe
  return sdp;
}

http.createServer(async (req, res) => {
  const m = req.url.match(/^\/(whip|whep)\/([A-Za-z0-9_.-]+)(\/.*)?$/);
  try {
    if (req.method === "GET" && req.url === "/stats") {
      res.writeHead(200, { "Content-Type": "application/json" });
      return res.end(JSON.stringify(stats));
    }
    if (m && req.method === "DELETE") { res.writeHead(200); return res.end(); }
    if (!m || req.method !== "POST") { res.writeHead(404); return res.end("not found\n"); }
    let body = "";
    for await (const chunk of req) body += chunk;
    const sdp = await (m[1] === "whip" ? whip : whep)(m[2], body);
    res.writeHead(201, { "Content-Type": "application/sdp", Location: `/${m[1]}/${m[2]}/1` });
    res.end(sdp);
  } catch (e) {
    res.writeHead(400);
    res.end(`${e}\n`);
  }
}).listen(port, host, () => console.log(`werift sfu on ${host}:${port}`));
