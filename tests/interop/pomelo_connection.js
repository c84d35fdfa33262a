'use strict';
/*
 * One Pomelo WebSocket connection built from a third-party codec
 * (pinus-protocol) and the ws library, doing what pomelo-jsclient-websocket's
 * pomelo-client.js does: the handshake and its ack, the route dictionary,
 * the heartbeat, requests, notifies, responses, pushes and the kick. The
 * scripts of tests/interop (pomelo_client.js, chat_client.js) hold their
 * conversations over it.
 *
 * When the handshake carries sys.protos, bodies of their routes go in
 * protobuf with npm pinus-protobuf, as pomelo-client.js does with its
 * protobuf component: requests and notifies encoded with protos.client,
 * answers and pushes decoded with protos.server; the "protobuf" field of
 * each sent, response and push observation says which it was.
 *
 * Every observation goes through an observe(event, fields) function,
 * which observer() makes: one JSON line on stdout.
 */

const { Package, Message, Protocol } = require('pinus-protocol');
const { Protobuf } = require('pinus-protobuf');
const WebSocket = require('ws');

// The JS client's handshake, as pomelo-jsclient-websocket sends it.
const HANDSHAKE = {
  sys: { type: 'js-websocket', version: '0.0.1', rsa: {}, protoVersion: 0 },
  user: {},
};

/*
 * An observe function writing {event, ...labels, ...fields} as one JSON
 * line on stdout.
 */
function observer(labels) {
  return function (event, fields) {
    process.stdout.write(JSON.stringify(Object.assign({ event: event }, labels, fields)) + '\n');
  };
}

// Observe an error and exit 1.
function fail(observe, reason) {
  observe('error', { reason: String(reason) });
  process.exit(1);
}

// Observe a timeout and exit 2 after ms milliseconds, whatever happens.
function limit(ms, observe) {
  setTimeout(function () {
    observe('timeout', { ms: ms });
    process.exit(2);
  }, ms);
}

// A port number from the command line, or exit 64 with the usage.
function portArgument(value, usage) {
  const port = Number(value);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    process.stderr.write('usage: ' + usage + '\n');
    process.exit(64);
  }
  return port;
}

/*
 * A connection to ws://HOST:PORT/ that sends the handshake once open.
 * hooks, all optional, are called after the observation of what they name:
 *   ready(sys): the handshake was accepted and its ack sent;
 *   heartbeat(): a heartbeat came from the server;
 *   response(route, body): an answer came (request() also resolves with it);
 *   push(route, body): a push came;
 *   kick(body): a kick package came;
 *   close(code, reason): the socket closed.
 * Any protocol error observes an error and exits 1.
 */
class Connection {
  constructor(host, port, observe, hooks) {
    this.observe = observe;
    this.hooks = hooks || {};
    // Client state, named as in pomelo-client.js.
    this.dict = null;   // route -> code
    this.abbrs = {};    // code -> route
    this.protobuf = null;
    this.clientProtos = {};
    this.serverProtos = {};
    this.heartbeatInterval = 0;
    this.heartbeatTimeout = 0;
    this.heartbeatId = null;
    this.heartbeatTimeoutId = null;
    this.nextHeartbeatTimeout = 0;
    this.reqId = 0;
    this.routeMap = {};  // request id -> route, to name responses
    this.callbacks = {};  // request id -> resolve of request()'s promise
    this.heartbeatsSent = 0;
    this.roundTrips = 0;
    this.closing = false;

    const handlers = {};
    handlers[Package.TYPE_HANDSHAKE] = this.onHandshake;
    handlers[Package.TYPE_HEARTBEAT] = this.onHeartbeat;
    handlers[Package.TYPE_DATA] = this.onData;
    handlers[Package.TYPE_KICK] = this.onKick;
    this.handlers = handlers;

    const socket = new WebSocket('ws://' + host + ':' + port + '/');
    socket.binaryType = 'nodebuffer';
    this.socket = socket;
    socket.on('open', () => {
      observe('open', {});
      this.send(Package.encode(Package.TYPE_HANDSHAKE, Protocol.strencode(JSON.stringify(HANDSHAKE))));
    });
    socket.on('message', (data, isBinary) => {
      if (!isBinary) {
        this.fail('text WebSocket message');
      }
      const packages = Package.decode(data);
      (Array.isArray(packages) ? packages : [packages]).forEach((pkg) => this.processPackage(pkg));
      if (this.heartbeatTimeout) {
        this.nextHeartbeatTimeout = Date.now() + this.heartbeatTimeout;
      }
    });
    socket.on('error', (err) => this.fail('socket error: ' + err.message));
    socket.on('close', (code, reason) => {
      this.clearTimers();
      observe('close', { code: code, reason: reason.toString() });
      this.call('close', code, reason.toString());
    });
  }

