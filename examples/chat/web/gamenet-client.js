/**
 * gamenet-client.js: a Pomelo-protocol client for gamenet frontends, over the
 * browser's WebSocket. An ES module with no dependencies and no build step.
 *
 *   import { GamenetClient } from "./gamenet-client.js";
 *
 *   const client = new GamenetClient();
 *   await client.connect({ host: "127.0.0.1", port: 3050 });   // handshake done
 *   client.on("onChat", (msg) => console.log(msg.from, msg.msg)); // pushes
 *   client.onKick((reason) => console.log("kicked:", reason));
 *   client.onClose((info) => console.log("closed:", info.reason));
 *   const answer = await client.request("connector.entryHandler.enter", { username: "ann", rid: "r1" });
 *   client.notify("chat.chatHandler.note", { text: "no answer wanted" });
 *   client.close();
 *
 * connect({host, port, secure, user}) opens ws[s]://host:port/, sends the
 * handshake {"sys":{"type":"gamenet-js","version":"0.1.0"}} (plus "user" when
 * given), and resolves with the server's "sys" once the ack is sent; it
 * rejects if the socket fails, the server refuses (code != 200), or close()
 * is called first.
 *
 * request() resolves with the response body as the server sent it: gamenet
 * and Pomelo report handler errors inside the body ({code: 500, ...}), so
 * look at it. Pending requests reject when the connection closes.
 * Routes in the handshake's sys.dict are sent and received as 2-byte codes.
 * Bodies of the routes in the handshake's sys.protos go in Pomelo's protobuf
 * format (./protobuf.js): requests and notifies with protos.client, answers
 * and pushes with protos.server; every other body is JSON. An answer on a
 * protobuf route that starts with "{" is JSON (an error the schema cannot
 * carry): no body of that format starts with that byte.
 * Heartbeats: one is sent `heartbeat` seconds after each server heartbeat,
 * and the connection is closed if nothing arrives for 2 x heartbeat.
 * onClose listeners run once per connection with {code, reason, wasClean}.
 *
 * Resume (doc/sessions.md): connect({..., resume: true}) asks the server for
 * resume tokens (it pushes one, route "gamenet.resume", once the session is
 * bound; kept in client.resumeToken, not given to listeners). When the
 * socket then drops (not close(), not a kick), onReconnecting listeners run,
 * and the client connects again to the same place (or where
 * resumeTo() says) presenting the token, trying every second for 30 s:
 * onResumed listeners run once the session is back, with the pushes sent
 * meanwhile delivered after it, in order. Requests in flight are rejected.
 * When the server refuses the resume, onClose listeners run with code 4410
 * and the reason: log in again.
 *
 * Wire format: package = type (1 B) | body length (3 B, big-endian) | body;
 * message = flag (1 B) | [id varint] | [route] | body.
 */

import { Protobuf } from "./protobuf.js";

export const VERSION = "0.1.0";
export const PKG = { HANDSHAKE: 1, ACK: 2, HEARTBEAT: 3, DATA: 4, KICK: 5 };
export const MSG = { REQUEST: 0, NOTIFY: 1, RESPONSE: 2, PUSH: 3 };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One package: a Uint8Array of head and body. */
export function encodePackage(type, body = new Uint8Array(0)) {
  const n = body.length;
  if (n > 0xffffff) throw new Error(`package body of ${n} bytes is too long`);
  const out = new Uint8Array(4 + n);
  out[0] = type; out[1] = (n >> 16) & 0xff; out[2] = (n >> 8) & 0xff; out[3] = n & 0xff;
  out.set(body, 4);
  return out;
}

/** Every package in a buffer (one WebSocket frame may hold several): [{type, body}]. */
export function decodePackages(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const packages = [];
  let offset = 0;
  while (offset + 4 <= bytes.length) {
    const type = bytes[offset];
    const n = (bytes[offset + 1] << 16) | (bytes[offset + 2] << 8) | bytes[offset + 3];
    const start = offset + 4;
    if (type < PKG.HANDSHAKE || type > PKG.KICK || start + n > bytes.length) {
      throw new Error(`bad package (type ${type}, length ${n})`);
    }
    packages.push({ type, body: bytes.subarray(start, start + n) });
    offset = start + n;
  }
  if (offset !== bytes.length) throw new Error("truncated package head");
  return packages;
}

