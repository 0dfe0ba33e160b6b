// DJI Pilot 2's page for this relay: verify the brigade's DJI license, load the "thing"
// component with the relay's broker and the remote controller's account, then "liveshare",
// through Pilot 2's JSBridge (window.djiBridge; every call answers a JSON string
// {code, message, data}). Each step is said on screen: joined, or why not.
import { authFetch } from "./auth.js";

const $ = (id) => document.getElementById(id);
window.__dji = { calls: [], connected: null };

function step(id, ok, text) {
  const b = $(id).querySelector("b");
  b.textContent = text;
  b.className = ok ? "lvl-green" : "lvl-red";
}

function call(name, ...args) {
  const bridge = window.djiBridge;
  if (!bridge || typeof bridge[name] !== "function") throw new Error("this page runs outside DJI Pilot 2 (no JSBridge)");
  window.__dji.calls.push([name, ...args]);
  let doc;
  try { doc = JSON.parse(bridge[name](...args)); } catch (e) { throw new Error(`${name}: no answer (${e.message})`); }
  if (!doc || doc.code !== 0) throw new Error(`${name}: ${(doc && doc.message) || "refused"} (code ${doc ? doc.code : "?"})`);
  return doc.data;
}

// Pilot 2 calls these by name.
window.relayThingConnected = (ok) => {
  window.__dji.connected = Boolean(ok);
  step("s-thing", Boolean(ok), ok ? "connected" : "disconnected: check the relay's address and the account");
};
window.relayLiveStatus = (status) => { window.__dji.live = status; };

async function join() {
  const r = await authFetch("/api/dji/pilot");
  if (!r.ok) {
    const why = (await r.text()).trim();
    for (const id of ["s-license", "s-thing", "s-live"]) step(id, false, "not tried");
    $("said").textContent = `The relay did not give this controller its settings: ${r.status} ${why}`;
    $("said").hidden = false;
    return;
  }
  const cfg = await r.json();
  $("platform").textContent = cfg.platform;
  try {
    call("platformVerifyLicense", cfg.app_id, cfg.app_key, cfg.license);
    step("s-license", true, "verified");
  } catch (e) { step("s-license", false, e.message); return; }
  try {
    call("platformSetInformation", "Drone relay", cfg.platform, "fire brigade live video");
    call("platformLoadComponent", "thing", JSON.stringify({
      host: cfg.thing.host, username: cfg.thing.username, password: cfg.thing.password,
      connectCallback: "relayThingConnected" }));
    step("s-thing", true, "loaded: connecting…");
  } catch (e) { step("s-thing", false, e.message); return; }
  try {
    call("platformLoadComponent", "liveshare", JSON.stringify({
      videoPublishType: "video-on-demand", statusCallback: "relayLiveStatus" }));
    step("s-live", true, "ready: the control centre starts the picture");
  } catch (e) { step("s-live", false, e.message); }
}
join().catch((e) => { $("said").textContent = e.message; $("said").hidden = false; });
