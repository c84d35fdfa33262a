// The chat page, as Pomelo's chat demo: ask the gate which connector to use,
// close the gate socket, enter the room on that connector, then chat.
// The gate is location.hostname:3014 unless the URL says ?gate=HOST:PORT.

import { GamenetClient } from "./gamenet-client.js";

const NAME_PATTERN = /^[a-zA-Z0-9_\u4e00-\u9fa5]+$/;
const MAX_LENGTH = 20;
const EVERYONE = "*";

const $ = (id) => document.getElementById(id);
const state = { client: null, name: "", room: "", members: [], leaving: false };

function gateAddress() {
  const given = new URLSearchParams(location.search).get("gate");
  if (given) {
    const colon = given.lastIndexOf(":");
    return { host: given.slice(0, colon).replace(/^\[|\]$/g, ""), port: Number(given.slice(colon + 1)) };
  }
  return { host: location.hostname || "127.0.0.1", port: 3014 };
}

function setStatus(text) { $("status").textContent = text; }

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

/** The demo's rule: 1 to 20 characters, letters, digits, '_' or Chinese characters. */
function validate(name, room) {
  if (!name || !room || name.length > MAX_LENGTH || room.length > MAX_LENGTH) {
    return `Name and room must be 1 to ${MAX_LENGTH} characters long.`;
  }
  if (!NAME_PATTERN.test(name) || !NAME_PATTERN.test(room)) {
    return "Name and room may only hold letters, digits, '_' and Chinese characters.";
  }
  return "";
}

// The log

function addEntry(kind, build, data = {}) {
  const li = document.createElement("li");
  li.dataset.kind = kind;
  Object.assign(li.dataset, data);
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString();
  li.append(time);
  build(li);
  const log = $("log");
  log.append(li);
  log.scrollTop = log.scrollHeight;
}

function span(className, text) {
  const s = document.createElement("span");
  s.className = className;
  s.textContent = text;
  return s;
}

function addMessage(from, target, text) {
  const isPrivate = target !== EVERYONE;
  addEntry("message", (li) => {
    li.className = isPrivate ? "message private" : "message";
    if (isPrivate) li.append(span("mark", "private"));
    li.append(span("from", from));
    if (isPrivate) li.append(span("to", ` to ${target}`));
    li.append(": ", span("text", text));
  }, { from, target, private: String(isPrivate) });
}

function addNotice(kind, text, user = "") {
  addEntry(kind, (li) => {
    li.className = `notice ${kind}`;
    li.append(span("text", text));
  }, user ? { user } : {});
}

// Members and the target selector

function renderMembers() {
  const target = $("target");
  const chosen = target.value;
  const list = $("users");
  list.replaceChildren();
  for (const name of [EVERYONE, ...state.members]) {
    const li = document.createElement("li");
    li.dataset.name = name;
    li.textContent = name === EVERYONE ? "* (everyone)" : name;
    if (name === state.name) li.classList.add("me");
    if (name === chosen) li.classList.add("selected");
    li.addEventListener("click", () => {
      if (name === state.name) return;
      target.value = name;
      renderMembers();
    });
    list.append(li);
  }
  target.replaceChildren(new Option("* (everyone)", EVERYONE));
  for (const name of state.members) {
    if (name !== state.name) target.append(new Option(name, name));
  }
  target.value = state.members.includes(chosen) && chosen !== state.name ? chosen : EVERYONE;
}

function onAdd(body) {
  if (!state.members.includes(body.user)) state.members.push(body.user);
  renderMembers();
  addNotice("join", `${body.user} joined the room`, body.user);
}

function onLeave(body) {
  state.members = state.members.filter((name) => name !== body.user);
  renderMembers();
  addNotice("leave", `${body.user} left the room`, body.user);
}

// Views

function showRoom(users) {
  state.members = [...new Set(users)];
  $("room-name").textContent = state.room;
  $("log").replaceChildren();
  renderMembers();
  $("login-view").hidden = true;
  $("chat-view").hidden = false;
  setStatus(`${state.name} in room ${state.room}`);
  addNotice("system", `You joined room ${state.room}.`);
  $("message").focus();
}

function showLogin(error = "") {
  $("chat-view").hidden = true;
  $("login-view").hidden = false;
  $("login").disabled = false;
  showError(error);
}

// The flow

/** Ask the gate which connector to use: {host, port}. */
async function queryEntry(name, announce = true) {
  const gate = new GamenetClient();
  const address = gateAddress();
  if (announce) setStatus(`asking the gate ${address.host}:${address.port}`);
  await gate.connect(address);
  let entry;
  try {
    entry = await gate.request("gate.gateHandler.queryEntry", { uid: name });
  } finally {
    gate.close();
  }
  if (!entry || entry.code !== 200) throw new Error("No chat server is available.");
  return entry;
}

async function login(event) {
  event.preventDefault();
  const name = $("name").value.trim();
  const room = $("room").value.trim();
  const problem = validate(name, room);
  if (problem) { showError(problem); return; }
  showError("");
  $("login").disabled = true;
  try {
    const entry = await queryEntry(name);

    setStatus(`entering room ${room} on ${entry.host}:${entry.port}`);
    const client = new GamenetClient();
    client.on("onChat", (body) => addMessage(body.from, body.target, body.msg));
    client.on("onAdd", onAdd);
    client.on("onLeave", onLeave);
    client.onKick((reason) => addNotice("system", `The server disconnected you: ${reason}.`));
    client.onReconnecting(() => {
      if (state.client !== client) return;
      setStatus("reconnecting…");
      addNotice("system", "Connection lost: reconnecting…");
    });
    client.onResumed(() => {
      if (state.client !== client) return;
      setStatus(`${state.name} in room ${state.room}`);
      addNotice("system", "Reconnected.");
    });
    client.onClose((info) => {
      if (state.client !== client) return;
      state.client = null;
      setStatus("not connected");
      if (!state.leaving) showLogin(`Connection lost (${info.reason}). Join again.`);
    });
    // Resume on the connector the gate names then (any connector takes it).
    client.resumeTo = () => queryEntry(name, false);
    await client.connect({ host: entry.host, port: entry.port, resume: true });
    const answer = await client.request("connector.entryHandler.enter", { username: name, rid: room });
    if (!answer || answer.error || !Array.isArray(answer.users)) {
      client.close();
      throw new Error(`The name ${name} is already taken in room ${room}: pick another one.`);
    }
    Object.assign(state, { client, name, room, leaving: false });
    showRoom(answer.users);
  } catch (e) {
    setStatus("not connected");
    showLogin(e.message || String(e));
  }
}

async function send(event) {
  event.preventDefault();
  const input = $("message");
  const content = input.value.trim();
  const target = $("target").value;
  if (!content || !state.client) return;
  input.value = "";
  try {
    const answer = await state.client.request("chat.chatHandler.send",
      { rid: state.room, content, from: state.name, target });
    if (answer && answer.code) {
      addNotice("system", `Not sent: ${answer.message || `error ${answer.code}`}.`);
    } else if (target !== EVERYONE && target !== state.name) {
      addMessage(state.name, target, content);  // the server pushes private messages to the target only
    }
  } catch (e) {
    addNotice("system", `Not sent: ${e.message}.`);
  }
}

function leave() {
  state.leaving = true;
  if (state.client) state.client.close();
  showLogin();
  setStatus("not connected");
}

$("login-view").addEventListener("submit", login);
$("send-form").addEventListener("submit", send);
$("leave").addEventListener("click", leave);
$("target").addEventListener("change", renderMembers);
