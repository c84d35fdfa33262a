'use strict';
// The pinus side of bench/versus.py: one process per server, started as
//   node app.js env=bench serverType=TYPE id=ID host=127.0.0.1 port=N [clientPort=M frontend=true]
// and the master as `node app.js env=bench mode=stand-alone` (which then
// starts no servers itself). The configuration (config/master.json and
// config/servers.json, ports chosen per run) is in the directory named by
// PINUS_BENCH_BASE, next to a link `app` to this directory's app/.
require('reflect-metadata'); // pinus's loaders read decorator metadata
const { pinus } = require('pinus');

const app = pinus.createApp({ base: process.env.PINUS_BENCH_BASE || __dirname });
app.set('name', 'gamenet-bench');

// Pomelo's hybrid connector (WebSocket), JSON bodies, no route dictionary and
// no protobuf, heartbeat 30 s: what bench/_common.py gives gamenet's frontends.
app.configure('all', 'connector|gate', () => {
    app.set('connectorConfig', {
        connector: pinus.connectors.hybridconnector,
        heartbeat: 30,
        useDict: false,
        useProtobuf: false,
        distinctHost: true, // client ports on the server's host (127.0.0.1), not every interface
    });
});

// The rooms of the chat demo live on the chat server their name picks.
app.configure('all', 'connector', () => {
    app.route('chat', (session, msg, application, cb) => {
        const servers = application.getServersByType('chat');
        if (!servers || servers.length === 0) {
            cb(new Error('no chat server'));
            return;
        }
        const rid = String(session.get('rid'));
        let hash = 0;
        for (let i = 0; i < rid.length; i++) {
            hash = (hash * 31 + rid.charCodeAt(i)) >>> 0;
        }
        cb(null, servers[hash % servers.length].id);
    });
});

app.start();
