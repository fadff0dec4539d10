// The edit panel: load a sequence (a file, or the last 30 s of the live face), edit it, preview the edit beside
// the original, download it. The server does the work (live/editing.py); this page asks and shows.
"use strict";
(() => {
  const app = window.paindiffusion;  // the live page's state (app.js): app.frames hold the last 30 s of live face
  const ed = app.edit = { source: null, result: null, errors: [], shown: -1, drawn: 0, runs: 0, busy: false };
  const $ = (id) => document.getElementById(id);
  let info = null, live = null, pending = 0, playing = false, seed = 0;  // live: the page's /api/info

  function el(tag, props = {}, ...kids) {
    const e = document.createElement(tag);
    Object.assign(e, props);
    e.append(...kids);
    return e;
  }

  function build() {
    const opt = (v, t) => el("option", { value: v, textContent: t });
    const box = el("section", { id: "edit-panel" },
      el("h2", { textContent: "Edit a sequence" }),
      el("div", { className: "edit-row" },
        el("label", {}, "sequence file (.npz/.csv)", el("input", { id: "edit-file", type: "file", accept: ".npz,.csv" })),
        el("button", { id: "edit-live", type: "button", textContent: "use the last 30 s of the live face" }),
        el("span", { id: "edit-source", textContent: "no sequence loaded" })),
      el("div", { className: "edit-row" },
        el("label", {}, "strength ", el("output", { id: "edit-strength-value", textContent: "0.50" }),
          el("input", { id: "edit-strength", type: "range", min: 0, max: 1, step: 0.125, value: 0.5 })),
        el("label", {}, "expressiveness", el("select", { id: "edit-expr" }, opt("", "as the input"), opt("low", "low"),
          opt("medium", "medium"), opt("high", "high"))),
        el("label", {}, "emotion", el("select", { id: "edit-emotion" }, opt("", "as the input"))),
        el("label", {}, "keep (s)", el("input", { id: "edit-keep", type: "text", placeholder: "0-4, 12.5-20", size: 12 })),
        el("label", {}, "extend (s)", el("input", { id: "edit-extend", type: "number", min: 0, max: 60, step: 1, value: 0 })),
        el("button", { id: "edit-redraw", type: "button", textContent: "new draw" })),
      el("div", { className: "edit-row edit-preview" },
        el("figure", {}, el("img", { id: "edit-face", alt: "original (left) and edit (right)" }),
          el("figcaption", { textContent: "original | edit" })),
        el("div", { className: "edit-side" },
          el("canvas", { id: "edit-plot", width: 520, height: 150 }),
          el("p", { className: "legend" }, el("i", { className: "orig" }), "PSPI original ", el("i", { className: "edited" }),
            "PSPI edit ", el("i", { className: "kept" }), "kept"),
          el("div", { className: "edit-row" },
            el("button", { id: "edit-play", type: "button", textContent: "play" }),
            el("input", { id: "edit-time", type: "range", min: 0, max: 0, step: 1, value: 0 }),
            el("output", { id: "edit-time-value", textContent: "0.0 s" })),
          el("div", { className: "edit-row" },
            el("select", { id: "edit-format" }),
            el("a", { id: "edit-download", textContent: "download the edit", className: "disabled" })))),
      el("p", { id: "edit-status", role: "status" }));
    document.querySelector("main").append(box);
  }

  function say(text, error = false) {
    $("edit-status").textContent = text;
    $("edit-status").classList.toggle("error", error);
    if (error) ed.errors.push(text);
  }

  async function call(url, body, type) {
    const r = await fetch(url, { method: "POST", headers: { "Content-Type": type }, body });
    const answer = await r.json();
    if (!r.ok) throw new Error(answer.error || r.statusText);
    return answer;
  }

  function loaded(source, what) {
    ed.source = source; ed.result = null;
    $("edit-source").textContent = `${what}: ${source.seconds.toFixed(1)} s`;
    run();
  }

  async function loadFile(file) {
    try {
      loaded(await call(`/api/edit/load?name=${encodeURIComponent(file.name)}`, file, "application/octet-stream"), file.name);
    } catch (e) { say(e.message, true); }
  }

  async function loadLive() {  // the frames the live view received, as the model made them
    const frames = app.frames.filter((f) => f.channels);
    if (frames.length < live.fps) { say("the live face has less than a second of frames yet", true); return; }
    const last = frames.at(-1);
    const body = { frames: frames.map((f) => live.channels.map((c) => f.channels[c])), stimulus: frames.map((f) => f.stimulus),
                   expressiveness: last.expressiveness, emotion: last.emotion, threshold: last.threshold, tolerance: last.tolerance };
    try { loaded(await call("/api/edit/live", JSON.stringify(body), "application/json"), "live face"); } catch (e) { say(e.message, true); }
  }

  async function run() {  // one edit at a time; a change made meanwhile runs once the current one is back
    if (!ed.source) return;
    if (ed.busy) { pending++; return; }
    ed.busy = true; pending = 0;
    say("editing …");
    const body = { source: ed.source.id, strength: Number($("edit-strength").value), expressiveness: $("edit-expr").value,
                   emotion: $("edit-emotion").value, keep: $("edit-keep").value.trim(), extend: Number($("edit-extend").value) || 0, seed };
    const t0 = performance.now();
    try {
      ed.result = await call("/api/edit/run", JSON.stringify(body), "application/json");
      ed.runs++;
      const r = ed.result;
      say(`edited in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${r.levels_rerun} of ${info.noise_levels} noise levels re-run, ` +
          `mean PSPI ${mean(r.pspi).toFixed(2)} (original ${mean(r.original).toFixed(2)})`);
      $("edit-time").max = r.frames - 1;
      show(Math.min(Math.max(ed.shown, 0), r.frames - 1));
      link();
    } catch (e) { say(e.message, true); }
    ed.busy = false;
    if (pending) run();
  }

  const mean = (a) => (a && a.length ? a.reduce((s, v) => s + v, 0) / a.length : 0);

  function show(i) {
    if (!ed.result) return;
    ed.shown = i;
    $("edit-time").value = i;
    $("edit-time-value").textContent = `${(i / live.fps).toFixed(1)} s`;
    $("edit-face").src = `/api/edit/${ed.result.id}/face/${i}.jpg`;
    plot();
  }

  function plot() {
    const c = $("edit-plot"), g = c.getContext("2d"), r = ed.result;
    g.clearRect(0, 0, c.width, c.height);
    if (!r) return;
    const n = r.frames, x = (i) => (i / Math.max(n - 1, 1)) * c.width, y = (p) => c.height - (p / 16) * (c.height - 4) - 2;
    g.fillStyle = "#e8efe4";
    for (const [a, b] of r.keep_s) g.fillRect(x(a * live.fps), 0, x(b * live.fps) - x(a * live.fps), c.height);
    for (const [series, colour] of [[r.original, "#999"], [r.pspi, "#b03a2e"]]) {
      g.strokeStyle = colour; g.lineWidth = 1.5; g.beginPath();
      series.forEach((p, i) => (i ? g.lineTo(x(i), y(p)) : g.moveTo(x(i), y(p))));
      g.stroke();
    }
    g.fillStyle = "#222"; g.fillRect(x(ed.shown) - 1, 0, 2, c.height);
  }

  function link() {
    const a = $("edit-download"), fmt = $("edit-format").value;
    if (!ed.result) return;
    a.href = `/api/edit/${ed.result.id}/download.${fmt}`;
    a.download = `edited.${fmt}`;
    a.classList.remove("disabled");
  }

  function play() {  // as fast as the server draws, at most the sequence's own frame rate
    playing = !playing;
    $("edit-play").textContent = playing ? "pause" : "play";
    const next = () => {
      if (!playing || !ed.result) return;
      const t = performance.now();
      $("edit-face").addEventListener("load", () => {
        const step = Math.max(1, Math.round((performance.now() - t) * live.fps / 1000));
        if (ed.shown + step >= ed.result.frames) { playing = false; $("edit-play").textContent = "play"; return; }
        show(ed.shown + step); next();
      }, { once: true });
    };
    if (playing) { show(ed.shown >= ed.result.frames - 1 ? 0 : ed.shown); next(); }
  }

  async function start() {
    build();
    [info, live] = await Promise.all([fetch("/api/edit/info").then((r) => r.json()), fetch("/api/info").then((r) => r.json())]);
    for (const e of live.emotions) $("edit-emotion").append(new Option(e, e));
    for (const f of info.formats) $("edit-format").append(new Option(f, f, f === "npz", f === "npz"));
    $("edit-strength").step = 1 / info.noise_levels;
    $("edit-face").width = 2 * info.size; $("edit-face").height = info.size;
    $("edit-face").addEventListener("load", () => { ed.drawn++; });
    $("edit-file").onchange = () => $("edit-file").files[0] && loadFile($("edit-file").files[0]);
    $("edit-live").onclick = loadLive;
    let debounce = 0;
    $("edit-strength").oninput = () => {
      $("edit-strength-value").textContent = Number($("edit-strength").value).toFixed(2);
      clearTimeout(debounce); debounce = setTimeout(run, 250);
    };
    for (const id of ["edit-expr", "edit-emotion", "edit-keep", "edit-extend"]) $(id).onchange = run;
    $("edit-redraw").onclick = () => { seed++; run(); };
    $("edit-time").oninput = () => show(Number($("edit-time").value));
    $("edit-play").onclick = play;
    $("edit-format").onchange = link;
  }
  start();
})();
