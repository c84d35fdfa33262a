#!/usr/bin/env node
'use strict';
/*
 * A Pomelo WebSocket client built from a third-party codec (pinus-protocol)
 * and the ws library, doing what pomelo-jsclient-websocket does, so that
 * tests/test_interop.py can check gamenet against it.
 *
 * Usage: node pomelo_client.js PORT
 *
 * Conversation, against the handlers of tests/test_interop.py:
 *   handshake -> ack -> request connector.game.echo (route sent as a string)
 *   -> request connector.game.upper (route compressed with the dictionary code)
 *   -> notify connector.game.note -> request connector.game.pushme (server pushes)
 *   -> heartbeats until two round trips -> request connector.game.kickme
 *   -> kick package -> close.
 *
 * When the handshake carries sys.protos, bodies of their routes go in
 * protobuf with npm pinus-protobuf, as pomelo-client.js does with its
 * protobuf component: requests and notifies encoded with protos.client,
 * answers and pushes decoded with protos.server; the "protobuf" field of
 * each sent, response and push observation says which it was.
 *
 * Every observation is one JSON line on stdout. Exits 0 after the socket
 * closes, non-zero on an error or after 20 seconds whatever happens.
 */

const { Package, Message, Protocol } = require('pinus-protocol');
const { Protobuf } = require('pinus-protobuf');
const WebSocket = require('ws');

const LIMIT_MS = 20000;
const HEARTBEAT_ROUND_TRIPS = 2;

// The JS client's handshake, as pomelo-jsclient-websocket sends it.
const HANDSHAKE = {
  sys: { type: 'js-websocket', version: '0.0.1', rsa: {}, protoVersion: 0 },
  user: {},
};

function emit(event, fields) {
  process.stdout.write(JSON.stringify(Object.assign({ event: event }, fields)) + '\n');
}

function fail(reason) {
  emit('error', { reason: String(reason) });
  process.exit(1);
}

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write('usage: node pomelo_client.js PORT\n');
  process.exit(64);
}

setTimeout(function () {
  emit('timeout', { ms: LIMIT_MS });
  process.exit(2);
}, LIMIT_MS);

// Client state, named as in pomelo-client.js.
let dict = null;   // route -> code
let abbrs = {};    // code -> route
let protobuf = null;
let clientProtos = {};
let serverProtos = {};
let heartbeatInterval = 0;
let heartbeatTimeout = 0;
let heartbeatId = null;
let heartbeatTimeoutId = null;
let nextHeartbeatTimeout = 0;
let reqId = 0;
const routeMap = {};  // request id -> route, to name responses
let heartbeatsSent = 0;
let roundTrips = 0;
let answered = 0;
let kickRequested = false;
let closing = false;

const socket = new WebSocket('ws://127.0.0.1:' + port + '/');
socket.binaryType = 'nodebuffer';

function send(packet) {
  socket.send(packet, { binary: true });
}

/*
 * pomelo-client.js's defaultEncode: a request when there is an id, a notify
 * otherwise; the route goes as its dictionary code when the dictionary has it.
 * C{compress === false} sends the route as a string anyway, as a client
 * holding no dictionary does.
 */
function encode(id, route, msg, compress) {
  const type = id ? Message.TYPE_REQUEST : Message.TYPE_NOTIFY;
  const binary = Boolean(protobuf && clientProtos[route]);
  const body = binary ? protobuf.encode(route, msg) : Protocol.strencode(JSON.stringify(msg));
  let compressRoute = false;
  let wireRoute = route;
  if (compress !== false && dict && dict[route]) {
    wireRoute = dict[route];
    compressRoute = true;
  }
  return { bytes: Message.encode(id, type, compressRoute, wireRoute, body), compressed: compressRoute, protobuf: binary };
}

function request(route, msg, compress) {
  reqId++;
  routeMap[reqId] = route;
  const encoded = encode(reqId, route, msg, compress);
  send(Package.encode(Package.TYPE_DATA, encoded.bytes));
  emit('sent', { type: 'request', id: reqId, route: route, compressed: encoded.compressed, flag: encoded.bytes[0],
    protobuf: encoded.protobuf });
}

function notify(route, msg) {
  const encoded = encode(0, route, msg);
  send(Package.encode(Package.TYPE_DATA, encoded.bytes));
  emit('sent', { type: 'notify', route: route, compressed: encoded.compressed, flag: encoded.bytes[0],
    protobuf: encoded.protobuf });
}

function clearTimers() {
  if (heartbeatId) { clearTimeout(heartbeatId); heartbeatId = null; }
  if (heartbeatTimeoutId) { clearTimeout(heartbeatTimeoutId); heartbeatTimeoutId = null; }
}

function maybeKick() {
  // Everything answered and the heartbeat seen working: ask to be kicked.
  if (!kickRequested && answered >= 3 && roundTrips >= HEARTBEAT_ROUND_TRIPS) {
    kickRequested = true;
    request('connector.game.kickme', { reason: 'interop done' });
  }
}

