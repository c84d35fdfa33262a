#!/usr/bin/env node
// Drive the chat example's page (examples/chat/web) in Debian's Chromium.
//
//   node chat.js PAGE_URL SCREENSHOT_DIR [--screenshots]
//
// Two users, "ann" and "bob", join room "r1" from two browser contexts; ann
// talks to everyone, bob whispers to ann, both keep their connections alive
// with heartbeats (the cluster should use a heartbeat of 1-3 s), ann's
// WebSocket is killed by the test (the driver prints {"request": "drop",
// "user": "ann"} and waits for a line on stdin) and her page resumes while
// bob talks, a second "ann" is refused, bob leaves. Prints one JSON line per check:
// {"check", "ok", ...details}. Stops at the first failed check, saves a
// screenshot of every open page into SCREENSHOT_DIR and exits 1; exits 2 past
// the 60-second deadline. With --screenshots, also saves the pages after the
// private message and after the refused duplicate.
// The browser is /usr/bin/chromium (or $CHROMIUM), launched with a fresh
// temporary profile; playwright-core never downloads one.
"use strict";

const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const [url, shotDir, ...flags] = process.argv.slice(2);
if (!url || !shotDir) {
  console.error("usage: node chat.js PAGE_URL SCREENSHOT_DIR [--screenshots]");
  process.exit(64);
}
const KEEP_SHOTS = flags.includes("--screenshots");
const DEADLINE_MS = 60000;
const WAIT_MS = 10000;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

let browser = null;
const pages = new Map();  // label -> page, while open
const problems = [];      // page errors and console errors, by page

function report(check, ok, details = {}) {
  console.log(JSON.stringify({ check, ok, ...details }));
}

class CheckFailed extends Error {
  constructor(message, details) { super(message); this.details = details; }
}

async function screenshots(suffix = "") {
  fs.mkdirSync(shotDir, { recursive: true });
  const paths = [];
  for (const [label, page] of pages) {
    const file = path.join(shotDir, `${label}${suffix}.png`);
    try {
      await page.screenshot({ path: file, fullPage: true, timeout: 5000 });
      paths.push(file);
    } catch (e) {
      console.error(`screenshot of ${label} failed: ${e.message}`);
    }
  }
  return paths;
}

async function fail(check, message, details, code) {
  report(check, false, { error: message, ...details });
  const paths = await screenshots();
  report("screenshots", paths.length > 0, { paths });
  if (browser) await browser.close().catch(() => {});
  process.exit(code);
}

async function check(name, fn) {
  let details;
  try {
    details = await fn();
  } catch (e) {
    await fail(name, e.message, e.details || {}, 1);
  }
  report(name, true, details || {});
}

// What a page shows, read from its stable element ids.
function snapshot(page) {
  return page.evaluate(() => {
    const $ = (id) => document.getElementById(id);
    return {
      loginShown: !$("login-view").hidden,
      chatShown: !$("chat-view").hidden,
      status: $("status").textContent,
      error: $("error").hidden ? "" : $("error").textContent,
      users: [...document.querySelectorAll("#users li")].map((li) => li.dataset.name),
      targets: [...$("target").options].map((o) => o.value),
      heartbeatsSent: (window.__packagesSent || []).filter((type) => type === 3).length,
      log: [...document.querySelectorAll("#log li")].map((li) => ({
        kind: li.dataset.kind,
        from: li.dataset.from,
        target: li.dataset.target,
        private: li.dataset.private === "true",
        marked: Boolean(li.querySelector(".mark")) && getComputedStyle(li.querySelector(".mark")).display !== "none",
        user: li.dataset.user,
        text: li.querySelector(".text") ? li.querySelector(".text").textContent : "",
      })),
    };
  });
}

