/**
 * protobuf.js: Pomelo's protobuf body format (npm pomelo-protobuf /
 * pinus-protobuf) for the browser. An ES module with no dependencies.
 *
 *   import { Protobuf } from "./protobuf.js";
 *
 *   // The handshake's sys.protos: {client, server, version}, in parsed form.
 *   const codec = new Protobuf({ encoderProtos: protos.client, decoderProtos: protos.server });
 *   codec.encode("chat.chatHandler.send", { content: "hi", target: "*" });  // Uint8Array, or null: no schema
 *   codec.decode("onChat", bytes);                                         // an object, or null: no schema
 *
 * The format is Pomelo's, not Google's: int32 is zigzag like sInt32; a
 * repeated number field is one key, the count of elements, the elements;
 * fields go out in the order of the object's keys; keys without a field are
 * left out. encode and decode throw an Error on a value or bytes that do not
 * fit the schema. Numbers are exact up to 2^53, as JavaScript's are.
 */

const WIRE = { uInt32: 0, uInt64: 0, sInt32: 0, sInt64: 0, int32: 0, bool: 0, double: 1, float: 5, string: 2 };
const ZIGZAG = new Set(["sInt32", "sInt64", "int32"]);
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

class Writer {
  constructor() { this.bytes = []; }
  varint(n) {
    if (!Number.isInteger(n) || n < 0) throw new Error(`${n} is not a whole number from 0`);
    do {
      const low = n % 128;
      n = Math.floor(n / 128);
      this.bytes.push(n > 0 ? low | 0x80 : low);
    } while (n > 0);
  }
  fixed(n, size) {
    const view = new DataView(new ArrayBuffer(size));
    if (size === 4) view.setFloat32(0, n, true); else view.setFloat64(0, n, true);
    this.bytes.push(...new Uint8Array(view.buffer));
  }
  raw(bytes) { this.varint(bytes.length); for (const b of bytes) this.bytes.push(b); }
}

class Reader {
  constructor(bytes, offset = 0, end = bytes.length) { this.b = bytes; this.at = offset; this.end = end; }
  varint() {
    let n = 0, scale = 1, byte;
    do {
      if (this.at >= this.end) throw new Error("truncated varint");
      byte = this.b[this.at++];
      n += (byte & 0x7f) * scale;
      scale *= 128;
    } while (byte & 0x80);
    return n;
  }
  take(size, what) {
    if (this.at + size > this.end) throw new Error(`${what}: length past the end`);
    const start = this.at;
    this.at += size;
    return start;
  }
}

export class Protobuf {
  /** encoderProtos: the schemas of what this side sends; decoderProtos: of what it receives. */
  constructor({ encoderProtos = {}, decoderProtos = {} } = {}) {
    this.encoderProtos = encoderProtos;
    this.decoderProtos = decoderProtos;
  }

  /** Whether a route's bodies are protobuf this way. */
  encodes(route) { return Object.prototype.hasOwnProperty.call(this.encoderProtos, route); }
  decodes(route) { return Object.prototype.hasOwnProperty.call(this.decoderProtos, route); }

  encode(route, msg) {
    if (!this.encodes(route)) return null;
    const out = new Writer();
    this._message(out, this.encoderProtos[route], msg, this.encoderProtos);
    return new Uint8Array(out.bytes);
  }

  decode(route, bytes) {
    if (!this.decodes(route)) return null;
    const protos = this.decoderProtos;
    return this._read(new Reader(bytes), this.decoderProtos[route], protos);
  }

  _nested(scope, type, protos) {
    const found = (scope.__messages || {})[type] || protos[`message ${type}`];
    if (!found) throw new Error(`unknown type ${type}`);
    return found;
  }

  _message(out, schema, msg, protos) {
    if (msg === null || typeof msg !== "object" || Array.isArray(msg)) throw new Error("the body is not an object");
    for (const [name, field] of Object.entries(schema)) {
      if (field.option === "required" && msg[name] === undefined) throw new Error(`field ${name} is required`);
    }
    for (const [name, value] of Object.entries(msg)) {
      const field = name.startsWith("__") ? undefined : schema[name];
      if (!field || value === undefined) continue;
      const wire = field.type in WIRE ? WIRE[field.type] : 2;
      const key = field.tag * 8 + wire;
      if (field.option !== "repeated") {
        out.varint(key);
        this._value(out, field.type, value, schema, protos);
      } else if (!Array.isArray(value)) {
        throw new Error(`field ${name} is not an array`);
      } else if (value.length && wire !== 2) {
        out.varint(key);
        out.varint(value.length);
        for (const item of value) this._value(out, field.type, item, schema, protos);
      } else {
        for (const item of value) { out.varint(key); this._value(out, field.type, item, schema, protos); }
      }
    }
  }

  _value(out, type, value, scope, protos) {
    if (type === "string") {
      if (typeof value !== "string") throw new Error(`${value} is not a string`);
      out.raw(utf8.encode(value));
    } else if (type === "bool") out.varint(value ? 1 : 0);
    else if (type in WIRE && WIRE[type] === 0) {
      const n = Math.trunc(Number(value));
      out.varint(ZIGZAG.has(type) ? (n < 0 ? -2 * n - 1 : 2 * n) : n);
    } else if (type === "float" || type === "double") {
      if (typeof value !== "number" || !Number.isFinite(value)) throw new Error(`${value} is not a finite number`);
      out.fixed(value, type === "float" ? 4 : 8);
    } else {
      const inner = new Writer();
      this._message(inner, this._nested(scope, type, protos), value, protos);
      out.raw(inner.bytes);
    }
  }

  _read(reader, schema, protos) {
    const msg = {};
    const tags = schema.__tags || {};
    while (reader.at < reader.end) {
      const key = reader.varint();
      const name = tags[Math.floor(key / 8)];
      if (name === undefined) throw new Error(`unknown field number ${Math.floor(key / 8)}`);
      const field = schema[name];
      const wire = field.type in WIRE ? WIRE[field.type] : 2;
      if (key % 8 !== wire) throw new Error(`field ${name}: wire type ${key % 8}, expected ${wire}`);
      if (field.option !== "repeated") msg[name] = this._readValue(reader, field.type, schema, protos, name);
      else {
        const items = msg[name] || (msg[name] = []);
        const count = wire === 2 ? 1 : reader.varint();
        if (count > reader.end - reader.at) throw new Error(`field ${name}: length past the end`);
        for (let i = 0; i < count; i++) items.push(this._readValue(reader, field.type, schema, protos, name));
      }
    }
    for (const [name, field] of Object.entries(schema)) {
      if (field.option === "required" && !(name in msg)) throw new Error(`field ${name} is required`);
    }
    return msg;
  }

  _readValue(reader, type, scope, protos, name) {
    if (type === "float" || type === "double") {
      const size = type === "float" ? 4 : 8;
      const at = reader.take(size, `field ${name}`);
      const view = new DataView(reader.b.buffer, reader.b.byteOffset + at, size);
      return size === 4 ? view.getFloat32(0, true) : view.getFloat64(0, true);
    }
    if (type in WIRE) {
      if (type !== "string") {
        const n = reader.varint();
        if (type === "bool") return n !== 0;
        return ZIGZAG.has(type) ? (n % 2 ? -(n + 1) / 2 : n / 2) : n;
      }
      const size = reader.varint();
      const at = reader.take(size, `field ${name}`);
      return fromUtf8.decode(reader.b.subarray(at, at + size));
    }
    const size = reader.varint();
    const at = reader.take(size, `field ${name}`);
    return this._read(new Reader(reader.b, at, at + size), this._nested(scope, type, protos), protos);
  }
}
