#!/usr/bin/env node
'use strict';
/*
 * A Pomelo WebSocket client built from a third-party codec (pinus-protocol)
 * and the ws library (pomelo_connection.js), doing what
 * pomelo-jsclient-websocket does, so that tests/test_interop.py can check
 * gamenet against it.
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
 * Bodies of the routes of the handshake's sys.protos go in protobuf
 * (pomelo_connection.js says how).
 *
 * Every observation is one JSON line on stdout. Exits 0 after the socket
 * closes, non-zero on an error or after 20 seconds whatever happens.
 */

const { Connection, limit, observer, portArgument } = require('./pomelo_connection');

const LIMIT_MS = 20000;
const HEARTBEAT_ROUND_TRIPS = 2;

const port = portArgument(process.argv[2], 'node pomelo_client.js PORT');
const observe = observer({});
limit(LIMIT_MS, observe);

let answered = 0;
let kickRequested = false;

function maybeKick() {
  // Everything answered and the heartbeat seen working: ask to be kicked.
  if (!kickRequested && answered >= 3 && connection.roundTrips >= HEARTBEAT_ROUND_TRIPS) {
    kickRequested = true;
    connection.request('connector.game.kickme', { reason: 'interop done' });
  }
}

const connection = new Connection('127.0.0.1', port, observe, {
  ready: function () {
    connection.request('connector.game.echo', { text: 'hello \u00e9', n: [1, 2, 3] }, false);
    connection.request('connector.game.upper', { text: 'compressed route' });
    connection.notify('connector.game.note', { note: 'a notify' });
    connection.request('connector.game.pushme', { n: 7 });
  },
  heartbeat: maybeKick,
  response: function () {
    answered++;
    maybeKick();
  },
  close: function () {
    process.exit(0);
  },
});
