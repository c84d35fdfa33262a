#!/usr/bin/env node
// Drive the master's dashboard (gamenet/admin/dashboard) in Debian's Chromium,
// one command at a time, for tests/test_dashboard.py.
//
//   node dashboard.js
//
// Reads one JSON command per line on stdin and answers each with one JSON
// line on stdout, {"ok": true|false, "shown": <what the page shows>, ...}:
//   {"do": "open", "url": URL}             load URL (a #token=... included)
//   {"do": "token", "value": TOKEN}        type TOKEN into the token form and submit it
//   {"do": "click", "server": ID}          click a server's name in the table
//   {"do": "click", "selector": CSS}       click an element
//   {"do": "wait", "until": EXPR, "what": TEXT, "seconds": N}
//                                          poll until EXPR (JavaScript over the
//                                          snapshot `s`) is true; fails after N s
//   {"do": "screenshot", "path": PATH}     save the whole page as PNG
//   {"do": "close"}                        close the browser and exit 0
// "shown" is a snapshot of the page read from its element ids and data
// attributes; "errors" lists uncaught page errors so far. A command that fails
// answers ok false with "error". The browser is /usr/bin/chromium (or
// $CHROMIUM) with a fresh profile; playwright-core never downloads one.
"use strict";

const readline = require("readline");
const { chromium } = require("playwright-core");

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

let browser = null;
let page = null;
const errors = [];

function answer(result) {
  console.log(JSON.stringify({ ...result, errors }));
}

// What the page shows.
function snapshot() {
  return page.evaluate(() => {
    const $ = (id) => document.getElementById(id);
    const shown = (el) => Boolean(el) && !el.hidden && el.getClientRects().length > 0;
    const cells = (row) => {
      const values = {}, text = {};
      for (const cell of row.querySelectorAll("[data-field]")) {
        const raw = cell.dataset.value;
        let value = raw === "" ? null : raw;  // numbers and booleans as such, words as strings
        try { value = JSON.parse(raw); } catch (e) { /* a word */ }
        values[cell.dataset.field] = value;
        text[cell.dataset.field] = cell.textContent;
      }
      return { values, text };
    };
    return {
      url: location.href,
      stored: sessionStorage.getItem("gamenet.adminToken"),
      form: shown($("token-form")),
      board: shown($("board")),
      stale: $("board").classList.contains("stale"),
      message: shown($("message")) ? $("message").textContent : "",
      header: {
        name: $("cluster-name").textContent, master: $("master").textContent, updated: $("updated").textContent,
      },
      servers: [...document.querySelectorAll("#servers tbody tr")].map((row) => ({
        id: row.dataset.server,
        selected: row.classList.contains("selected"),
        ...cells(row),
      })),
      routes: {
        shown: shown($("routes-section")),
        hint: shown($("select-hint")),
        server: $("routes-server").textContent,
        note: shown($("routes-note")) ? $("routes-note").textContent : "",
        rows: [...document.querySelectorAll("#routes tbody tr")].map((row) => ({
          route: row.dataset.route,
          ...cells(row),
        })),
      },
      plotsHeading: $("plots-heading").textContent,
      legend: [...document.querySelectorAll("#legend li")].map((li) => li.textContent),
      plots: Object.fromEntries([...document.querySelectorAll("canvas[data-field]")].map((c) => [c.dataset.field, {
        samples: Number(c.dataset.samples || 0),
        latest: JSON.parse(c.dataset.latest || "{}"),
        label: c.getAttribute("aria-label"),
      }])),
    };
  });
}

async function wait(until, what, seconds) {
  const predicate = new Function("s", `return (${until});`);
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const s = await snapshot();
    if (predicate(s)) return s;
    if (Date.now() > deadline) {
      const e = new Error(`the page never showed ${what} within ${seconds} s`);
      e.shown = s;
      throw e;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function run(command) {
  switch (command.do) {
    case "open":
      if (browser === null) {
        browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30000 });
        const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
        page = await context.newPage();
        page.on("pageerror", (e) => errors.push(String(e)));
      }
      await page.goto(command.url, { timeout: 20000 });
      return { shown: await snapshot() };
    case "token":
      await page.fill("#token", command.value);
      await page.click("#token-form button[type=submit]");
      return { shown: await snapshot() };
    case "click":
      await page.click(command.selector || `#servers tbody tr[data-server="${command.server}"] button.server`);
      return { shown: await snapshot() };
    case "wait":
      return { shown: await wait(command.until, command.what, command.seconds || 10) };
    case "screenshot":
      await page.screenshot({ path: command.path, fullPage: true, timeout: 10000 });
      return { path: command.path, shown: await snapshot() };
    case "close":
      if (browser !== null) await browser.close();
      answer({ ok: true });
      process.exit(0);
    default:
      throw new Error(`unknown command ${JSON.stringify(command)}`);
  }
}

async function main() {
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let result;
    try {
      result = { ok: true, ...(await run(JSON.parse(line))) };
    } catch (e) {
      result = { ok: false, error: e.message, shown: e.shown || (page ? await snapshot().catch(() => null) : null) };
    }
    answer(result);
  }
  if (browser !== null) await browser.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
