// Share links: create one (QR code shown once), list them, revoke (its viewers are cut off).
import { authFetch } from "./auth.js";

const $ = (id) => document.getElementById(id);
const fmt = (t) => new Date(t * 1000).toLocaleString();

function cell(text) { const td = document.createElement("td"); td.textContent = String(text); return td; }

async function streams() {
  const r = await authFetch("/api/streams");
  if (!r.ok) { $("status").textContent = `streams: ${r.status}`; return; }
  const { streams: list } = await r.json();
  const sel = $("stream");
  const keep = sel.value;
  sel.replaceChildren(...list.map((s) => { const o = document.createElement("option"); o.value = s.name; o.textContent = s.title ? `${s.title} (${s.name})` : s.name; return o; }));
  if (keep) sel.value = keep;
}

// The list refreshes every 3 s; what the user did (a create, a revoke) stays said in #said
// until the next thing they do, and a relay that cannot make links says so over the form.
async function refresh() {
  const r = await authFetch("/api/shares");
  if (!r.ok) { $("status").textContent = `${r.status}: ${(await r.text()).trim()}`; return; }
  $("status").textContent = "";
  const { shares, can_create: can, why_not: why } = await r.json();
  $("off").hidden = can !== false;
  $("off").textContent = why || "";
  for (const e of $("create").elements) e.disabled = can === false;
  const rows = shares.map((s) => {
    const tr = document.createElement("tr");
    tr.dataset.id = s.id;
    const state = s.revoked ? "revoked" : s.active ? "active" : "expired";
    tr.append(cell(s.label || "—"), cell(s.stream), cell(s.created_by), cell(fmt(s.expires)),
              cell(`${s.viewers}${s.max_viewers ? ` / ${s.max_viewers}` : ""}`), cell(s.mark ? "may mark" : "see"), cell(state));
    const td = document.createElement("td");
    if (s.active) {
      const b = document.createElement("button");
      b.textContent = "Revoke"; b.className = "revoke";
      b.onclick = async () => {
        const resp = await authFetch(`/api/shares/${encodeURIComponent(s.id)}`, { method: "DELETE" });
        $("said").textContent = resp.ok ? `revoked; ${(await resp.json()).sessions_ended} session(s) ended`
          : `${resp.status}: ${(await resp.text()).trim()}`;
        refresh();
      };
      td.append(b);
    }
    tr.append(td);
    return tr;
  });
  $("list").tBodies[0].replaceChildren(...rows);
}

$("create").onsubmit = async (ev) => {
  ev.preventDefault();
  const body = { stream: $("stream").value, label: $("label").value, ttl_s: Number($("ttl").value),
                 max_viewers: Number($("cap").value), mark: $("mark").checked };
  const r = await authFetch("/api/shares", { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
  if (r.status !== 201) { $("said").textContent = `link not made: ${r.status} ${(await r.text()).trim()}`; return; }
  $("said").textContent = "";
  const s = await r.json();
  $("qr").src = `data:image/svg+xml;base64,${btoa(s.qr_svg)}`;
  $("created-label").textContent = s.label || s.stream;
  $("created-url").value = s.url;
  $("created-meta").textContent = `valid until ${fmt(s.expires)}${s.max_viewers ? ` · ${s.max_viewers} viewer(s) at a time` : ""}${s.mark ? " · may place markers" : ""}`;
  $("created").hidden = false;
  refresh();
};
$("copy").onclick = async () => {
  try { await navigator.clipboard.writeText($("created-url").value); $("copy").textContent = "Copied"; }
  catch (_) { $("created-url").select(); }
};

window.__shares = { refresh };
streams().then(refresh).catch((e) => { $("status").textContent = String(e); });
setInterval(refresh, 3000);