/** A message body: {type, id, route, body (bytes)}; routeToCode compresses routes found in it. */
export function encodeMessage({ type, id = 0, route = "", body = new Uint8Array(0) }, routeToCode = {}) {
  const parts = [];
  let flag = type << 1;
  if (type === MSG.REQUEST || type === MSG.RESPONSE) {
    let rest = id;
    do {  // base-128, least significant group first, 0x80 = "more"
      const group = rest % 128;
      rest = Math.floor(rest / 128);
      parts.push(rest > 0 ? group | 0x80 : group);
    } while (rest > 0);
  }
  if (type !== MSG.RESPONSE) {
    const code = Object.prototype.hasOwnProperty.call(routeToCode, route) ? routeToCode[route] : undefined;
    if (code !== undefined) {
      flag |= 0x01;
      parts.push((code >> 8) & 0xff, code & 0xff);
    } else {
      const raw = encoder.encode(route);
      if (raw.length > 255) throw new Error(`route ${route} is longer than 255 bytes`);
      parts.push(raw.length, ...raw);
    }
  }
  const out = new Uint8Array(1 + parts.length + body.length);
  out[0] = flag;
  out.set(parts, 1);
  out.set(body, 1 + parts.length);
  return out;
}

/** Decode a DATA package body; codeToRoute expands compressed routes. */
export function decodeMessage(bytes, codeToRoute = {}) {
  const flag = bytes[0];
  const type = (flag >> 1) & 0x7;
  let offset = 1, id = 0, route = "", compressed = false;
  if (type === MSG.REQUEST || type === MSG.RESPONSE) {
    let scale = 1, byte;
    do {
      if (offset >= bytes.length) throw new Error("truncated message id");
      byte = bytes[offset++];
      id += (byte & 0x7f) * scale;
      scale *= 128;
    } while (byte & 0x80);
  }
  if (type !== MSG.RESPONSE) {
    if (flag & 0x01) {
      compressed = true;
      const code = (bytes[offset] << 8) | bytes[offset + 1];
      offset += 2;
      route = codeToRoute[code];
      if (route === undefined) throw new Error(`unknown route code ${code}`);
    } else {
      const n = bytes[offset++];
      route = decoder.decode(bytes.subarray(offset, offset + n));
      offset += n;
    }
  }
  return { type, id, route, compressed, error: Boolean(flag & 0x20), body: bytes.subarray(offset) };
}

const toJson = (value) => encoder.encode(JSON.stringify(value === undefined ? {} : value));
function fromJson(bytes) {
  if (!bytes.length) return null;
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch (e) {
    console.warn("gamenet-client: a body is not JSON:", e.message);
    return undefined;
  }
}

export class GamenetClient {
  constructor() {
    this.socket = null;
    this.heartbeat = 0;        // seconds, from the handshake; 0 = none
    this.routeToCode = {};
    this.codeToRoute = {};
    this.protobuf = null;      // from the handshake's sys.protos
    this._nextId = 1;
    this._pending = new Map(); // id -> {route, resolve, reject}
    this._pushes = new Map();  // route -> [fn]
    this._kick = [];
    this._close = [];
    this._beatTimer = null;
    this._deadTimer = null;
    this._kicked = null;
    this._connecting = null;  // connect()'s reject, until the handshake is done
    this.resumeToken = null;   // with resume: the session's current token
    this.resumeTo = null;      // with resume: () => ({host, port, secure}) or a promise of it
    this._target = null;       // where connect() went, and its user data
    this._resuming = false;    // between a drop and the end of the resume
    this._reconnecting = [];
    this._resumed = [];
  }

