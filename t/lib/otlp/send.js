// send.js — sends spans and log records to runra_obs with the official
// OpenTelemetry JS SDK and exporters (t/014_http_otlp.pl).  The plan comes
// in the environment: ENCODING (http = JSON, proto = protobuf), TOKEN,
// COMPRESSION (gzip or none), SANDBOX (a prefix for the sandbox ids),
// T0 (microseconds since 1970, the base of every time), and either
// ENDPOINT (a full /v1/... URL base) or the OTEL_EXPORTER_OTLP_* variables.
// Prints {"spans":[{traceId,spanId}],"results":[{signal,code,error}]}.
const { BasicTracerProvider, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { LoggerProvider, SimpleLogRecordProcessor } = require('@opentelemetry/sdk-logs');
const { resourceFromAttributes } = require('@opentelemetry/resources');

const enc = process.env.ENCODING;
const { OTLPTraceExporter } = require(`@opentelemetry/exporter-trace-otlp-${enc}`);
const { OTLPLogExporter } = require(`@opentelemetry/exporter-logs-otlp-${enc}`);
const sb = process.env.SANDBOX;
const t0 = BigInt(process.env.T0);
// an hrtime [seconds, nanoseconds] at t0 + ms
const at = (ms) => {
  const us = t0 + BigInt(Math.round(ms * 1000));
  return [Number(us / 1000000n), Number(us % 1000000n) * 1000];
};
const results = [];
// records what each export returned (the processors only log it)
const recording = (exporter, signal) => {
  const original = exporter.export.bind(exporter);
  exporter.export = (items, done) => original(items, (r) => {
    results.push({ signal, code: r.code, error: r.error ? String(r.error.message || r.error) : null });
    done(r);
  });
  return exporter;
};
const options = (path) => {
  const o = { compression: process.env.COMPRESSION || 'none' };
  if (process.env.ENDPOINT) {
    o.url = process.env.ENDPOINT + path;
    o.headers = { Authorization: 'Bearer ' + process.env.TOKEN };
  }
  return o;
};

// flushes and shuts down; a failed export is in results, not an exception
async function settle(provider) {
  await provider.forceFlush().catch(() => {});
  await provider.shutdown().catch(() => {});
}

async function spans() {
  const exporter = recording(new OTLPTraceExporter(options('/v1/traces')), 'traces');
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'agents', 'sandbox.id': `${sb}_res` }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const tracer = provider.getTracer('runra-test');
  const made = [];
  // the resource's sandbox; reports its own duration
  let s = tracer.startSpan('exec.completed', { startTime: at(0),
    attributes: { command: 'npm test', exitCode: 0, durationMs: 4521 } });
  s.end(at(4521)); made.push(s);
  // its own sandbox.id; no duration key, so durationMs = end - start
  s = tracer.startSpan('tool.invoked', { startTime: at(1000),
    attributes: { 'sandbox.id': `${sb}_attr`, toolName: 'grep', args: ['-r', 'x'], ratio: 0.5, ok: true } });
  s.end(at(1250.5)); made.push(s);
  await settle(provider);
  return made.map((x) => ({ traceId: x.spanContext().traceId, spanId: x.spanContext().spanId }));
}

async function logs() {
  const exporter = recording(new OTLPLogExporter(options('/v1/logs')), 'logs');
  const provider = new LoggerProvider({
    resource: resourceFromAttributes({ 'service.name': 'agents', 'sandbox.id': `${sb}_res` }),
    processors: [new SimpleLogRecordProcessor({ exporter })],
  });
  const logger = provider.getLogger('runra-test');
  logger.emit({ eventName: 'sandbox.created', timestamp: at(2000),
    body: { image: 'node:20', limits: { cpu: 2, memoryMb: 512 } },
    attributes: { 'sandbox.id': `${sb}_log`, region: 'eu', image: 'not this one' } });
  logger.emit({ timestamp: at(3000), body: 'hello',
    attributes: { 'event.name': 'exec.started', tags: { a: [1, 'b'] } } });
  await settle(provider);
}

(async () => {
  const made = await spans();
  await logs();
  console.log(JSON.stringify({ spans: made, results }));
})().catch((e) => { console.error(e); process.exit(1); });