// Poll a page until predicate(snapshot) holds; the last snapshot explains a
// failure. Gives up at once when the page shows an error, unless errorExpected.
async function waitFor(label, what, predicate, errorExpected = false) {
  const page = pages.get(label);
  const until = Date.now() + WAIT_MS;
  let shown;
  for (;;) {
    shown = await snapshot(page);
    if (predicate(shown)) return shown;
    if (shown.error && !errorExpected) {
      throw new CheckFailed(`${label}'s page showed an error instead of ${what}`, { page: label, shown });
    }
    if (Date.now() > until) throw new CheckFailed(`${label}'s page never showed ${what}`, { page: label, shown });
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function open(label) {
  const context = await browser.newContext();
  await context.addInitScript(() => {
    // While __blockSockets is set, a new WebSocket fails at once, as when
    // the network is down (a fake: a real failed socket logs a console error).
    const Native = WebSocket;
    window.__blockSockets = false;
    window.WebSocket = function (url, protocols) {
      if (!window.__blockSockets) return new Native(url, protocols);
      const fake = { readyState: Native.CONNECTING, send() {}, close() { fake.readyState = Native.CLOSED; } };
      setTimeout(() => { fake.readyState = Native.CLOSED; if (fake.onerror) fake.onerror(new Event("error")); }, 20);
      return fake;
    };
    for (const key of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) window.WebSocket[key] = Native[key];
    window.WebSocket.prototype = Native.prototype;
    // Count the packages the page sends, by type byte.
    window.__packagesSent = [];
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data) {
      window.__packagesSent.push(new Uint8Array(data.buffer || data, data.byteOffset || 0)[0]);
      return send.call(this, data);
    };
  });
  const page = await context.newPage();
  page.on("pageerror", (e) => problems.push({ page: label, error: String(e) }));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push({ page: label, console: m.text(), url: m.location().url });
  });
  pages.set(label, page);
  await page.goto(url, { timeout: WAIT_MS });
  return page;
}

async function closePage(label) {
  const page = pages.get(label);
  pages.delete(label);
  await page.context().close();
}

async function login(label, name, room) {
  const page = pages.get(label);
  await page.fill("#name", name);
  await page.fill("#room", room);
  await page.click("#login");
}

async function say(label, target, text) {
  const page = pages.get(label);
  await page.selectOption("#target", target);
  await page.fill("#message", text);
  await page.click("#send");
}

const messages = (shown) => shown.log.filter((e) => e.kind === "message");

// Lines the test writes on stdin, in answer to requests.
const answers = [];
let answered = null;
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  for (const line of chunk.split("\n")) if (line.trim()) answers.push(line.trim());
  if (answered && answers.length) { answered(); answered = null; }
});

/** Ask the test to do something (one JSON line); resolves with its answer line. */
async function ask(request) {
  console.log(JSON.stringify(request));
  while (!answers.length) await new Promise((resolve) => { answered = resolve; });
  return answers.shift();
}
const sameSet = (a, b) => a.length === b.length && a.every((x) => b.includes(x));

