// proto_bodies.js — protobuf bodies for t/014_http_otlp.pl, encoded with
// the official OTLP definitions (otlp-transformer's generated protobufjs
// code), and the decoding of protobuf answers.  BODIES_T0 is the base time
// in microseconds.  Prints {"name": hex, ...}; with ANSWER=<hex> and
// SIGNAL=traces|logs|status, prints that answer decoded as JSON instead.
const root = require('otlp-proto-definitions/build/src/generated/root');
const tr = root.opentelemetry.proto.collector.trace.v1;
const lg = root.opentelemetry.proto.collector.logs.v1;

if (process.env.ANSWER !== undefined) {
  const bytes = Buffer.from(process.env.ANSWER, 'hex');
  const type = { traces: tr.ExportTraceServiceResponse, logs: lg.ExportLogsServiceResponse }[process.env.SIGNAL];
  const decoded = type ? type.toObject(type.decode(bytes), { longs: String, defaults: false })
    : { status: bytes.toString('latin1') };
  console.log(JSON.stringify(decoded));
  process.exit(0);
}

const t0 = BigInt(process.env.BODIES_T0);
const ns = (ms) => String(t0 * 1000n + BigInt(ms) * 1000000n);
const str = (key, s) => ({ key, value: { stringValue: s } });
const hex = (h) => Buffer.from(h, 'hex');
const traces = (spans) => tr.ExportTraceServiceRequest.encode(tr.ExportTraceServiceRequest.fromObject({
  resourceSpans: [{ resource: { attributes: [str('service.name', 'x')] }, scopeSpans: [{ spans }] }],
})).finish();
// a kvlist nested n levels deep
const nested = (n) => {
  let v = { stringValue: 'bottom' };
  for (let i = 0; i < n; i++) v = { kvlistValue: { values: [{ key: 'k', value: v }] } };
  return v;
};
const span = (name, ms, attrs) => ({ name, traceId: hex('0af7651916cd43dd8448eb211c80319c'),
  spanId: hex('b7ad6b7169203331'), startTimeUnixNano: ns(ms), endTimeUnixNano: ns(ms), attributes: attrs });

const bodies = {
  partial: traces([span('exec.started', 30, []), span('exec.started', 31, [str('sandbox.id', 'sb_oppart')])]),
  deep_record: traces([span('exec.started', 32, [str('sandbox.id', 'sb_opdeep'), { key: 'd', value: nested(70) }])]),
  deep_body: traces([span('exec.started', 33, [str('sandbox.id', 'sb_opdeep'), { key: 'd', value: nested(200) }])]),

  bad_utf8: Buffer.from(traces([span('exec.started', 35, [str('sandbox.id', 'sb_opx\u00e9')])])),
};
// Far too deep for protobufjs's recursive encoder: written by hand, a span
// whose attribute d is an AnyValue nested in n kvlists, lengths first.
const varint = (n) => { const b = []; while (n > 127) { b.push((n & 127) | 128); n = Math.floor(n / 128); } b.push(n); return b; };
const field = (tag, inner) => Buffer.concat([Buffer.from([tag, ...varint(inner.length)]), inner]);
function deepAnyValue(n) {
  const bottom = field(0x0a, Buffer.from('bottom'));     // AnyValue.string_value
  const any = [bottom.length], kvl = [], kv = [];
  for (let i = 0; i < n; i++) {
    kv[i] = 3 + 1 + varint(any[i]).length + any[i];      // key "k", value
    kvl[i] = 1 + varint(kv[i]).length + kv[i];           // values
    any[i + 1] = 1 + varint(kvl[i]).length + kvl[i];     // kvlist_value
  }
  const out = Buffer.alloc(any[n]);
  let at = 0;
  const put = (bytes) => { for (const x of bytes) out[at++] = x; };
  for (let i = n - 1; i >= 0; i--) {
    put([0x32, ...varint(kvl[i]), 0x0a, ...varint(kv[i]), 0x0a, 1, 0x6b, 0x12, ...varint(any[i])]);
  }
  bottom.copy(out, at);
  return out;
}
const sandboxAttr = field(0x12, field(0x0a, Buffer.from('sb_opdeep')));
const deepSpan = Buffer.concat([field(0x2a, Buffer.from('exec.started')),
  field(0x4a, Buffer.concat([field(0x0a, Buffer.from('sandbox.id')), sandboxAttr.subarray(0)]).subarray(0)),
  field(0x4a, Buffer.concat([field(0x0a, Buffer.from('d')), field(0x12, deepAnyValue(30000))]))]);
bodies.very_deep = field(0x0a, field(0x12, field(0x12, deepSpan)));

// the é's second byte becomes one that cannot follow its first
const i = bodies.bad_utf8.indexOf(Buffer.from('\u00e9'));
bodies.bad_utf8[i + 1] = 0x28;
const out = {};
for (const k of Object.keys(bodies)) out[k] = Buffer.from(bodies[k]).toString('hex');
console.log(JSON.stringify(out));
