// The participant's page: consent → questions → preload every clip → blocks of trials → done.
// Every answer is POSTed the moment it is given; the session token sits in localStorage, so a reload or a
// reopened tab resumes at the first unanswered trial. Keys: F / ← left, J / → right, 1-5 ratings, R replay,
// Enter to continue. Buttons work with mouse and touch. window.study exposes the state to the browser test.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { screen: null, info: null, session: null, trials: [], answered: new Set(), blobs: {}, index: 0,
                errors: [], stored: 0, current: null };
window.study = state;
let storeKey = null;

function show(name) {
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== `screen-${name}`;
  state.screen = name;
  $("message").textContent = "";
}
function say(text) { $("message").textContent = text; if (text) state.errors.push(text); }
function progress() {
  const n = state.trials.length, k = state.answered.size;
  $("progress").hidden = n === 0;
  $("progress-bar").style.width = `${n ? (100 * k) / n : 0}%`;
  $("progress-text").textContent = `${Math.min(k + 1, n)} of ${n}`;
}

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (state.session) headers["X-Study-Session"] = state.session.token;
  const r = await fetch(path, { ...options, headers });
  let body = {};
  try { body = await r.json(); } catch (e) { /* an empty or non-JSON body */ }
  return { status: r.status, body };
}

async function start() {
  const r = await api("/api/study");
  state.info = r.body;
  storeKey = `paindiffusion-study:${state.info.study}`;
  const saved = JSON.parse(localStorage.getItem(storeKey) || "null");
  if (saved) {
    state.session = saved;
    if (await resume()) return;
    localStorage.removeItem(storeKey);
    state.session = null;
  }
  const box = $("consent-text");
  for (const p of state.info.consent) { const el = document.createElement("p"); el.textContent = p; box.append(el); }
  $("code-box").hidden = !state.info.code_required;
  for (const [id, list] of [["role", state.info.roles], ["frequency", state.info.frequencies]]) {
    for (const v of list) { const o = document.createElement("option"); o.value = o.textContent = v; $(id).append(o); }
  }
  $("years").max = state.info.max_years;
  show("consent");
}

$("consent-next").onclick = () => {
  if (!$("consent").checked) return say("Please tick the box to agree, or close this page.");
  if (state.info.code_required && !$("code").value.trim()) return say("Please type the access code.");
  show("questions");
};

$("questions-next").onclick = async () => {
  const years = Number($("years").value);
  if (!$("role").value || !$("frequency").value || $("years").value === "" || !(years >= 0)) {
    return say("Please answer all three questions.");
  }
  const r = await api("/api/participants", { method: "POST", body: JSON.stringify({
    consent: true, code: $("code").value.trim() || null, role: $("role").value, years, frequency: $("frequency").value }) });
  if (r.status !== 201) {
    if (r.status === 403) show("consent");
    return say(r.body.error || `the server refused (${r.status})`);
  }
  state.session = { participant: r.body.participant, token: r.body.session };
  localStorage.setItem(storeKey, JSON.stringify(state.session));
  await resume();
};

async function resume() {
  const r = await api("/api/session");
  if (r.status !== 200) return false;
  state.trials = r.body.trials;
  state.blocks = r.body.blocks;
  state.answered = new Set(r.body.answered);
  progress();
  await preload();
  state.index = state.trials.findIndex((t) => !state.answered.has(t.trial));
  next(true);
  return true;
}

async function preload() {
  show("loading");
  const urls = [...new Set(state.trials.filter((t) => !state.answered.has(t.trial)).flatMap((t) => t.clips))];
  let done = 0;
  for (const url of urls) {
    if (!state.blobs[url]) {
      for (;;) {
        try {
          const r = await fetch(url, { headers: { "X-Study-Session": state.session.token } });
          if (!r.ok) throw new Error(`${r.status}`);
          state.blobs[url] = URL.createObjectURL(await r.blob());
          break;
        } catch (e) {
          say(`Loading paused (${e.message}); retrying…`);
          await new Promise((res) => setTimeout(res, 1000));
        }
      }
    }
    done++;
    $("loading-bar").style.width = `${(100 * done) / urls.length}%`;
    $("loading-text").textContent = `${done} of ${urls.length}`;
  }
}

function next(first = false) {
  if (state.index < 0 || state.index >= state.trials.length) {
    $("done-id").textContent = state.session.participant;
    progress();
    return show("done");
  }
  const t = state.trials[state.index];
  const prev = first ? null : state.trials[state.index - 1];
  if (!prev || prev.block !== t.block) {
    const b = state.blocks[t.block];
    $("intro-title").textContent = `Part ${Object.keys(state.blocks).indexOf(t.block) + 1}: ${b.question}`;
    $("intro-text").textContent = b.intro;
    show("intro");
    return;
  }
  trial(t);
}
$("intro-start").onclick = () => trial(state.trials[state.index]);

