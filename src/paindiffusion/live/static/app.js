// The live demo page: one WebSocket = one patient. Frames arrive as [u32 header length][JSON][JPEG].
"use strict";
const $ = (id) => document.getElementById(id);
const state = window.paindiffusion = {
  received: 0, drawn: 0, frames: [], shown: null, latencies: [], errors: [], arrivals: [],
  heat: null, holding: false, paused: false, decaying: false, seq: 0, pending: new Map(), info: null, open: false,
  fps() { const now = performance.now(); this.arrivals = this.arrivals.filter((t) => now - t < 2000);
          return this.arrivals.length / 2; },
};
let ws = null, lastSent = { stimulus: null }, sendTimer = 0;
const RAMP_C_PER_S = 12.0;  // "apply heat": +12 °C per second while held (32 → 50 °C in 1.5 s)
const DECAY_TAU_S = 1.0;    // after release: back to the baseline with a 1 s time constant (~4 s to settle)

function send(controls) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  const seq = ++state.seq;
  state.pending.set(seq, performance.now());
  ws.send(JSON.stringify({ ...controls, seq }));
}

function setHeat(c, fromUser) {
  const [lo, hi] = state.info.heat_range;
  state.heat = Math.max(lo, Math.min(hi, c));
  $("heat").value = state.heat.toFixed(1);
  $("heat-value").textContent = `${state.heat.toFixed(1)} °C`;
  if (fromUser) state.decaying = false;
  if (lastSent.stimulus === null || Math.abs(lastSent.stimulus - state.heat) >= 0.05) {
    lastSent.stimulus = state.heat;
    send({ stimulus: Math.round(state.heat * 100) / 100 });
  }
}

function tick(dt) {  // 25 times a second: the press-and-hold ramp and the decay after release
  const base = state.info.baseline;
  if (state.holding) setHeat(state.heat + RAMP_C_PER_S * dt);
  else if (state.decaying) {
    const next = base + (state.heat - base) * Math.exp(-dt / DECAY_TAU_S);
    if (Math.abs(next - base) < 0.05) { state.decaying = false; setHeat(base); } else setHeat(next);
  }
}

function hold(on) {
  if (on === state.holding) return;
  state.holding = on;
  if (!on) state.decaying = true;
  $("apply-heat").classList.toggle("held", on);
}

function onFrame(buf) {
  const n = new DataView(buf).getUint32(0, true);
  const head = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
  const now = performance.now();
  state.received++; state.arrivals.push(now);
  for (const [seq, t] of state.pending) {  // the first frame made with a control we sent
    if (head.control_seq >= seq) { state.latencies.push(now - t); state.pending.delete(seq); }
  }
  state.frames.push(head);
  if ($("notice").textContent !== (head.notice || "")) $("notice").textContent = head.notice || "";  // e.g. heat above tolerance
  const keep = 30 * state.info.fps;  // the last 30 s: the plot's span and what the edit panel may take
  if (state.frames.length > keep) state.frames.splice(0, state.frames.length - keep);
  if (state.paused) return;  // a frozen display (tests compare a shown frame with the Python render of it)
  createImageBitmap(new Blob([new Uint8Array(buf, 4 + n)], { type: "image/jpeg" })).then((img) => {
    const c = $("face");
    if (c.width !== img.width) { c.width = img.width; c.height = img.height; c.style.width = `${img.width}px`; }
    c.getContext("2d").drawImage(img, 0, 0);
    img.close();
    state.drawn++; state.shown = head;
  });
  $("speed").textContent = head.speed_x_realtime == null ? "–" : `${head.speed_x_realtime.toFixed(0)}×`;
  $("lag").textContent = head.lag_ms.toFixed(0);
}

