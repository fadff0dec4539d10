// Drives the demo's edit panel in Debian's headless chromium (playwright-core). Usage:
//   node edit_e2e.mjs URL OUT_DIR SEQUENCE.npz   → prints one JSON object (tests/test_edit_web.py asserts)
// The live face runs; its last seconds are edited, previewed, scrubbed and downloaded; then a file is uploaded,
// edited with kept frames and downloaded; then a file that is not a sequence is uploaded.
// Every request the browser makes is recorded; anything not to 127.0.0.1 is aborted and reported.
import { chromium } from "playwright-core";

const [url, out, upload] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const result = { outside: [] };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-timer-throttling"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1060, height: 1300 }, deviceScaleFactor: 1, acceptDownloads: true });
  await context.route("**/*", (route) => {
    const u = new URL(route.request().url());
    if (u.hostname !== "127.0.0.1") { result.outside.push(u.href); return route.abort(); }
    return route.continue();
  });
  const page = await context.newPage();
  const data = (expr, arg) => page.evaluate(expr, arg);
  const edits = () => data(() => window.paindiffusion.edit.runs);
  const waitEdit = (n) => page.waitForFunction((k) => window.paindiffusion.edit.runs >= k && !window.paindiffusion.edit.busy, n, { timeout: 60000 });
  const imageShown = (i) => page.waitForFunction((k) => {
    const img = document.getElementById("edit-face");
    return window.paindiffusion.edit.shown === k && img.complete && img.naturalWidth > 0 && img.src.endsWith(`/face/${k}.jpg`);
  }, i, { timeout: 20000 });
  await page.goto(url);
  await page.waitForSelector("#edit-panel #edit-live");
  // hold "apply heat" for 2 s so that the live face shows some pain, then let 6 s of face arrive
  await page.waitForFunction(() => window.paindiffusion.received > 25, null, { timeout: 20000 });
  const box = await page.locator("#apply-heat").boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down(); await sleep(2000); await page.mouse.up();
  await sleep(4000);
  // 1. the live face: load, set strength and expressiveness with the controls, edit, preview, scrub, download
  await page.click("#edit-live");
  await page.waitForFunction(() => window.paindiffusion.edit.source !== null, null, { timeout: 20000 });
  await waitEdit(1);
  await page.selectOption("#edit-expr", "low");
  await waitEdit(2);
  await data(() => { const s = document.getElementById("edit-strength"); s.value = "0.75"; s.dispatchEvent(new Event("input")); });
  await waitEdit(3);
  result.live = await data(() => { const e = window.paindiffusion.edit; return { source: e.source, result: e.result }; });
  result.strength_shown = await page.textContent("#edit-strength-value");
  await imageShown(await data(() => window.paindiffusion.edit.shown));
  result.preview = await data(() => { const img = document.getElementById("edit-face"); return [img.naturalWidth, img.naturalHeight]; });
  const frame = Math.floor(result.live.result.frames / 2);
  await data((k) => { const t = document.getElementById("edit-time"); t.value = String(k); t.dispatchEvent(new Event("input")); }, frame);
  await imageShown(frame);
  result.scrubbed = await data(() => window.paindiffusion.edit.shown);
  if (out) {
    const fb = await page.locator("#edit-face").boundingBox();
    await page.screenshot({ path: `${out}/preview.png`, clip: { x: Math.round(fb.x), y: Math.round(fb.y), width: Math.round(fb.width), height: Math.round(fb.height) } });
    await page.locator("#edit-panel").screenshot({ path: `${out}/edit_panel.png` });
  }
  let [download] = await Promise.all([page.waitForEvent("download"), page.click("#edit-download")]);
  await download.saveAs(`${out}/live_edit.npz`);
  result.live_download = download.suggestedFilename();
  // 2. an uploaded file, edited with kept frames, downloaded as a facs.csv and as an npz
  const before = await edits();
  await page.fill("#edit-keep", "0-2,6-8");
  await page.setInputFiles("#edit-file", upload);
  await waitEdit(before + 1);
  result.upload = await data(() => window.paindiffusion.edit.result);
  await page.selectOption("#edit-format", "facs.csv");
  [download] = await Promise.all([page.waitForEvent("download"), page.click("#edit-download")]);
  await download.saveAs(`${out}/upload_edit.facs.csv`);
  await page.selectOption("#edit-format", "npz");
  [download] = await Promise.all([page.waitForEvent("download"), page.click("#edit-download")]);
  await download.saveAs(`${out}/upload_edit.npz`);
  // 3. a bad keep range, then a file that is not a sequence: one line each on the panel, the last edit stays
  const errors0 = (await data(() => window.paindiffusion.edit.errors)).length;
  await page.fill("#edit-keep", "0-99");
  await page.dispatchEvent("#edit-keep", "change");
  await page.waitForFunction((n) => window.paindiffusion.edit.errors.length > n, errors0, { timeout: 20000 });
  await page.fill("#edit-keep", "");
  await page.setInputFiles("#edit-file", { name: "notes.csv", mimeType: "text/csv", buffer: Buffer.from("a,b\n1,2\n") });
  await page.waitForFunction((n) => window.paindiffusion.edit.errors.length > n + 1, errors0, { timeout: 20000 });
  result.errors = await data(() => window.paindiffusion.edit.errors);
  result.status = await page.textContent("#edit-status");
  result.live_errors = await data(() => window.paindiffusion.errors);
  result.live_frames = await data(() => window.paindiffusion.received);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
