// Renders a terminal screen captured by tmux (a text file) to a PNG in Chromium, for the
// README's picture of `netmon top`.
//
//   node terminal.mjs SCREEN.txt OUT.png
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const [screen, out] = process.argv.slice(2);
const text = readFileSync(screen, "utf8");
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.setContent("<body style='margin:0;background:#111'><pre id='screen' " +
    "style='margin:0;padding:8px;display:inline-block;color:#ddd;background:#111;" +
    "font:13px/1.2 \"DejaVu Sans Mono\", monospace'></pre></body>");
  await page.evaluate((t) => { document.getElementById("screen").textContent = t; }, text);
  await page.locator("#screen").screenshot({ path: out });
} finally {
  await browser.close();
}
