'use strict';
// connector.echoHandler.echo: the body back, answered by the frontend itself.

class EchoHandler {
    async echo(msg) {
        return msg;
    }
}

exports.default = () => new EchoHandler();
