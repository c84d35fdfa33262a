'use strict';
// gate.gateHandler.queryEntry: the connector a user is to use, picked by its uid.

class GateHandler {
    constructor(app) {
        this.app = app;
    }

    async queryEntry(msg) {
        const uid = msg && msg.uid;
        const connectors = this.app.getServersByType('connector');
        if (!uid || !connectors || connectors.length === 0) {
            return { code: 500 };
        }
        let hash = 0;
        for (const ch of String(uid)) {
            hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
        }
        const chosen = connectors[hash % connectors.length];
        return { code: 200, host: chosen.host, port: chosen.clientPort };
    }
}

exports.default = (app) => new GateHandler(app);
