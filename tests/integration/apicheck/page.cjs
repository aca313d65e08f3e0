// Drives the status page in Debian's chromium with playwright-core
// (tests/integration/test_api.py): reads {url, chromium, read, operate,
// out} as JSON on stdin, prints one JSON result on stdout.
"use strict";
const { chromium } = require("playwright-core");

async function main() {
  const cfg = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const result = { steps: [], console_errors: [] };
  const browser = await chromium.launch({
    executablePath: cfg.chromium, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    page.on("console", (m) => { if (m.type() === "error") result.console_errors.push(m.text()); });
    page.on("pageerror", (e) => result.console_errors.push(String(e)));
    const api = async (method, path, token) => {
      const r = await fetch(cfg.url + path, { method, headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" }, body: method === "POST" ? "{}" : undefined });
      return { status: r.status, body: await r.json() };
    };

    // without a token: the page asks for one, shows nothing
    await page.goto(cfg.url + "/");
    await page.waitForFunction(() => document.querySelector("#daemon").textContent.includes("token"));
    result.steps.push("no_token_no_data");
    result.rows_without_token = await page.locator("tr[data-task]").count();

    // a read token: tasks and servers, no buttons
    await page.fill("#token", cfg.read);
    await page.click("#save-token");
    await page.waitForSelector("tr[data-task='hello']");
    await page.waitForSelector("tr[data-server='web-1']");
    result.server_health = await page.locator("tr[data-server='web-1'] td.health").textContent();
    result.server_response = await page.locator("tr[data-server='web-1'] td").nth(3).textContent();
    result.read_buttons = await page.locator("button.ack, button.recover").count();
    result.steps.push("read_token_shows_tasks_and_servers");

    // a run finishes: the page shows it on its own
    const t = await api("POST", "/api/v1/tasks/hello/trigger", cfg.operate);
    result.triggered = t.body.run_id;
    await page.waitForSelector(`tr[data-run='${t.body.run_id}'][data-status='success']`, { timeout: 20000 });
    result.steps.push("updates_when_a_run_finishes");
    await page.click(`tr[data-run='${t.body.run_id}']`);
    await page.waitForFunction(() => document.querySelector("#trace").textContent.includes("hello_complete"));
    result.steps.push("trace_shown");
    await page.screenshot({ path: cfg.out + "/status-desktop.png", fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(100);
    result.phone_overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await page.screenshot({ path: cfg.out + "/status-phone.png", fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });

    // an operate token: ack and recover buttons that work
    await page.evaluate((tok) => localStorage.setItem("fk_token", tok), cfg.operate);
    await page.reload();
    await page.waitForSelector("tr[data-incident] button.ack");
    await page.click("tr[data-incident] button.ack");
    await page.waitForFunction(() => !document.querySelector("tr[data-incident] button.ack") && document.querySelector("tr[data-incident]").textContent.includes("acknowledged"));
    result.steps.push("ack_works");
    await page.click("tr[data-incident] button.recover");
    await page.waitForFunction(() => [...document.querySelectorAll("tr[data-run]")].some((r) => r.children[1].textContent === "recover"), null, { timeout: 20000 });
    result.steps.push("recover_works");
    result.message = await page.locator("#message").textContent();
    await page.screenshot({ path: cfg.out + "/status-operate.png", fullPage: true });
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e) + "\n"); process.exit(1); });
