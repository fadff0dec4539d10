// Takes a perceptual study as a scripted participant in Debian's headless chromium (playwright-core), with touch
// and keyboard: consent, questions, every trial (the LEFT clip every time, ratings 1-5 in turn, a comment on the
// overall choice), a reload halfway that must resume where it stopped. Usage:
//   node study.mjs URL OUT_DIR   → prints one JSON object (tests/test_study_web.py asserts); screenshots in OUT_DIR
// Every request the browser makes is recorded; anything not to 127.0.0.1 is aborted and reported.
import { chromium } from "playwright-core";

const [url, out] = process.argv.slice(2);
const result = { outside: [], requests: 0, given: [], shots: [], resumed: null };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--autoplay-policy=no-user-gesture-required"],
});
const shot = async (page, name) => { if (out) { await page.screenshot({ path: `${out}/${name}.png` }); result.shots.push(name); } };
try {
  const context = await browser.newContext({ viewport: { width: 1000, height: 760 }, deviceScaleFactor: 1, hasTouch: true });
  await context.route("**/*", (route) => {
    const u = new URL(route.request().url());
    result.requests++;
    if (u.protocol !== "blob:" && u.hostname !== "127.0.0.1") { result.outside.push(u.href); return route.abort(); }
    return route.continue();
  });
  const page = await context.newPage();
  page.on("pageerror", (e) => result.outside.push(`page error: ${e.message}`));
  const screen = () => page.evaluate(() => window.study.screen);
  await page.goto(url);
  await page.waitForFunction(() => window.study && window.study.screen === "consent");
  await shot(page, "study_consent");
  await page.locator("#consent").tap();
  await page.locator("#consent-next").tap();
  await page.selectOption("#role", "nurse");
  await page.fill("#years", "7");
  await page.selectOption("#frequency", "weekly");
  await shot(page, "study_questions");
  await page.locator("#questions-next").tap();
  let k = 0;
  const seenBlocks = new Set();
  for (;;) {
    await page.waitForFunction(() => ["intro", "trial", "done"].includes(window.study.screen) &&
      (window.study.screen !== "trial" || (window.study.current && window.study.current.ready)), null, { timeout: 60000 });
    const s = await screen();
    if (s === "done") break;
    if (s === "intro") {
      if (k === 0) await shot(page, "study_intro");
      await page.keyboard.press("Enter");
      continue;
    }
    const t = await page.evaluate(() => ({ trial: window.study.current.trial.trial, kind: window.study.current.kind,
                                           block: window.study.current.trial.block }));
    if (!seenBlocks.has(t.block)) { seenBlocks.add(t.block); await shot(page, `study_${t.block}`); }
    const byKey = k % 2 === 0;  // every other answer by keyboard, the others by touch
    let answer;
    if (t.kind === "likert") {
      answer = (k % 5) + 1;
      if (byKey) await page.keyboard.press(String(answer)); else await page.locator(`#rate-${answer}`).tap();
    } else if (t.kind === "2afc") {
      answer = "left";
      if (byKey) await page.keyboard.press("f"); else await page.locator("#pick-left").tap();
    } else {
      answer = "left";
      await page.locator("#pick-left").tap();
      await page.fill("#comment", "more mouth and nose-wrinkle detail");
      await page.keyboard.press("Control+Enter");
    }
    await page.waitForFunction((n) => window.study.stored >= n, k + 1 - (result.resumed ? result.resumed.stored_before : 0), { timeout: 30000 });
    result.given.push({ trial: t.trial, block: t.block, answer });
    k++;
    if (k === 4) {  // a reload halfway: the page resumes at the first unanswered trial
      await page.reload();
      await page.waitForFunction(() => window.study && ["intro", "trial"].includes(window.study.screen), null, { timeout: 30000 });
      result.resumed = await page.evaluate(() => ({ answered: window.study.answered.size, index: window.study.index,
                                                    progress: document.getElementById("progress-text").textContent }));
      result.resumed.stored_before = 4;
    }
  }
  await shot(page, "study_done");
  result.participant = await page.evaluate(() => window.study.session.participant);
  result.errors = await page.evaluate(() => window.study.errors);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
