// otlp_check.js — decodes OTLP/HTTP JSON request bodies with the official
// OpenTelemetry definitions (otlp-transformer's protobufjs code generated
// from opentelemetry-proto) and checks strictly what protobufjs's lenient
// fromObject would let through.  Run by t/lib/forward/OtlpCheck.pm through
// NpmClients::node_script with BODIES naming a JSON file of
// [{"path": ..., "body": "<request body text>"}]; prints one JSON report a
// request: {path, signal, verify, problems: [...], roundtrip, empty_values}.
'use strict';
const fs = require('fs');
const path = require('path');
const root = require(path.join(process.env.NODE_PATH,
	'otlp-proto-definitions/build/src/generated/root.js'));

const v1 = root.opentelemetry.proto;
const Types = {
	traces: v1.collector.trace.v1.ExportTraceServiceRequest,
	logs: v1.collector.logs.v1.ExportLogsServiceRequest,
};
const LogRecord = v1.logs.v1.LogRecord;
const VALUE_FIELDS = ['stringValue', 'boolValue', 'intValue', 'doubleValue',
	'arrayValue', 'kvlistValue', 'bytesValue'];
const INT64_MIN = -(2n ** 63n), INT64_MAX = 2n ** 63n - 1n;

// ---- strict checks on the body as sent ----

function checkAnyValue(v, where, out) {
	if (v === null || typeof v !== 'object' || Array.isArray(v))
		return out.problems.push(`${where}: AnyValue is not an object`);
	const keys = Object.keys(v);
	for (const k of keys)
		if (!VALUE_FIELDS.includes(k)) out.problems.push(`${where}: unknown AnyValue field ${k}`);
	if (keys.length > 1) out.problems.push(`${where}: AnyValue with ${keys.length} value fields`);
	if (keys.length === 0) out.empty_values++;
	if ('intValue' in v) {
		if (typeof v.intValue !== 'string' || !/^-?(0|[1-9][0-9]*)$/.test(v.intValue))
			out.problems.push(`${where}: intValue ${JSON.stringify(v.intValue)} is not a decimal string`);
		else if (BigInt(v.intValue) < INT64_MIN || BigInt(v.intValue) > INT64_MAX)
			out.problems.push(`${where}: intValue ${v.intValue} beyond int64`);
	}
	if ('doubleValue' in v && (typeof v.doubleValue !== 'number' || !Number.isFinite(v.doubleValue)))
		out.problems.push(`${where}: doubleValue ${v.doubleValue} is not a finite number`);
	if ('stringValue' in v && typeof v.stringValue !== 'string')
		out.problems.push(`${where}: stringValue is not a string`);
	if ('boolValue' in v && typeof v.boolValue !== 'boolean')
		out.problems.push(`${where}: boolValue is not a boolean`);
	if ('arrayValue' in v)
		(v.arrayValue.values || []).forEach((e, i) => checkAnyValue(e, `${where}[${i}]`, out));
	if ('kvlistValue' in v)
		checkKeyValues(v.kvlistValue.values || [], where, false, out);
}

// Keys unique in every list; non-empty in attribute lists (OTLP's rule
// for attribute keys; a nested kvlist keeps a data object's keys).
function checkKeyValues(list, where, attributes, out) {
	const seen = new Set();
	for (const kv of list) {
		if (typeof kv.key !== 'string') out.problems.push(`${where}: key is not a string`);
		if (attributes && kv.key === '') out.problems.push(`${where}: empty attribute key`);
		if (seen.has(kv.key)) out.problems.push(`${where}: duplicate key ${JSON.stringify(kv.key)}`);
		seen.add(kv.key);
		checkAnyValue(kv.value, `${where}.${kv.key}`, out);
	}
}

function checkTime(t, where, out) {
	if (typeof t !== 'string' || !/^(0|[1-9][0-9]*)$/.test(t) || BigInt(t) > INT64_MAX)
		out.problems.push(`${where}: ${JSON.stringify(t)} is not a decimal string of a uint64 time`);
}

function checkIds(rec, where, required, out) {
	if ((required || rec.traceId !== undefined)
		&& (!/^[0-9a-f]{32}$/.test(rec.traceId) || /^0+$/.test(rec.traceId)))
		out.problems.push(`${where}: traceId ${rec.traceId} is not 32 hex digits`);
	if ((required || rec.spanId !== undefined)
		&& (!/^[0-9a-f]{16}$/.test(rec.spanId) || /^0+$/.test(rec.spanId)))
		out.problems.push(`${where}: spanId ${rec.spanId} is not 16 hex digits`);
}

function checkSpan(s, where, out) {
	checkIds(s, where, true, out);
	checkTime(s.startTimeUnixNano, `${where}.startTimeUnixNano`, out);
	checkTime(s.endTimeUnixNano, `${where}.endTimeUnixNano`, out);
	if (BigInt(s.startTimeUnixNano) > BigInt(s.endTimeUnixNano))
		out.problems.push(`${where}: starts after it ends`);
	checkKeyValues(s.attributes || [], `${where}.attributes`, true, out);
}

function checkLogRecord(r, where, out) {
	checkIds(r, where, false, out);
	checkTime(r.timeUnixNano, `${where}.timeUnixNano`, out);
	checkTime(r.observedTimeUnixNano, `${where}.observedTimeUnixNano`, out);
	if (!Number.isInteger(r.severityNumber) || r.severityNumber < 1 || r.severityNumber > 24)
		out.problems.push(`${where}: severityNumber ${r.severityNumber}`);
	if (typeof r.eventName !== 'string' || r.eventName === '')
		out.problems.push(`${where}: no eventName`);
	checkAnyValue(r.body, `${where}.body`, out);
	checkKeyValues(r.attributes || [], `${where}.attributes`, true, out);
}

