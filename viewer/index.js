const token = new URLSearchParams(location.search).get("token");
const headers = token ? { Authorization: `Bearer ${token}` } : {};
const q = token ? `?token=${encodeURIComponent(token)}` : "";
const cards = document.getElementById("cards");

function ago(ts) { const s = Date.now() / 1000 - ts; return s < 60 ? `${s.toFixed(0)} s` : `${(s / 60).toFixed(0)} min`; }

async function refresh() {
  try {
    const r = await fetch("/api/streams", { headers });
    if (!r.ok) throw new Error(`${r.status} ${(await r.text()).trim()}`);
    const { streams } = await r.json();
    document.getElementById("empty").hidden = streams.length > 0;
    document.getElementById("status").textContent = "";
    const seen = new Set();
    for (const s of streams) {
      seen.add(s.name);
      let card = cards.querySelector(`[data-name="${CSS.escape(s.name)}"]`);
      if (!card) {
        card = document.createElement("a");
        card.className = "card"; card.dataset.name = s.name;
        card.href = `/view/${encodeURIComponent(s.name)}${q}`;
        card.innerHTML = `<img alt=""><div class="meta"><span class="title"></span><span class="state"></span></div><div class="meta"><span class="info"></span><span class="viewers"></span></div>`;
        cards.append(card);
      }
      card.querySelector(".title").textContent = s.title || s.name;
      const st = card.querySelector(".state");
      st.textContent = s.state === "lost" ? `lost ${ago(s.state_since)}` : s.state;
      st.className = `state ${s.state}`;
      card.querySelector(".info").textContent = s.width ? `${s.width}x${s.height} · ${s.fps.toFixed(0)} fps · ${s.source_codec}` : "no picture yet";
      card.querySelector(".viewers").textContent = `${s.viewers} watching`;
      if (s.width) card.querySelector("img").src = `/api/streams/${encodeURIComponent(s.name)}/snapshot.jpg${q}${q ? "&" : "?"}t=${Date.now()}`;
    }
    for (const c of [...cards.children]) if (!seen.has(c.dataset.name)) c.remove();
  } catch (e) {
    document.getElementById("status").textContent = `relay unreachable (${e.message}); retrying`;
  }
}
refresh();
setInterval(refresh, 2000);
