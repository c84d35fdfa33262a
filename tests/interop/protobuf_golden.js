// Golden values from npm pinus-protobuf, for tests/test_protobuf.py.
//
// Reads one JSON document on stdin:
//   {"client": <clientProtos.json>, "server": <serverProtos.json>,
//    "encode": [[route, value], ...], "decode": [[route, base64], ...]}
// and writes one JSON document on stdout:
//   {"client": JSON of the parsed client protos, "server": JSON of the parsed
//    server protos, "version": the protos version as pinus's protobuf
//    component computes it, "encoded": [base64 or null, ...],
//    "decoded": [value, ...]}
// Encoding and decoding both use the server protos. With "web": the path of
// the chat page's examples/chat/web/protobuf.js, the output also has
// "web_encoded" and "web_decoded": the same work done by that module
// (loaded as an ES module), from the parsed protos.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { pathToFileURL } = require('url');
const { Protobuf } = require('pinus-protobuf');

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', async () => {
    const doc = JSON.parse(input);
    const client = Protobuf.parse(doc.client);
    const server = Protobuf.parse(doc.server);
    const text = JSON.stringify(client) + JSON.stringify(server);
    const protobuf = new Protobuf({ encoderProtos: server, decoderProtos: server });
    const [warn, error] = [console.warn, console.error];
    console.warn = console.error = () => {};  // the codec logs refusals; stdout stays JSON
    const encoded = doc.encode.map(([route, value]) => {
        const bytes = protobuf.encode(route, value);
        return bytes ? bytes.toString('base64') : null;
    });
    const decoded = doc.decode.map(([route, data]) => protobuf.decode(route, Buffer.from(data, 'base64')));
    [console.warn, console.error] = [warn, error];
    const result = {
        client: JSON.stringify(client),
        server: JSON.stringify(server),
        version: crypto.createHash('md5').update(text).digest('base64'),
        encoded,
        decoded,
    };
    if (doc.web) {
        const copy = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gamenet-')), 'protobuf.mjs');
        fs.copyFileSync(doc.web, copy);
        const { Protobuf: Web } = await import(pathToFileURL(copy).href);
        const web = new Web({ encoderProtos: server, decoderProtos: server });
        result.web_encoded = doc.encode.map(([route, value]) => Buffer.from(web.encode(route, value)).toString('base64'));
        result.web_decoded = doc.decode.map(([route, data]) => web.decode(route, Buffer.from(data, 'base64')));
        fs.rmSync(path.dirname(copy), { recursive: true });
    }
    process.stdout.write(JSON.stringify(result));
});