  fail(reason) {
    fail(this.observe, reason);
  }

  call(hook, ...args) {
    if (this.hooks[hook]) {
      this.hooks[hook](...args);
    }
  }

  send(packet) {
    this.socket.send(packet, { binary: true });
  }

  /*
   * pomelo-client.js's defaultEncode: a request when there is an id, a notify
   * otherwise; the route goes as its dictionary code when the dictionary has
   * it. compress === false sends the route as a string anyway, as a client
   * holding no dictionary does.
   */
  encode(id, route, msg, compress) {
    const type = id ? Message.TYPE_REQUEST : Message.TYPE_NOTIFY;
    const binary = Boolean(this.protobuf && this.clientProtos[route]);
    const body = binary ? this.protobuf.encode(route, msg) : Protocol.strencode(JSON.stringify(msg));
    let compressRoute = false;
    let wireRoute = route;
    if (compress !== false && this.dict && this.dict[route]) {
      wireRoute = this.dict[route];
      compressRoute = true;
    }
    return { bytes: Message.encode(id, type, compressRoute, wireRoute, body), compressed: compressRoute,
      protobuf: binary };
  }

  // Send a request; a promise of the answer's body.
  request(route, msg, compress) {
    const id = ++this.reqId;
    this.routeMap[id] = route;
    const answer = new Promise((resolve) => { this.callbacks[id] = resolve; });
    const encoded = this.encode(id, route, msg, compress);
    this.send(Package.encode(Package.TYPE_DATA, encoded.bytes));
    this.observe('sent', { type: 'request', id: id, route: route, compressed: encoded.compressed,
      flag: encoded.bytes[0], protobuf: encoded.protobuf });
    return answer;
  }

  notify(route, msg) {
    const encoded = this.encode(0, route, msg);
    this.send(Package.encode(Package.TYPE_DATA, encoded.bytes));
    this.observe('sent', { type: 'notify', route: route, compressed: encoded.compressed, flag: encoded.bytes[0],
      protobuf: encoded.protobuf });
  }

  // Close the socket; the close hook is called once it has closed.
  close() {
    this.closing = true;
    this.clearTimers();
    this.socket.close();
  }

  clearTimers() {
    if (this.heartbeatId) { clearTimeout(this.heartbeatId); this.heartbeatId = null; }
    if (this.heartbeatTimeoutId) { clearTimeout(this.heartbeatTimeoutId); this.heartbeatTimeoutId = null; }
  }

  processPackage(pkg) {
    const handler = this.handlers[pkg.type];
    if (!handler) {
      this.fail('unexpected package type ' + pkg.type);
    }
    handler.call(this, pkg.body);
  }