function trial(t) {
  const b = state.blocks[t.block];
  const cur = { trial: t, kind: b.kind, ready: false, choice: null, sending: false };
  state.current = cur;
  show("trial");
  progress();
  $("question").textContent = b.question;
  const clips = $("clips");
  clips.replaceChildren();
  const videos = t.clips.map((url, i) => {
    const fig = document.createElement("figure");
    const v = document.createElement("video");
    Object.assign(v, { src: state.blobs[url], muted: true, playsInline: true, preload: "auto" });
    fig.append(v);
    if (t.clips.length > 1) {
      const cap = document.createElement("figcaption");
      cap.textContent = i === 0 ? "Left" : "Right";
      fig.append(cap);
    }
    clips.append(fig);
    return v;
  });
  cur.videos = videos;
  const answers = $("answers");
  answers.replaceChildren();
  answers.className = b.kind === "likert" ? "likert" : "";
  if (b.kind === "likert") {
    for (let k = 1; k <= 5; k++) {
      const label = k === 1 ? b.labels[0] : k === 5 ? b.labels[1] : "";
      answers.append(button(`${k}`, label, () => answer(k), `rate-${k}`));
    }
  } else {
    answers.append(button("Left", "F or ←", () => pick("left"), "pick-left"));
    answers.append(button("Right", "J or →", () => pick("right"), "pick-right"));
  }
  $("comment-box").hidden = b.kind !== "choice";
  $("comment").value = "";
  $("choice-submit").disabled = true;
  enable(false);
  $("hint").textContent = "Watch the videos to the end; then answer.";
  play(cur);
}

function button(text, small, onclick, id) {
  const el = document.createElement("button");
  el.type = "button";
  el.id = id;
  el.innerHTML = `${text}<small></small>`;
  el.querySelector("small").textContent = small;
  el.onclick = onclick;
  return el;
}

function enable(on) { for (const el of $("answers").querySelectorAll("button")) el.disabled = !on; }

function play(cur) {
  let ended = 0;
  for (const v of cur.videos) {
    v.currentTime = 0;
    v.onended = () => {
      if (++ended === cur.videos.length && state.current === cur && !cur.ready) {
        cur.ready = true;
        enable(true);
        $("hint").textContent = cur.kind === "likert" ? "Answer with a button or the keys 1-5." : "";
      }
    };
    v.play().catch((e) => say(`cannot play the video (${e.message})`));
  }
  if (cur.t0 === undefined) { cur.t0 = performance.now(); cur.shownAt = new Date().toISOString(); }
}
$("replay").onclick = () => state.current && play(state.current);

function pick(side) {
  const cur = state.current;
  if (!cur || !cur.ready || cur.sending) return;
  if (cur.kind === "2afc") return answer(side);
  cur.choice = side;
  for (const el of $("answers").querySelectorAll("button")) el.classList.toggle("chosen", el.id === `pick-${side}`);
  $("choice-submit").disabled = false;
}
$("choice-submit").onclick = () => state.current && state.current.choice && answer(state.current.choice);

async function answer(value) {
  const cur = state.current;
  if (!cur || !cur.ready || cur.sending) return;
  cur.sending = true;
  enable(false);
  const body = { participant: state.session.participant, trial: cur.trial.trial, answer: value,
                 rt_ms: Math.round(performance.now() - cur.t0), shown_at: cur.shownAt, answered_at: new Date().toISOString() };
  if (cur.kind === "choice") body.comment = $("comment").value;
  for (;;) {
    let r;
    try { r = await api("/api/answers", { method: "POST", body: JSON.stringify(body) }); } catch (e) { r = null; }
    if (r && (r.status === 201 || r.status === 409)) break;  // 409: stored before the connection broke
    if (r && r.status >= 400 && r.status < 500) { say(r.body.error || `refused (${r.status})`); cur.sending = false; enable(true); return; }
    say("The server cannot be reached; your answer is kept and sent again…");
    await new Promise((res) => setTimeout(res, 1000));
  }
  $("message").textContent = "";
  state.answered.add(cur.trial.trial);
  state.stored++;
  state.index = state.trials.findIndex((t) => !state.answered.has(t.trial));
  state.current = null;
  next();
}

document.addEventListener("keydown", (e) => {
  if (e.repeat) return;
  const inText = e.target instanceof HTMLTextAreaElement || e.target instanceof HTMLInputElement;
  if (state.screen === "intro" && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); $("intro-start").click(); return; }
  if (state.screen !== "trial" || !state.current) return;
  const cur = state.current;
  if (e.key === "Enter" && cur.kind === "choice" && (!inText || e.ctrlKey)) { e.preventDefault(); $("choice-submit").click(); return; }
  if (inText) return;
  const k = e.key.toLowerCase();
  if (k === "r") play(cur);
  else if (cur.kind === "likert" && /^[1-5]$/.test(k)) answer(Number(k));
  else if (cur.kind !== "likert" && (k === "f" || k === "arrowleft")) pick("left");
  else if (cur.kind !== "likert" && (k === "j" || k === "arrowright")) pick("right");
});

start().catch((e) => say(`The study page could not start (${e.message}); reload the page.`));
