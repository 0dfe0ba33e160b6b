// The page's credential: taken once from "#token=..." in the URL (a fragment never reaches
// a server log or a Referer header), kept in this tab's sessionStorage, sent only as an
// "Authorization: Bearer" header. A 401 from the relay asks for it.
const KEY = "relay-token";

function fromFragment() {
  const frag = new URLSearchParams(location.hash.slice(1));
  const t = frag.get("token");
  if (t) {
    sessionStorage.setItem(KEY, t);
    frag.delete("token");
    const rest = frag.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
}
fromFragment();

export function token() { return sessionStorage.getItem(KEY); }

export function authHeaders(extra = {}) {
  const h = { ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

let asking = null;
export function askForToken(reason) {
  // One prompt at a time, however many requests were refused.
  if (!asking) {
    asking = Promise.resolve().then(() => {
      const t = window.prompt(`${reason}\nAccess token:`);
      if (t) sessionStorage.setItem(KEY, t.trim());
      asking = null;
      return Boolean(t);
    });
  }
  return asking;
}

// fetch with the token; on 401 ask once for a token and retry once.
export async function authFetch(url, opts = {}) {
  let resp = await fetch(url, { ...opts, headers: authHeaders(opts.headers || {}) });
  if (resp.status === 401 && (await askForToken((await resp.clone().text()).trim()))) {
    resp = await fetch(url, { ...opts, headers: authHeaders(opts.headers || {}) });
  }
  return resp;
}

// RFC 9725 §4.6 Link headers: <turn:host:3478?transport=tcp>; rel="ice-server"; username="u"; credential="c"
export function parseIceLinks(header) {
  if (!header) return [];
  const servers = [];
  const re = /<([^>]+)>((?:\s*;\s*[A-Za-z-]+(?:=(?:"(?:[^"\\]|\\.)*"|[^;,]*))?)*)/g;
  let m;
  while ((m = re.exec(header)) !== null) {
    const params = {};
    for (const p of m[2].matchAll(/;\s*([A-Za-z-]+)(?:=("(?:[^"\\]|\\.)*"|[^;,]*))?/g)) {
      let v = p[2] || "";
      if (v.startsWith('"')) v = v.slice(1, -1).replace(/\\(.)/g, "$1");
      params[p[1].toLowerCase()] = v;
    }
    if (params.rel !== "ice-server") continue;
    const s = { urls: m[1] };
    if (params.username) { s.username = params.username; s.credential = params.credential; }
    servers.push(s);
  }
  return servers;
}

// The relay's ICE servers (STUN/TURN with fresh credentials), asked before the offer.
export async function iceServers(endpoint) {
  try {
    const resp = await fetch(endpoint, { method: "OPTIONS", headers: authHeaders() });
    if (!resp.ok) return [];
    return parseIceLinks(resp.headers.get("Link"));
  } catch (_) {
    return [];
  }
}
