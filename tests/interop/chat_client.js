#!/usr/bin/env node
'use strict';
/*
 * Two users of the chat example (examples/chat), each a Pomelo WebSocket
 * client of its own (pomelo_connection.js: pinus-protocol, pinus-protobuf and
 * ws), talking as Pomelo's chat demo client does, so that
 * tests/test_interop.py can check the example against a third-party client.
 *
 * Usage: node chat_client.js GATE_PORT ROOM FIRST SECOND
 *
 * Each user connects to the gate, asks gate.gateHandler.queryEntry
 * {uid: name}, closes the gate connection, connects to the connector named
 * in the answer and enters the room with connector.entryHandler.enter
 * {username, rid}: FIRST, then SECOND, once FIRST is in. Then:
 *   FIRST waits for SECOND's onAdd, then sends chat.chatHandler.send to
 *   everyone; both wait for its onChat;
 *   SECOND sends to everyone, then to FIRST only; FIRST waits for both,
 *   SECOND for the first;
 *   SECOND closes; FIRST waits for its onLeave and closes.
 * Bodies of the routes of the handshake's sys.protos go in protobuf, as
 * pomelo-client.js sends them (the example's: send requests and onChat
 * pushes); every other body is JSON.
 *
 * Every observation is one JSON line on stdout with the fields "user" (the
 * name) and "server" ("gate" or "connector"). Exits 0 once both users have
 * closed, non-zero on an error or after 20 seconds whatever happens.
 */

const { Connection, fail, limit, observer, portArgument } = require('./pomelo_connection');

const LIMIT_MS = 20000;
const USAGE = 'node chat_client.js GATE_PORT ROOM FIRST SECOND';

const gatePort = portArgument(process.argv[2], USAGE);
const [room, first, second] = process.argv.slice(3);
if (!room || !first || !second || process.argv.length !== 6) {
  process.stderr.write('usage: ' + USAGE + '\n');
  process.exit(64);
}
const observe = observer({});
limit(LIMIT_MS, observe);

/*
 * A connection to one server for one user, once its handshake is
 * accepted: its pushes so far, wait() for one, closed() once it closes.
 */
function connect(user, server, host, port) {
  return new Promise(function (resolve) {
    const pushes = [];
    const waiting = [];
    let closed = null;
    const ended = new Promise(function (resolve) { closed = resolve; });
    const connection = new Connection(host, port, observer({ user: user, server: server }), {
      ready: function () { resolve(connection); },
      push: function (route, body) {
        pushes.push({ route: route, body: body });
        waiting.filter((w) => w.matches(route, body)).forEach((w) => w.resolve(body));
      },
      close: function () { closed(); },
      kick: function (body) { fail(observe, user + ' kicked by the ' + server + ': ' + body.reason); },
    });
    // A promise of the first push on route whose body has the given fields.
    connection.wait = function (route, fields) {
      const matches = (r, body) => r === route && Object.keys(fields).every((k) => body[k] === fields[k]);
      const seen = pushes.find((p) => matches(p.route, p.body));
      return seen ? Promise.resolve(seen.body) : new Promise((resolve) => waiting.push({ matches, resolve }));
    };
    connection.closed = function () {
      connection.close();
      return ended;
    };
  });
}

// The demo client's login: the gate, then the connector it names, then the room.
async function enter(user) {
  const gate = await connect(user, 'gate', '127.0.0.1', gatePort);
  const entry = await gate.request('gate.gateHandler.queryEntry', { uid: user });
  await gate.closed();
  if (entry.code !== 200) {
    fail(observe, 'the gate answered ' + JSON.stringify(entry));
  }
  const connector = await connect(user, 'connector', entry.host, entry.port);
  const answer = await connector.request('connector.entryHandler.enter', { username: user, rid: room });
  if (!Array.isArray(answer.users)) {
    fail(observe, user + ' could not enter: ' + JSON.stringify(answer));
  }
  return connector;
}

async function say(from, content, target) {
  const answer = await from.request('chat.chatHandler.send', { content: content, target: target });
  if (Object.keys(answer).length !== 0) {
    fail(observe, 'send answered ' + JSON.stringify(answer));
  }
}

async function converse() {
  const a = await enter(first);
  const b = await enter(second);
  await a.wait('onAdd', { user: second });

  await say(a, 'h\u00e9llo \u4e16\u754c', '*');
  await Promise.all([a, b].map((c) => c.wait('onChat', { from: first })));

  await say(b, 'hi ' + first, '*');
  await say(b, 'just you', first);
  await Promise.all([a.wait('onChat', { from: second, target: '*' }), b.wait('onChat', { from: second }),
    a.wait('onChat', { from: second, target: first })]);

  await b.closed();
  await a.wait('onLeave', { user: second });
  await a.closed();
  observe('done', {});
  process.exit(0);
}

converse().catch((e) => fail(observe, e && e.stack ? e.stack : e));
