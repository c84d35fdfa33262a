'use strict';
// chat.chatRemote.add and .kick, called by the connectors: a room is a channel.

function names(channel) {
    return channel.getMembers().map((uid) => uid.split('*')[0]);
}

class ChatRemote {
    constructor(app) {
        this.app = app;
    }

    async add(uid, sid, rid) {
        const channel = this.app.get('channelService').getChannel(rid, true);
        channel.pushMessage('onAdd', { route: 'onAdd', user: uid.split('*')[0] });
        channel.add(uid, sid);
        return names(channel);
    }

    async kick(uid, sid, rid) {
        const channel = this.app.get('channelService').getChannel(rid, false);
        if (channel && channel.leave(uid, sid)) {
            channel.pushMessage('onLeave', { route: 'onLeave', user: uid.split('*')[0] });
        }
    }
}

exports.default = (app) => new ChatRemote(app);