function onHandshake(data) {
  const answer = JSON.parse(Protocol.strdecode(data));
  const sys = answer.sys || {};
  emit('handshake', { code: answer.code, heartbeat: sys.heartbeat, dict: sys.dict, sys: sys });
  if (answer.code !== 200) {
    fail('handshake refused with code ' + answer.code);
  }
  // handshakeInit / initData
  if (sys.heartbeat) {
    heartbeatInterval = sys.heartbeat * 1000;
    heartbeatTimeout = heartbeatInterval * 2;
  }
  dict = sys.dict || null;
  abbrs = {};
  if (dict) {
    for (const route in dict) {
      abbrs[dict[route]] = route;
    }
  }
  if (sys.protos) {
    clientProtos = sys.protos.client || {};
    serverProtos = sys.protos.server || {};
    protobuf = new Protobuf({ encoderProtos: clientProtos, decoderProtos: serverProtos });
  }
  send(Package.encode(Package.TYPE_HANDSHAKE_ACK));
  emit('sent', { type: 'ack' });

  request('connector.game.echo', { text: 'hello \u00e9', n: [1, 2, 3] }, false);
  request('connector.game.upper', { text: 'compressed route' });
  notify('connector.game.note', { note: 'a notify' });
  request('connector.game.pushme', { n: 7 });
}

function heartbeatTimeoutCb() {
  const gap = nextHeartbeatTimeout - Date.now();
  if (gap > 100) {
    heartbeatTimeoutId = setTimeout(heartbeatTimeoutCb, gap);
  } else {
    fail('server heartbeat timeout');
  }
}

// pomelo-client.js's heartbeat: answer the server's heartbeat after the interval.
function onHeartbeat() {
  if (heartbeatsSent > 0) {
    roundTrips++;
  }
  emit('heartbeat', { sent_before: heartbeatsSent, round_trips: roundTrips });
  maybeKick();
  if (!heartbeatInterval) {
    return;
  }
  if (heartbeatTimeoutId) {
    clearTimeout(heartbeatTimeoutId);
    heartbeatTimeoutId = null;
  }
  if (heartbeatId || closing) {
    return;
  }
  heartbeatId = setTimeout(function () {
    heartbeatId = null;
    if (closing) {
      return;
    }
    send(Package.encode(Package.TYPE_HEARTBEAT));
    heartbeatsSent++;
    nextHeartbeatTimeout = Date.now() + heartbeatTimeout;
    heartbeatTimeoutId = setTimeout(heartbeatTimeoutCb, heartbeatTimeout);
  }, heartbeatInterval);
}

// pomelo-client.js's deCompose: protobuf for the routes of serverProtos.
function body(route, bytes) {
  if (protobuf && serverProtos[route]) {
    return protobuf.decode(route, bytes);
  }
  return JSON.parse(Protocol.strdecode(bytes));
}

// pomelo-client.js's defaultDecode and deCompose.
function onData(data) {
  const msg = Message.decode(data);
  if (msg.id > 0) {
    const route = routeMap[msg.id];
    delete routeMap[msg.id];
    if (!route) {
      fail('response to unknown request ' + msg.id);
    }
    answered++;
    emit('response', { id: msg.id, route: route, type: msg.type, body: body(route, msg.body),
      protobuf: Boolean(protobuf && serverProtos[route]) });
    maybeKick();
    return;
  }
  let route = msg.route;
  if (msg.compressRoute) {
    if (!abbrs[route]) {
      fail('push with unknown route code ' + route);
    }
    route = abbrs[route];
  }
  emit('push', {
    route: route, compressed: Boolean(msg.compressRoute), code: msg.compressRoute ? msg.route : null,
    type: msg.type, body: body(route, msg.body), protobuf: Boolean(protobuf && serverProtos[route]),
  });
}

function onKick(data) {
  const body = JSON.parse(Protocol.strdecode(data));
  closing = true;
  clearTimers();
  emit('kick', { reason: body.reason, body: body });
}

const handlers = {};
handlers[Package.TYPE_HANDSHAKE] = onHandshake;
handlers[Package.TYPE_HEARTBEAT] = onHeartbeat;
handlers[Package.TYPE_DATA] = onData;
handlers[Package.TYPE_KICK] = onKick;

function processPackage(pkg) {
  const handler = handlers[pkg.type];
  if (!handler) {
    fail('unexpected package type ' + pkg.type);
  }
  handler(pkg.body);
}

socket.on('open', function () {
  emit('open', {});
  send(Package.encode(Package.TYPE_HANDSHAKE, Protocol.strencode(JSON.stringify(HANDSHAKE))));
});

socket.on('message', function (data, isBinary) {
  if (!isBinary) {
    fail('text WebSocket message');
  }
  const packages = Package.decode(data);
  if (Array.isArray(packages)) {
    packages.forEach(processPackage);
  } else {
    processPackage(packages);
  }
  if (heartbeatTimeout) {
    nextHeartbeatTimeout = Date.now() + heartbeatTimeout;
  }
});

socket.on('error', function (err) {
  fail('socket error: ' + err.message);
});

socket.on('close', function (code, reason) {
  clearTimers();
  emit('close', { code: code, reason: reason.toString() });
  process.exit(0);
});