function checkRequest(req, signal, out) {
	const top = signal === 'traces' ? 'resourceSpans' : 'resourceLogs';
	const scopes = signal === 'traces' ? 'scopeSpans' : 'scopeLogs';
	const items = signal === 'traces' ? 'spans' : 'logRecords';
	for (const [i, rs] of (req[top] || []).entries()) {
		const attrs = (rs.resource && rs.resource.attributes) || [];
		checkKeyValues(attrs, `${top}[${i}].resource`, true, out);
		const name = attrs.find((a) => a.key === 'service.name');
		if (!name || typeof name.value.stringValue !== 'string' || name.value.stringValue === '')
			out.problems.push(`${top}[${i}].resource: no service.name string`);
		for (const ss of rs[scopes] || [])
			for (const [j, item] of (ss[items] || []).entries())
				(signal === 'traces' ? checkSpan : checkLogRecord)(item, `${items}[${j}]`, out);
	}
}

// Every doubleValue literal as written: a double holds it (not beyond
// range, not a non-zero that reads as 0) and it is no longer than a
// double's shortest form needs.
function checkDoubleLiterals(text, out) {
	for (const m of text.matchAll(/"doubleValue":(-?[0-9.eE+-]+)/g)) {
		const lit = m[1], d = Number(lit);
		if (!Number.isFinite(d)) out.problems.push(`doubleValue ${lit.slice(0, 30)}... beyond double range`);
		else if (d === 0 && /[1-9]/.test(lit.split(/[eE]/)[0])) out.problems.push(`doubleValue ${lit.slice(0, 30)}... reads as 0`);
		if (lit.length > 25) out.problems.push(`doubleValue literal of ${lit.length} characters`);
	}
}

// ---- the official definitions: verify, and a binary round trip ----

const hexToB64 = (h) => Buffer.from(h, 'hex').toString('base64');
const b64ToHex = (b) => Buffer.from(b, 'base64').toString('hex');

// Applies f to the traceId/spanId of every span and log record.
function mapIds(req, f) {
	const copy = JSON.parse(JSON.stringify(req));
	const walk = (o) => {
		if (Array.isArray(o)) return o.forEach(walk);
		if (o && typeof o === 'object') {
			for (const k of ['traceId', 'spanId', 'parentSpanId'])
				if (typeof o[k] === 'string') o[k] = f(o[k]);
			Object.values(o).forEach(walk);
		}
	};
	walk(copy);
	return copy;
}

// toObject leaves out empty repeated fields: so does the comparison.
function dropEmptyArrays(o) {
	if (Array.isArray(o)) return o.map(dropEmptyArrays);
	if (o && typeof o === 'object') {
		const r = {};
		for (const [k, v] of Object.entries(o))
			if (!(Array.isArray(v) && v.length === 0)) r[k] = dropEmptyArrays(v);
		return r;
	}
	return o;
}

// JSON text with every object's keys sorted: toObject writes fields in
// the order of the .proto, the forwarder in its own.
function canonical(o) {
	if (Array.isArray(o)) return `[${o.map(canonical).join(',')}]`;
	if (o && typeof o === 'object')
		return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
	return JSON.stringify(o);
}

// eventName (LogRecord field 12) came with opentelemetry-proto 1.5; the
// pinned definitions may predate it: then it is checked apart, not lost.
const eventNameKnown = 'eventName' in LogRecord.prototype;
function withoutEventName(req) {
	if (eventNameKnown) return req;
	const copy = JSON.parse(JSON.stringify(req));
	for (const rl of copy.resourceLogs || [])
		for (const sl of rl.scopeLogs || [])
			for (const r of sl.logRecords || []) delete r.eventName;
	return copy;
}

function roundTrip(req, signal, out) {
	const T = Types[signal];
	const msg = T.fromObject(mapIds(req, hexToB64));
	out.verify = T.verify(msg);
	const back = T.toObject(T.decode(T.encode(msg).finish()),
		{ longs: String, enums: Number, bytes: String, defaults: false, arrays: false });
	const want = canonical(dropEmptyArrays(withoutEventName(req)));
	const got = canonical(mapIds(back, b64ToHex));
	out.roundtrip = want === got;
	if (!out.roundtrip) out.roundtrip_diff = { want: want.slice(0, 2000), got: got.slice(0, 2000) };
}

const reports = [];
for (const { path: p, body } of JSON.parse(fs.readFileSync(process.env.BODIES, 'utf8'))) {
	const signal = /\/v1\/logs$/.test(p) ? 'logs' : 'traces';
	const out = { path: p, signal, problems: [], empty_values: 0, event_name_known: eventNameKnown };
	let req;
	try {
		req = JSON.parse(body);
	} catch (e) {
		out.problems.push(`not JSON: ${e.message}`);
		reports.push(out);
		continue;
	}
	checkDoubleLiterals(body, out);
	checkRequest(req, signal, out);
	try {
		roundTrip(req, signal, out);
	} catch (e) {
		out.verify = `threw: ${e.message}`;
	}
	reports.push(out);
}
process.stdout.write(JSON.stringify(reports));
