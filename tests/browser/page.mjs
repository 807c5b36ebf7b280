// Opens the agent's live page in Debian's Chromium as a person would, and reports what it
// showed as JSON on stdout; tests/tests/live_views.rs judges the report.
//
//   node page.mjs URL USER PASSWORD INTERFACE SCREENSHOT_DIR [FILTER...]
//
// It waits until INTERFACE is listed with traffic, selects it for the charts, filters the
// table by its name and by each FILTER, and takes screenshots at a desktop and at a phone's
// width.
import { chromium } from "playwright-core";

const [url, username, password, iface, shots, ...filters] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const report = { requests: [], errors: [] };
try {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    httpCredentials: { username, password },
    viewport: { width: 1280, height: 1600 },
  });
  const page = await context.newPage();
  page.on("request", (request) => report.requests.push(request.url()));
  page.on("console", (message) => {
    if (message.type() === "error") report.errors.push(message.text());
  });
  page.on("pageerror", (error) => report.errors.push(String(error)));
  await page.goto(url);

  // Listed, with a rate that is not zero (the test's traffic runs all along).
  await page.waitForFunction((name) => {
    const tr = [...document.querySelectorAll("#interfaces tbody tr")].find((r) => r.dataset.interface === name);
    return tr && !["-", "0"].includes(tr.children[2].textContent);
  }, iface, { timeout: 30000 });
  report.row = await page.evaluate((name) => {
    const tr = [...document.querySelectorAll("#interfaces tbody tr")].find((r) => r.dataset.interface === name);
    return [...tr.children].map((td) => td.textContent);
  }, iface);

  // Select it: the charts follow.
  await page.click(`#interfaces tbody tr[data-interface="${iface}"]`);
  await page.waitForFunction((name) => document.getElementById("chart-subject").textContent === name, iface);
  await page.waitForTimeout(2500);
  report.charts = await page.locator(".uplot canvas").count();
  report.chart_subject = await page.textContent("#chart-subject");

  report.interfaces = await page.$$eval("#interfaces tbody tr td.name", (tds) => tds.map((td) => td.textContent));
  report.interface_count = await page.textContent("#interface-count");
  report.interface_more = await page.textContent("#interface-more");
  report.processes = await page.$$eval("#processes tbody tr td.name", (tds) => tds.map((td) => td.textContent));
  await page.waitForFunction(() => document.querySelectorAll("#peers tbody tr").length > 0);
  report.peers = await page.$$eval("#peers tbody tr td.name", (tds) => tds.map((td) => td.textContent));
  // Each peer row's open connections, by the column the header names "open".
  report.peers_open = await page.$$eval("#peers", ([table]) => {
    const column = [...table.querySelectorAll("thead th")].findIndex((th) => th.textContent === "open");
    return [...table.querySelectorAll("tbody tr")].map((tr) => tr.children[column].textContent);
  });
  await page.waitForFunction(() => document.querySelectorAll("#pressure tbody tr").length > 0);
  report.pressure = await page.$$eval("#pressure tbody tr td.name", (tds) => tds.map((td) => td.textContent));
  report.probes = await page.$$eval("#probes tbody tr", (trs) => trs.map((tr) => tr.textContent));
  report.markup = await page.evaluate(() => document.querySelectorAll("main b, main i, main script").length);
  report.connections = await page.$$eval("#connections tbody tr", (trs) => trs.length);
  report.listening = await page.$$eval("#listening tbody tr", (trs) => trs.length);
  await page.screenshot({ path: `${shots}/page.png`, fullPage: true });

  report.filtered = {};
  for (const term of [iface, ...filters]) {
    await page.fill("#filter", term);
    report.filtered[term] = await page.$$eval("#interfaces tbody tr td.name", (tds) => tds.map((td) => td.textContent));
  }

  await page.fill("#filter", "");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(500);
  report.narrow = await page.evaluate(() => ({
    width: window.innerWidth,
    scroll_width: document.documentElement.scrollWidth,
  }));
  await page.screenshot({ path: `${shots}/page-narrow.png` });
} catch (error) {
  report.failure = String(error);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report) + "\n");
