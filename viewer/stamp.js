// Stamp decoder (docs/stamp.md): 24x4 cells of W/80 x H/45 px; 32-bit frame number,
// 48-bit wall-clock ms, CRC-16/CCITT-FALSE. Slot "drone" sits top-left, slot "relay"
// bottom-right (the relay burns its arrival time there).
export const COLS = 24, ROWS = 4, GRID_W = 80, GRID_H = 45;
export const SLOTS = { drone: [1, 1], relay: [GRID_W - 1 - COLS, GRID_H - 1 - ROWS] };

export function crc16(bytes) {
  let crc = 0xffff;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = (crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1) & 0xffff;
  }
  return crc;
}

// Pixel rectangle (in video pixels) holding the cells of a slot.
export function slotRect(width, height, slot) {
  const [c0, r0] = SLOTS[slot];
  const cw = width / GRID_W, ch = height / GRID_H;
  return { x: Math.floor(cw * c0), y: Math.floor(ch * r0),
           w: Math.ceil(cw * COLS), h: Math.ceil(ch * ROWS), cw, ch };
}

// Decode from RGBA pixels covering exactly slotRect(...) scaled to (pw x ph).
export function decodePixels(data, pw, ph) {
  const cw = pw / COLS, ch = ph / ROWS;
  const bytes = new Uint8Array(12);
  for (let i = 0; i < COLS * ROWS; i++) {
    const r = Math.floor(i / COLS), c = i % COLS;
    const x0 = Math.floor(cw * (c + 0.25)), x1 = Math.max(x0 + 1, Math.floor(cw * (c + 0.75)));
    const y0 = Math.floor(ch * (r + 0.25)), y1 = Math.max(y0 + 1, Math.floor(ch * (r + 0.75)));
    let sum = 0, n = 0;
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const k = (y * pw + x) * 4;
        sum += 0.299 * data[k] + 0.587 * data[k + 1] + 0.114 * data[k + 2];
        n++;
      }
    }
    if (sum / n > 128) bytes[i >> 3] |= 0x80 >> (i & 7);
  }
  if (crc16(bytes.subarray(0, 10)) !== ((bytes[10] << 8) | bytes[11])) return null;
  const frame = ((bytes[0] << 24) >>> 0) + (bytes[1] << 16) + (bytes[2] << 8) + bytes[3];
  let ms = 0;
  for (let i = 4; i < 10; i++) ms = ms * 256 + bytes[i];
  return { frame, captureMs: ms };
}

// Read one slot from a video element (draws only that small area to a canvas).
export class StampReader {
  constructor() {
    this.canvas = document.createElement("canvas");
    this.ctx = this.canvas.getContext("2d", { willReadFrequently: true });
  }
  read(source, width, height, slot) {
    if (!width || !height) return null;
    const r = slotRect(width, height, slot);
    const pw = Math.min(r.w, COLS * 8), ph = Math.min(r.h, ROWS * 8);
    if (this.canvas.width !== pw || this.canvas.height !== ph) {
      this.canvas.width = pw; this.canvas.height = ph;
    }
    this.ctx.drawImage(source, r.x, r.y, r.w, r.h, 0, 0, pw, ph);
    return decodePixels(this.ctx.getImageData(0, 0, pw, ph).data, pw, ph);
  }
}
