'use strict';
// connector.entryHandler.enter: join room `rid` as `username` (uid
// "username*rid"); answers the names in the room, or {code: 500, error: true}.

class EntryHandler {
    constructor(app) {
        this.app = app;
    }

    async enter(msg, session) {
        const username = msg && msg.username;
        const rid = msg && msg.rid;
        if (!username || !rid) {
            return { code: 500, error: true };
        }
        const uid = `${username}*${rid}`;
        const sessions = this.app.get('sessionService');
        if (sessions.getByUid(uid)) {
            return { code: 500, error: true };
        }
        await session.abind(uid);
        session.set('rid', rid);
        await session.apush('rid');
        session.on('closed', () => this.left(session));
        const users = await this.app.rpc.chat.chatRemote.add.route(session)(uid, this.app.getServerId(), rid);
        return { users };
    }

    left(session) {
        if (!session || !session.uid) {
            return;
        }
        this.app.rpc.chat.chatRemote.kick.route(session, true)(session.uid, this.app.getServerId(), session.get('rid'))
            .catch((err) => console.error('kick failed:', err && err.message));
    }
}

exports.default = (app) => new EntryHandler(app);
