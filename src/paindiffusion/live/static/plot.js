// A small scrolling plot on a 2-D canvas: stimulus (°C), PSPI and the pain AUs over the last `seconds`.
"use strict";
const PAIN_AUS = [["AU4", "#8e44ad"], ["AU6", "#16a085"], ["AU7", "#27ae60"], ["AU9", "#c0392b"],
                  ["AU10", "#e67e22"], ["AU43", "#7f8c8d"]];

function drawPlot(canvas, frames, fps, seconds, [lo, hi]) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const left = 34, right = 34, top = 6, bottom = 18, pw = w - left - right, ph = h - top - bottom;
  g.font = "11px system-ui, sans-serif"; g.fillStyle = "#666"; g.strokeStyle = "#e6e6e6"; g.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {  // grid: PSPI 0..16 on the left, the heat range (°C) on the right
    const y = top + ph - (k / 4) * ph;
    g.beginPath(); g.moveTo(left, y); g.lineTo(left + pw, y); g.stroke();
    g.fillText(String(4 * k), 6, y + 4); g.fillText(String(lo + (hi - lo) * k / 4), left + pw + 6, y + 4);
  }
  for (let s = 0; s <= seconds; s += 5) g.fillText(`-${seconds - s}s`, left + (s / seconds) * pw - 10, h - 4);
  if (!frames.length) return;
  const last = frames[frames.length - 1].frame, n = seconds * fps;
  const x = (f) => left + pw - ((last - f.frame) / n) * pw;
  const line = (colour, width, value) => {
    g.strokeStyle = colour; g.lineWidth = width; g.beginPath();
    let started = false;
    for (const f of frames) {
      if (last - f.frame > n) continue;
      const v = value(f); if (v == null) continue;
      const y = top + ph - Math.max(0, Math.min(1, v)) * ph;
      if (started) g.lineTo(x(f), y); else { g.moveTo(x(f), y); started = true; }
    }
    g.stroke();
  };
  g.globalAlpha = 0.55;
  for (const [au, colour] of PAIN_AUS) line(colour, 1, (f) => (au in f.channels ? f.channels[au] / 5 : null));
  g.globalAlpha = 1;
  line("#2c3e50", 2.2, (f) => (f.pspi == null ? null : f.pspi / 16));
  line("#d35400", 2.2, (f) => (f.stimulus - lo) / (hi - lo));
}