  onHandshake(data) {
    const answer = JSON.parse(Protocol.strdecode(data));
    const sys = answer.sys || {};
    this.observe('handshake', { code: answer.code, heartbeat: sys.heartbeat, dict: sys.dict, sys: sys });
    if (answer.code !== 200) {
      this.fail('handshake refused with code ' + answer.code);
    }
    // handshakeInit / initData
    if (sys.heartbeat) {
      this.heartbeatInterval = sys.heartbeat * 1000;
      this.heartbeatTimeout = this.heartbeatInterval * 2;
    }
    this.dict = sys.dict || null;
    this.abbrs = {};
    if (this.dict) {
      for (const route in this.dict) {
        this.abbrs[this.dict[route]] = route;
      }
    }
    if (sys.protos) {
      this.clientProtos = sys.protos.client || {};
      this.serverProtos = sys.protos.server || {};
      this.protobuf = new Protobuf({ encoderProtos: this.clientProtos, decoderProtos: this.serverProtos });
    }
    this.send(Package.encode(Package.TYPE_HANDSHAKE_ACK));
    this.observe('sent', { type: 'ack' });
    this.call('ready', sys);
  }

  heartbeatTimeoutCb() {
    const gap = this.nextHeartbeatTimeout - Date.now();
    if (gap > 100) {
      this.heartbeatTimeoutId = setTimeout(() => this.heartbeatTimeoutCb(), gap);
    } else {
      this.fail('server heartbeat timeout');
    }
  }

  // pomelo-client.js's heartbeat: answer the server's heartbeat after the interval.
  onHeartbeat() {
    if (this.heartbeatsSent > 0) {
      this.roundTrips++;
    }
    this.observe('heartbeat', { sent_before: this.heartbeatsSent, round_trips: this.roundTrips });
    this.call('heartbeat');
    if (!this.heartbeatInterval) {
      return;
    }
    if (this.heartbeatTimeoutId) {
      clearTimeout(this.heartbeatTimeoutId);
      this.heartbeatTimeoutId = null;
    }
    if (this.heartbeatId || this.closing) {
      return;
    }
    this.heartbeatId = setTimeout(() => {
      this.heartbeatId = null;
      if (this.closing) {
        return;
      }
      this.send(Package.encode(Package.TYPE_HEARTBEAT));
      this.heartbeatsSent++;
      this.nextHeartbeatTimeout = Date.now() + this.heartbeatTimeout;
      this.heartbeatTimeoutId = setTimeout(() => this.heartbeatTimeoutCb(), this.heartbeatTimeout);
    }, this.heartbeatInterval);
  }

  // pomelo-client.js's deCompose: protobuf for the routes of serverProtos.
  isProtobuf(route) {
    return Boolean(this.protobuf && this.serverProtos[route]);
  }

  body(route, bytes) {
    return this.isProtobuf(route) ? this.protobuf.decode(route, bytes) : JSON.parse(Protocol.strdecode(bytes));
  }

  // pomelo-client.js's defaultDecode and deCompose.
  onData(data) {
    const msg = Message.decode(data);
    if (msg.id > 0) {
      const route = this.routeMap[msg.id];
      const resolve = this.callbacks[msg.id];
      delete this.routeMap[msg.id];
      delete this.callbacks[msg.id];
      if (!route) {
        this.fail('response to unknown request ' + msg.id);
      }
      const body = this.body(route, msg.body);
      this.observe('response', { id: msg.id, route: route, type: msg.type, body: body,
        protobuf: this.isProtobuf(route) });
      this.call('response', route, body);
      resolve(body);
      return;
    }
    let route = msg.route;
    if (msg.compressRoute) {
      if (!this.abbrs[route]) {
        this.fail('push with unknown route code ' + route);
      }
      route = this.abbrs[route];
    }
    const body = this.body(route, msg.body);
    this.observe('push', {
      route: route, compressed: Boolean(msg.compressRoute), code: msg.compressRoute ? msg.route : null,
      type: msg.type, body: body, protobuf: this.isProtobuf(route),
    });
    this.call('push', route, body);
  }

  onKick(data) {
    const body = JSON.parse(Protocol.strdecode(data));
    this.closing = true;
    this.clearTimers();
    this.observe('kick', { reason: body.reason, body: body });
    this.call('kick', body);
  }
}

module.exports = { Connection, fail, limit, observer, portArgument };
