import { authFetch } from "./auth.js";

const cards = document.getElementById("cards");

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

// The snapshot is fetched with the token in a header (an <img src> cannot send one).
// A stream of another node of a cluster: its picture from that node (`base`).
async function snapshot(img, name, base = "") {
  try {
    const r = await authFetch(`${base}/api/streams/${encodeURIComponent(name)}/snapshot.jpg`);
    if (!r.ok) return;
    const url = URL.createObjectURL(await r.blob());
    const old = img.src;
    img.src = url;
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  } catch (_) { /* next refresh */ }
}

function ago(ts) { const s = Date.now() / 1000 - ts; return s < 60 ? `${s.toFixed(0)} s` : `${(s / 60).toFixed(0)} min`; }

async function refresh() {
  try {
    const r = await authFetch("/api/streams");
    if (!r.ok) throw new Error(`${r.status} ${(await r.text()).trim()}`);
    const { streams, nodes } = await r.json();
    const clustered = (nodes || []).length > 1;
    document.getElementById("empty").hidden = streams.length > 0;
    document.getElementById("status").textContent = "";
    const seen = new Set();
    for (const s of streams) {
      seen.add(s.name);
      let card = cards.querySelector(`[data-name="${CSS.escape(s.name)}"]`);
      if (!card) {
        card = document.createElement("a");
        card.className = "card"; card.dataset.name = s.name;
        card.href = `/view/${encodeURIComponent(s.name)}`;  // the token stays in this tab's storage
        card.append(el("img", { alt: "" }), el("div", { class: "meta" }, el("span", { class: "title" }), el("span", { class: "state" })),
                    el("div", { class: "meta" }, el("span", { class: "info" }), el("span", { class: "viewers" })));
        cards.append(card);
      }
      card.querySelector(".title").textContent = s.title || s.name;
      const st = card.querySelector(".state");
      st.textContent = s.state === "lost" ? `lost ${ago(s.state_since)}` : s.state;
      st.className = `state ${s.state}`;
      card.querySelector(".info").textContent = s.width ? `${s.width}x${s.height} · ${s.fps.toFixed(0)} fps · ${s.source_codec}` : "no picture yet";
      card.querySelector(".viewers").textContent = `${s.viewers} watching` + (clustered && s.node ? ` · node ${s.node}` : "");
      if (s.width) snapshot(card.querySelector("img"), s.name, s.remote && s.node_url ? s.node_url : "");
    }
    for (const c of [...cards.children]) if (!seen.has(c.dataset.name)) c.remove();
  } catch (e) {
    document.getElementById("status").textContent = `relay unreachable (${e.message}); retrying`;
  }
}
refresh();
setInterval(refresh, 2000);
