// Drives the live demo page in Debian's headless chromium (playwright-core). Usage:
//   node e2e.mjs URL OUT_DIR        → prints one JSON object of measurements (tests/test_live_web.py asserts)
// Every request the browser makes is recorded; anything not to 127.0.0.1 is aborted and reported.
import { launch, localContext } from "./browser.mjs";

const [url, out] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const result = { outside: [], requests: 0 };
const browser = await launch();
try {
  const context = await localContext(browser, result.outside);
  context.on("websocket", (ws) => { const u = new URL(ws.url()); if (u.hostname !== "127.0.0.1") result.outside.push(ws.url()); });
  const page = await context.newPage();
  const data = (expr) => page.evaluate(expr);
  await page.goto(url);
  await page.waitForFunction(() => window.paindiffusion && window.paindiffusion.received > 25, null, { timeout: 20000 });
  // frame rate: frames received over 3 s
  let n0 = await data(() => window.paindiffusion.received); let t0 = Date.now();
  await sleep(3000);
  result.fps = ((await data(() => window.paindiffusion.received)) - n0) / ((Date.now() - t0) / 1000);
  // the ranges the page shows, as the browser rendered them (they come from /api/info)
  result.sliders = await data(() => Object.fromEntries(["expressiveness", "heat"].map((id) => {
    const s = document.getElementById(id); return [id, [Number(s.min), Number(s.max)]]; })));
  const series = () => data(() => window.paindiffusion.frames.slice(-200).map((f) => [f.frame, f.stimulus, f.pspi, f.emotion]));
  result.before = await series();
  // hold "apply heat" with the mouse for 3 s, then release for 5 s
  const box = await page.locator("#apply-heat").boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  const mark0 = await data(() => window.paindiffusion.frames.at(-1).frame);
  await page.mouse.down();
  await sleep(3000);
  const mark1 = await data(() => window.paindiffusion.frames.at(-1).frame);
  await page.mouse.up();
  await sleep(5000);
  result.heat = { press: mark0, release: mark1, frames: await series() };
  // the space bar holds it too
  await page.keyboard.down("Space"); await sleep(800);
  result.space_heat = await data(() => window.paindiffusion.heat);
  await page.keyboard.up("Space");
  // change emotion
  await page.selectOption("#emotion", "Happiness");
  await sleep(1500);
  result.emotion = await data(() => window.paindiffusion.frames.slice(-5).map((f) => f.emotion));
  // the patient's pain threshold (shown for models that read the pain range only)
  result.pain_range_shown = await page.isVisible("#pain-range");
  if (result.pain_range_shown) {
    await page.fill("#threshold", "44.2");
    await page.dispatchEvent("#threshold", "change");
    await sleep(1500);
  }
  result.threshold = await data(() => window.paindiffusion.frames.slice(-5).map((f) => f.threshold));
  // "new patient": a fresh person, the stream goes on (same controls)
  const r0 = await data(() => window.paindiffusion.received);
  await page.click("#new-patient");
  await sleep(2000);
  result.after_new_patient = { frames: (await data(() => window.paindiffusion.received)) - r0,
                               emotion: await data(() => window.paindiffusion.frames.at(-1).emotion) };
  result.latencies = await data(() => window.paindiffusion.latencies);
  if (out) await page.screenshot({ path: `${out}/page.png`, fullPage: true });
  // freeze the display and capture one known frame: its channels and the face canvas's pixels
  await data(() => { window.paindiffusion.paused = true; });
  await sleep(300);
  result.shown = await data(() => window.paindiffusion.shown);
  const fb = await page.locator("#face").boundingBox();
  result.face_box = fb;
  if (out) await page.screenshot({ path: `${out}/face.png`,
    clip: { x: Math.round(fb.x), y: Math.round(fb.y), width: Math.round(fb.width), height: Math.round(fb.height) } });
  await data(() => { window.paindiffusion.paused = false; });
  result.errors = await data(() => window.paindiffusion.errors);
  await page.close();
  // four tabs at once, then one closes mid-stream
  const tabs = [];
  for (let k = 0; k < 4; k++) { const p = await context.newPage(); await p.goto(url); tabs.push(p); }
  await Promise.all(tabs.map((p) => p.waitForFunction(() => window.paindiffusion && window.paindiffusion.received > 25, null, { timeout: 30000 })));
  const counts = () => Promise.all(tabs.map((p) => p.isClosed() ? null : p.evaluate(() => window.paindiffusion.received)));
  let c0 = await counts(); t0 = Date.now();
  await sleep(4000);
  let c1 = await counts(); let dt = (Date.now() - t0) / 1000;
  result.four_tabs_fps = c1.map((c, i) => (c - c0[i]) / dt);
  await tabs[1].close();
  c0 = await counts(); t0 = Date.now();
  await sleep(3000);
  c1 = await counts(); dt = (Date.now() - t0) / 1000;
  result.after_close_fps = c1.map((c, i) => (c == null ? null : (c - c0[i]) / dt));
  result.lags = await Promise.all(tabs.filter((p) => !p.isClosed()).map((p) => p.evaluate(() => Math.max(...window.paindiffusion.frames.slice(-50).map((f) => f.lag_ms)))));
  result.requests = context.requests();
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