function connect() {
  ws = new WebSocket(`ws://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { state.open = true; lastSent.stimulus = null; setHeat(state.heat); sendExpressiveness(); sendEmotion(); sendPainRange(); };
  ws.onmessage = (e) => {
    if (typeof e.data === "string") { const m = JSON.parse(e.data); state.errors.push(m.error); $("error").textContent = m.error; }
    else onFrame(e.data);
  };
  ws.onclose = () => { state.open = false; $("error").textContent = "disconnected from the generator; reload to reconnect"; };
}

function sendExpressiveness() {
  const v = Number($("expressiveness").value);
  const presets = state.info ? state.info.presets : {};
  let name = v.toFixed(2);
  for (const [k, p] of Object.entries(presets)) if (Math.abs(p - v) < 0.03) name = k;
  $("expr-value").textContent = name;
  for (const b of $("presets").children) b.classList.toggle("on", b.textContent === name);
  send({ expressiveness: v });
}
function sendEmotion() { send({ emotion: $("emotion").value }); }
// A model that reads the pain range feels heat relative to the patient's threshold and tolerance (BioVid stimulus
// levels 1 and 4).
function sendPainRange() { if (state.info.reads_pain_range) send({ threshold: Number($("threshold").value), tolerance: Number($("tolerance").value) }); }

async function main() {
  state.info = await (await fetch("/api/info")).json();
  const info = state.info;
  for (const e of info.emotions) $("emotion").add(new Option(e, e, e === "Neutral", e === "Neutral"));
  for (const [k, v] of Object.entries(info.presets)) {
    const b = document.createElement("button"); b.type = "button"; b.textContent = k;
    b.onclick = () => { $("expressiveness").value = v; sendExpressiveness(); };
    $("presets").append(b);
  }
  // the slider spans what the model was trained on (requests outside are clamped by the server anyway)
  [$("expressiveness").min, $("expressiveness").max] = info.expressiveness_range;
  $("expressiveness").value = info.presets.medium;
  $("face").width = $("face").height = info.size;
  $("face").style.width = $("face").style.height = `${info.size}px`;  // 1:1 pixels: the page shows the render exactly
  [$("heat").min, $("heat").max] = info.heat_range;
  $("heat-range").textContent = info.heat_range.join("–");
  state.heat = info.baseline;
  $("au-legend").innerHTML = PAIN_AUS.map(([au, c]) => `<i style="background:${c}"></i>${au}`).join(" ") + " (0–5)";
  $("heat").oninput = () => setHeat(Number($("heat").value), true);
  $("expressiveness").oninput = sendExpressiveness;
  $("emotion").onchange = sendEmotion;
  $("pain-range").hidden = !info.reads_pain_range;
  [$("threshold").value, $("tolerance").value] = info.pain_range;
  $("threshold").onchange = $("tolerance").onchange = sendPainRange;
  $("new-patient").onclick = () => ws && ws.send(JSON.stringify({ new_patient: Math.floor(Math.random() * 2 ** 31) }));
  const button = $("apply-heat");
  button.addEventListener("pointerdown", (e) => { button.setPointerCapture(e.pointerId); hold(true); });
  for (const ev of ["pointerup", "pointercancel", "lostpointercapture"]) button.addEventListener(ev, () => hold(false));
  document.addEventListener("keydown", (e) => {
    if (e.code === "Space" && !(e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement)) {
      e.preventDefault(); if (!e.repeat) hold(true);
    }
  });
  document.addEventListener("keyup", (e) => { if (e.code === "Space") { e.preventDefault(); hold(false); } });
  window.addEventListener("blur", () => hold(false));
  let t = performance.now();
  setInterval(() => { const now = performance.now(); tick((now - t) / 1000); t = now; }, 40);
  setInterval(() => {
    $("fps").textContent = state.fps().toFixed(1);
    const l = state.latencies.slice(-20).sort((a, b) => a - b);
    $("latency").textContent = l.length ? l[Math.floor(l.length / 2)].toFixed(0) : "–";
  }, 500);
  setInterval(() => drawPlot($("plot"), state.frames, info.fps, 30, info.heat_range), 100);  // 10 Hz is smooth enough for 30 s
  connect();
}
main();
