'use strict';
// area.echoHandler.echo: the body back, from a backend the connector forwards to.

class EchoHandler {
    async echo(msg) {
        return msg;
    }
}

exports.default = () => new EchoHandler();