async function main() {
  await check("browser", async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 20000 });
    return { version: browser.version() };
  });

  await check("page", async () => {
    const page = await open("ann");
    const shown = await snapshot(page);
    if (!shown.loginShown || shown.chatShown) throw new CheckFailed("the login form is not shown", { shown });
    return { title: await page.title() };
  });

  await check("codec", async () => {
    // The byte examples of the protocol notes, through the page's own module.
    const result = await pages.get("ann").evaluate(async () => {
      const g = await import("./gamenet-client.js");
      const hex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
      const utf8 = (s) => new TextEncoder().encode(s);
      const request = g.encodePackage(g.PKG.DATA, g.encodeMessage(
        { type: g.MSG.REQUEST, id: 1, route: "connector.entryHandler.enter", body: utf8('{"username":"bob","rid":"r1"}') }));
      const compressed = g.encodePackage(g.PKG.DATA, g.encodeMessage(
        { type: g.MSG.REQUEST, id: 300, route: "r", body: utf8("{}") }, { r: 5 }));
      const frame = new Uint8Array([3, 0, 0, 0, 4, 0, 0, 0x29, 7, 0, 6, ...utf8('{"msg":"hi","from":"bob","target":"*"}')]);
      const [beat, data] = g.decodePackages(frame.buffer);
      const push = g.decodeMessage(data.body, { 6: "onChat" });
      const { Protobuf } = await import("./protobuf.js");
      const onChat = { onChat: { msg: { option: "required", type: "string", tag: 1 },
        from: { option: "required", type: "string", tag: 2 }, target: { option: "required", type: "string", tag: 3 },
        __messages: {}, __tags: { 1: "msg", 2: "from", 3: "target" } } };
      const protobuf = new Protobuf({ encoderProtos: onChat, decoderProtos: onChat });
      const pb = protobuf.encode("onChat", { msg: "hi", from: "bob", target: "*" });
      return {
        protobuf: hex(pb), decoded: protobuf.decode("onChat", pb),
        request: hex(request).slice(0, 14), requestLength: request.length,
        compressed: hex(compressed),
        frame: [beat.type, data.type], push: [push.type, push.route, new TextDecoder().decode(push.body)],
      };
    });
    const want = {
      protobuf: "0a0268691203626f621a012a", decoded: { msg: "hi", from: "bob", target: "*" },
      request: "0400003c00011c", requestLength: 64, compressed: "0400000701ac0200057b7d",
      frame: [3, 4], push: [3, "onChat", '{"msg":"hi","from":"bob","target":"*"}'],
    };
    if (JSON.stringify(result) !== JSON.stringify(want)) throw new CheckFailed("codec bytes differ", { result, want });
    return {};
  });

  await check("validation", async () => {
    await login("ann", "bad name!", "r1");
    let shown = await waitFor("ann", "the bad-character error", (s) => /letters/.test(s.error), true);
    const bad = shown.error;
    await login("ann", "a".repeat(21), "r1");
    shown = await waitFor("ann", "the length error", (s) => /20/.test(s.error) && s.loginShown, true);
    const long = shown.error;
    await login("ann", "ann", "");
    shown = await waitFor("ann", "the length error for an empty room", (s) => /20/.test(s.error) && s.loginShown, true);
    return { errors: [bad, long] };
  });

  await check("login ann", async () => {
    await login("ann", "ann", "r1");
    const shown = await waitFor("ann", "the room with ann", (s) => s.chatShown && s.users.includes("ann"));
    return { users: shown.users, status: shown.status };
  });

  await check("members", async () => {
    await open("bob");
    await login("bob", "bob", "r1");
    const want = ["*", "ann", "bob"];
    const bob = await waitFor("bob", "members *, ann, bob", (s) => s.chatShown && sameSet(s.users, want));
    const ann = await waitFor("ann", "members *, ann, bob", (s) => sameSet(s.users, want));
    if (ann.users[0] !== "*" || bob.users[0] !== "*") throw new CheckFailed("'*' is not first", { ann, bob });
    return { ann: ann.users, bob: bob.users, bobTargets: bob.targets };
  });

  await check("join notice", async () => {
    const shown = await waitFor("ann", "bob's join notice", (s) => s.log.some((e) => e.kind === "join" && e.user === "bob"));
    return { log: shown.log.filter((e) => e.kind === "join") };
  });

  await check("broadcast", async () => {
    await say("ann", "*", "hello everyone");
    const seen = (s) => messages(s).some((m) => m.from === "ann" && m.target === "*" && !m.private && !m.marked
      && m.text === "hello everyone");
    await waitFor("ann", "ann's message to everyone", seen);
    await waitFor("bob", "ann's message to everyone", seen);
    return {};
  });

  await check("private", async () => {
    await say("bob", "ann", "psst ann");
    const seen = (s) => messages(s).some((m) => m.from === "bob" && m.target === "ann" && m.private && m.marked
      && m.text === "psst ann");
    const ann = await waitFor("ann", "bob's private message", seen);
    const bob = await waitFor("bob", "bob's private message, echoed", seen);
    if (KEEP_SHOTS) report("screenshots", true, { paths: await screenshots("-chat") });
    return { ann: messages(ann), bob: messages(bob) };
  });

  await check("heartbeat", async () => {
    const ann = await waitFor("ann", "two heartbeats sent", (s) => s.heartbeatsSent >= 2);
    const bob = await waitFor("bob", "two heartbeats sent", (s) => s.heartbeatsSent >= 2);
    await say("ann", "*", "still here");
    const seen = (s) => s.chatShown && messages(s).some((m) => m.from === "ann" && m.text === "still here");
    await waitFor("ann", "ann's message after the heartbeats", seen);
    await waitFor("bob", "ann's message after the heartbeats", seen);
    return { ann: ann.heartbeatsSent, bob: bob.heartbeatsSent };
  });

  await check("resume", async () => {
    const ann = pages.get("ann");
    await ann.evaluate(() => { window.__blockSockets = true; });
    const answer = await ask({ request: "drop", user: "ann*r1" });
    if (answer !== "dropped") throw new CheckFailed(`the test did not drop ann's socket: ${answer}`);
    const away = await waitFor("ann", "that it is reconnecting",
      (s) => /reconnecting/.test(s.status) && s.log.some((e) => e.kind === "system" && /reconnecting/.test(e.text)));
    const texts = ["while away 1", "while away 2", "while away 3"];
    for (const text of texts) {
      await say("bob", "*", text);
      await waitFor("bob", `bob's ${text}`, (s) => messages(s).some((m) => m.text === text));
    }
    const before = messages(await snapshot(ann)).filter((m) => texts.includes(m.text));
    if (before.length) throw new CheckFailed("ann's page got messages while away", { before });
    await ann.evaluate(() => { window.__blockSockets = false; });
    const back = await waitFor("ann", "the three messages after the resume",
      (s) => /ann in room r1/.test(s.status) && messages(s).filter((m) => texts.includes(m.text)).length >= 3);
    const got = messages(back).filter((m) => texts.includes(m.text)).map((m) => m.text);
    if (JSON.stringify(got) !== JSON.stringify(texts)) throw new CheckFailed("not in order, once", { got });
    await say("ann", "*", "back again");
    const seen = (s) => messages(s).some((m) => m.from === "ann" && m.text === "back again");
    await waitFor("bob", "ann's message after the resume", seen);
    const bob = await snapshot(pages.get("bob"));
    if (!sameSet(bob.users, ["*", "ann", "bob"]) || bob.log.some((e) => e.kind === "leave")) {
      throw new CheckFailed("bob saw ann leave", { bob });
    }
    return { away: away.status, got, notices: back.log.filter((e) => e.kind === "system").map((e) => e.text) };
  });

  await check("duplicate", async () => {
    await open("ann2");
    await login("ann2", "ann", "r1");
    const shown = await waitFor("ann2", "the duplicate-name error", (s) => /taken/.test(s.error), true);
    if (!shown.loginShown || shown.chatShown) throw new CheckFailed("the second ann left the login form", { shown });
    if (KEEP_SHOTS) report("screenshots", true, { paths: await screenshots("-duplicate") });
    const ann = await snapshot(pages.get("ann"));
    if (!sameSet(ann.users, ["*", "ann", "bob"])) throw new CheckFailed("ann's member list changed", { ann });
    await closePage("ann2");
    return { error: shown.error };
  });

  await check("leave", async () => {
    await closePage("bob");
    const shown = await waitFor("ann", "bob's leave notice and list without bob",
      (s) => s.log.some((e) => e.kind === "leave" && e.user === "bob") && sameSet(s.users, ["*", "ann"]));
    return { users: shown.users, targets: shown.targets, notice: shown.log.filter((e) => e.kind === "leave") };
  });

  await check("page errors", async () => {
    if (problems.length) throw new CheckFailed("the pages reported errors", { problems });
    return {};
  });

  await browser.close();
  browser = null;
}

const deadline = setTimeout(() => {
  fail("deadline", `the run took longer than ${DEADLINE_MS / 1000} s`, {}, 2);
}, DEADLINE_MS);

main().then(
  () => { clearTimeout(deadline); process.exit(0); },
  (e) => fail("driver", e.stack || String(e), {}, 1),
);