  /** Open the socket and shake hands; resolves with the handshake's sys. */
  connect({ host, port, secure = false, user, resume = false } = {}) {
    if (this.socket) return Promise.reject(new Error("already connected"));
    if (resume) user = { ...(user || {}), resume: true };
    this._target = { host, port, secure, user, resume };
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${secure ? "wss" : "ws"}://${host}:${port}/`);
      ws.binaryType = "arraybuffer";
      this.socket = ws;
      this._connecting = reject;  // until the handshake is done; _shutdown rejects
      this._onHandshake = (answer) => {
        if (!this._connecting) return;
        if (!answer || answer.code !== 200) {
          this._shutdown(1000, `handshake refused: ${JSON.stringify(answer)}`);
          return;
        }
        this._connecting = null;
        if (answer.user && typeof answer.user.token === "string") this.resumeToken = answer.user.token;
        const sys = answer.sys || {};
        this.heartbeat = sys.heartbeat || 0;
        if (sys.dict) {
          this.routeToCode = sys.dict;
          this.codeToRoute = {};
          for (const [route, code] of Object.entries(sys.dict)) this.codeToRoute[code] = route;
        }
        if (sys.protos) {
          this.protobuf = new Protobuf({ encoderProtos: sys.protos.client, decoderProtos: sys.protos.server });
        }
        this._send(PKG.ACK);
        this._alive();
        resolve(sys);
      };
      ws.onopen = () => {
        const hello = { sys: { type: "gamenet-js", version: VERSION } };
        if (user !== undefined) hello.user = user;
        this._send(PKG.HANDSHAKE, toJson(hello));
      };
      ws.onmessage = (event) => this._receive(event.data);
      ws.onerror = () => { if (this._connecting) this._shutdown(1006, `cannot connect to ${host}:${port}`); };
      ws.onclose = (event) => {
        if (this._target.resume && this.resumeToken && !this._kicked && !this._connecting && !this._resuming) {
          this._reconnect(event);
          return;
        }
        const why = this._kicked ? `kicked: ${this._kicked}` : event.reason || "closed by the server";
        this._shutdown(event.code, why, event.wasClean);
      };
    });
  }

  /** Send a request; resolves with the response body. */
  request(route, msg) {
    return new Promise((resolve, reject) => {
      if (!this._open()) { reject(new Error("not connected")); return; }
      const id = this._nextId++;
      this._pending.set(id, { route, resolve, reject });
      this._sendMessage({ type: MSG.REQUEST, id, route, body: this._body(route, msg) });
    });
  }

  /** Send a notify: no answer. */
  notify(route, msg) {
    if (!this._open()) throw new Error("not connected");
    this._sendMessage({ type: MSG.NOTIFY, route, body: this._body(route, msg) });
  }

  _body(route, msg) {
    if (this.protobuf && this.protobuf.encodes(route)) return this.protobuf.encode(route, msg === undefined ? {} : msg);
    return toJson(msg);
  }

  _value(route, bytes) {
    if (this.protobuf && this.protobuf.decodes(route) && bytes[0] !== 0x7b) {
      try {
        return this.protobuf.decode(route, bytes);
      } catch (e) {
        console.warn(`gamenet-client: a ${route} body does not decode:`, e.message);
        return undefined;
      }
    }
    return fromJson(bytes);
  }

  /** Call fn(body, route) for every push on route. */
  on(route, fn) {
    if (!this._pushes.has(route)) this._pushes.set(route, []);
    this._pushes.get(route).push(fn);
    return this;
  }

  /** Call fn(reason) when the server kicks this client. */
  onKick(fn) { this._kick.push(fn); return this; }

  /** Call fn({code, reason, wasClean}) when the connection ends, whichever side ends it. */
  onClose(fn) { this._close.push(fn); return this; }

  /** Call fn({code}) when the connection dropped and the client resumes. */
  onReconnecting(fn) { this._reconnecting.push(fn); return this; }

  /** Call fn() once the session is resumed. */
  onResumed(fn) { this._resumed.push(fn); return this; }

  /** Close the connection. */
  close() {
    this._target = { ...(this._target || {}), resume: false };
    this._resuming = false;
    this._shutdown(1000, "closed by the client", true);
  }

  async _reconnect(event) {
    this._resuming = true;
    this._shutdown(event.code, "connection lost; resuming", false);
    this._emit(this._reconnecting, { code: event.code });
    const deadline = Date.now() + 30000;
    const target = this._target;
    let reason = "cannot reconnect";
    while (this._resuming) {
      try {
        const place = this.resumeTo ? await this.resumeTo() : target;
        if (!this._resuming) return;  // closed meanwhile
        await this.connect({ ...place, user: { ...(target.user || {}), resume: this.resumeToken } });
        this._target = target;
        this._resuming = false;
        this._emit(this._resumed);
        return;
      } catch (e) {
        this._target = target;
        reason = e.message;
        if (reason.startsWith("handshake refused") || Date.now() > deadline) break;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
    if (!this._resuming) return;  // closed meanwhile
    this._resuming = false;
    this._emit(this._close, { code: 4410, reason: `resume failed: ${reason}`, wasClean: false });
  }

  _open() { return this.socket !== null && this.socket.readyState === WebSocket.OPEN; }

  _send(type, body) {
    if (this._open()) this.socket.send(encodePackage(type, body));
  }

  _sendMessage(message) {
    this._send(PKG.DATA, encodeMessage(message, this.routeToCode));
  }

  _alive() {  // anything arriving proves the server alive
    if (!this.heartbeat) return;
    clearTimeout(this._deadTimer);
    this._deadTimer = setTimeout(() => this._shutdown(4000, "heartbeat timeout"), 2000 * this.heartbeat);
  }

  _emit(listeners, ...args) {
    for (const fn of listeners) {
      try { fn(...args); } catch (e) { console.error("gamenet-client: a listener failed:", e); }
    }
  }

  _receive(data) {
    this._alive();
    let packages;
    try {
      packages = decodePackages(data);
    } catch (e) {
      this._shutdown(4001, `protocol error: ${e.message}`);
      return;
    }
    for (const { type, body } of packages) {
      if (!this.socket) return;
      if (type === PKG.HANDSHAKE) this._onHandshake(fromJson(body));
      else if (type === PKG.HEARTBEAT) this._onHeartbeat();
      else if (type === PKG.DATA) this._onData(body);
      else if (type === PKG.KICK) {
        this._kicked = (fromJson(body) || {}).reason || "kick";
        this._emit(this._kick, this._kicked);
      }
    }
  }

  _onHeartbeat() {
    if (!this.heartbeat || this._beatTimer) return;
    this._beatTimer = setTimeout(() => {
      this._beatTimer = null;
      this._send(PKG.HEARTBEAT);
    }, 1000 * this.heartbeat);
  }

  _onData(bytes) {
    let message;
    try {
      message = decodeMessage(bytes, this.codeToRoute);
    } catch (e) {
      console.warn("gamenet-client: dropped a message:", e.message);
      return;
    }
    if (message.type === MSG.RESPONSE) {
      const pending = this._pending.get(message.id);
      if (!pending) return;
      this._pending.delete(message.id);
      pending.resolve(this._value(pending.route, message.body));
    } else if (message.type === MSG.PUSH) {
      if (message.route === "gamenet.resume") {
        this.resumeToken = (this._value(message.route, message.body) || {}).token || null;
        return;
      }
      this._emit(this._pushes.get(message.route) || [], this._value(message.route, message.body), message.route);
    }
  }

  _shutdown(code, reason, wasClean = false) {
    const ws = this.socket;
    if (!ws) return;
    this.socket = null;
    this._kicked = null;
    clearTimeout(this._beatTimer);
    clearTimeout(this._deadTimer);
    this._beatTimer = this._deadTimer = null;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000);
    if (this._connecting) this._connecting(new Error(reason));
    this._connecting = null;
    for (const { route, reject } of this._pending.values()) reject(new Error(`${route}: connection closed (${reason})`));
    this._pending.clear();
    if (!this._resuming) this._emit(this._close, { code, reason, wasClean });
  }
}
