// Ground geometry for one camera over flat ground: where the picture's corners (the
// footprint) and any point of it (a click) meet the ground. Pure functions, no map.
//
// A telemetry sample s: lat, lon, rel_alt (m above ground), hdg, gimbal_pitch (deg,
// -90 = straight down), gimbal_yaw (deg from north), hfov/vfov (deg), and where the
// autopilot computed it, center_lat/center_lon (the image centre on the ground), which
// then fixes where the camera looks.

const M_PER_DEG = 111320;
const RAD = Math.PI / 180;
export const MAX_RANGE_M = 2000;  // a ray that meets the ground further away is cut here

export function toLocal(lat0, lon0, lat, lon) {
  return [(lon - lon0) * M_PER_DEG * Math.cos(lat0 * RAD), (lat - lat0) * M_PER_DEG];
}

export function fromLocal(lat0, lon0, east, north) {
  return [lat0 + north / M_PER_DEG, lon0 + east / (M_PER_DEG * Math.cos(lat0 * RAD))];
}

// Where the camera looks: heading and elevation (deg), and its height above ground.
export function aim(s) {
  if (!s || s.lat === undefined || s.lon === undefined) return null;
  const h = s.rel_alt;
  if (!(h > 0)) return null;
  if (s.center_lat !== undefined && s.center_lon !== undefined) {
    const [e, n] = toLocal(s.lat, s.lon, s.center_lat, s.center_lon);
    const d = Math.hypot(e, n);
    if (d < 0.5) return { yaw: s.gimbal_yaw ?? s.hdg ?? 0, pitch: -90, h };
    return { yaw: (Math.atan2(e, n) / RAD + 360) % 360, pitch: -Math.atan2(h, d) / RAD, h };
  }
  const yaw = s.gimbal_yaw ?? s.hdg;
  if (yaw === undefined || s.gimbal_pitch === undefined) return null;
  return { yaw, pitch: s.gimbal_pitch, h };
}

// The camera's axes (east, north, up) and the field of view's half tangents, or null.
function axes(s) {
  const a = aim(s);
  if (!a || !(s.hfov > 0) || !(s.vfov > 0)) return null;
  const y = a.yaw * RAD, p = a.pitch * RAD;
  return {
    f: [Math.sin(y) * Math.cos(p), Math.cos(y) * Math.cos(p), Math.sin(p)],
    r: [Math.cos(y), -Math.sin(y), 0],
    up: [-Math.sin(y) * Math.sin(p), -Math.cos(y) * Math.sin(p), Math.cos(p)],
    tu: Math.tan((s.hfov / 2) * RAD), tv: Math.tan((s.vfov / 2) * RAD), h: a.h,
  };
}

// Where the ground point (lat, lon) is in the picture of sample s: {u, v} (outside -1..1
// when off the picture), or {behind: true, bearing} when it is behind the camera, or null.
export function picturePoint(s, lat, lon) {
  const ax = axes(s);
  if (!ax) return null;
  const [e, n] = toLocal(s.lat, s.lon, lat, lon);
  const d = [e, n, -ax.h];
  const dot = (a) => a[0] * d[0] + a[1] * d[1] + a[2] * d[2];
  const z = dot(ax.f), x = dot(ax.r), y = dot(ax.up);
  if (z <= 1e-6) return { behind: true, x, y };
  return { u: x / z / ax.tu, v: y / z / ax.tv };
}

// The pixel (x, y) of (u, v) in a box showing a w x h picture "contain"-fitted, and the
// picture's rectangle in that box.
export function pictureXY(u, v, boxW, boxH, w, h) {
  const scale = Math.min(boxW / w, boxH / h);
  const pw = w * scale, ph = h * scale;
  const left = (boxW - pw) / 2, top = (boxH - ph) / 2;
  return { x: left + ((u + 1) / 2) * pw, y: top + ((1 - v) / 2) * ph, left, top, pw, ph };
}

export function distanceM(lat0, lon0, lat, lon) {
  const [e, n] = toLocal(lat0, lon0, lat, lon);
  return Math.hypot(e, n);
}

// The ground point seen at (u, v) of the picture: u from -1 (left) to 1 (right), v from
// -1 (bottom) to 1 (top). [lat, lon], or null (above the horizon, or nothing known).
export function groundPoint(s, u, v, maxRange = MAX_RANGE_M) {
  const ax = axes(s);
  if (!ax) return null;
  const { f, r, up, h } = ax;
  const tu = ax.tu * u, tv = ax.tv * v;
  const d = [0, 1, 2].map((i) => f[i] + tu * r[i] + tv * up[i]);
  const horiz = Math.hypot(d[0], d[1]);
  let k;
  if (d[2] < -1e-6) {
    k = h / -d[2];
    if (k * horiz > maxRange) k = maxRange / horiz;
  } else {
    if (horiz < 1e-9) return null;
    k = maxRange / horiz;  // above the horizon: cut at the range limit
  }
  return fromLocal(s.lat, s.lon, k * d[0], k * d[1]);
}

// The picture's outline on the ground: four corners (clockwise from top left), or null.
export function footprint(s) {
  const c = [[-1, 1], [1, 1], [1, -1], [-1, -1]].map(([u, v]) => groundPoint(s, u, v));
  return c.every(Boolean) ? c : null;
}

// The (u, v) of a click at (x, y) px on a <video> showing a w x h picture "contain"-fitted.
export function pictureUV(x, y, boxW, boxH, w, h) {
  if (!(w > 0 && h > 0)) return null;
  const scale = Math.min(boxW / w, boxH / h);
  const pw = w * scale, ph = h * scale;
  const left = (boxW - pw) / 2, top = (boxH - ph) / 2;
  const u = ((x - left) / pw) * 2 - 1, v = 1 - ((y - top) / ph) * 2;
  return u < -1 || u > 1 || v < -1 || v > 1 ? null : [u, v];
}

export function formatLatLon(lat, lon) {
  const ns = lat >= 0 ? "N" : "S", ew = lon >= 0 ? "E" : "W";
  return `${Math.abs(lat).toFixed(6)}° ${ns}, ${Math.abs(lon).toFixed(6)}° ${ew}`;
}
