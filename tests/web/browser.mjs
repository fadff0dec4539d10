// The one set-up of Debian's headless chromium for the page tests: launched without sandbox or GPU and
// without background throttling (a hidden tab must keep its frame rate), and a context in which every
// request that does not go to this machine is aborted and recorded in `outside`.
import { chromium } from "playwright-core";

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-timer-throttling",
           "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows"],
  });
}

export async function localContext(browser, outside, hosts = ["127.0.0.1"]) {
  const context = await browser.newContext({ viewport: { width: 1060, height: 900 }, deviceScaleFactor: 1 });
  let requests = 0;
  await context.route("**/*", (route) => {
    const u = new URL(route.request().url());
    requests++;
    if (!hosts.includes(u.hostname)) { outside.push(u.href); return route.abort(); }
    return route.continue();
  });
  context.requests = () => requests;
  return context;
}
