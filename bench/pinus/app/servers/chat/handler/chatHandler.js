'use strict';
// chat.chatHandler.send: push onChat {msg, from, target} to the whole room
// (target "*") or to one member by name.

class ChatHandler {
    constructor(app) {
        this.app = app;
    }

    async send(msg, session) {
        const rid = session.get('rid');
        const channel = this.app.get('channelService').getChannel(rid, false);
        if (!session.uid || !channel) {
            return { code: 500, error: true };
        }
        const from = session.uid.split('*')[0];
        const param = { msg: msg.content, from, target: msg.target };
        if (msg.target === '*') {
            channel.pushMessage('onChat', param);
        } else {
            const uid = `${msg.target}*${rid}`;
            const member = channel.getMember(uid);
            if (!member) {
                return { code: 500, error: true };
            }
            this.app.get('channelService').pushMessageByUids('onChat', param, [{ uid, sid: member.sid }]);
        }
        return {};
    }
}

exports.default = (app) => new ChatHandler(app);
