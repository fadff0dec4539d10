// A page served from ANOTHER origin on this machine tries to use the demo while the demo's own page runs. Usage:
//   node origin.mjs DEMO_URL FOREIGN_URL   → prints one JSON object (tests/test_live_web.py asserts)
// The foreign page (foreign.html, served by the test) opens the demo's WebSocket every 200 ms under both
// loopback names and counts what opens; the same-origin tab's frame rate is measured meanwhile.
import { launch, localContext } from "./browser.mjs";

const [demo, foreign] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const result = { outside: [] };
const browser = await launch();
try {
  const context = await localContext(browser, result.outside, ["127.0.0.1", "localhost"]);
  const evil = await context.newPage();
  await evil.goto(foreign);
  const page = await context.newPage();
  await page.goto(demo);
  await page.waitForFunction(() => window.paindiffusion && window.paindiffusion.received > 25, null, { timeout: 30000 });
  const n0 = await page.evaluate(() => window.paindiffusion.received);
  const t0 = Date.now();
  await sleep(4000);
  result.fps = ((await page.evaluate(() => window.paindiffusion.received)) - n0) / ((Date.now() - t0) / 1000);
  result.foreign = await evil.evaluate(() => window.attack);
  result.stats = await page.evaluate(() => fetch("/api/stats").then((r) => r.json()));  // patients while both run
  // the heat slider's top, above the patient's tolerance: the page says how it is felt
  await page.evaluate(() => { const h = document.getElementById("heat"); h.value = h.max; h.dispatchEvent(new Event("input")); });
  await sleep(1500);
  result.notice = await page.evaluate(() => document.getElementById("notice").textContent);
  result.errors = await page.evaluate(() => window.paindiffusion.errors);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
