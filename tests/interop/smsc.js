#!/usr/bin/env node
// An SMSC built on the npm `smpp` package: a peer that is not ours, to test masd's SMPP driver against.
//
//   node smsc.js --port 0 --control-port 0 --system-id masd --password secret [options]
//
// It accepts bind_transceiver / bind_transmitter / bind_receiver with that system_id and password,
// answers submit_sm with a message id, sends a delivery receipt for each one that asks for it (deliver_sm,
// esm_class 0x04, receipted_message_id and message_state TLVs, text "id:.. stat:DELIVRD ...") after a
// delay, answers every Nth submit_sm with ESME_RTHROTTLED (0x58) when told to, injects mobile-originated
// messages (deliver_sm, esm_class 0, split with a UDH when long) and drops its connections on command.
// Receipts and MOs that a dropped link did not acknowledge are sent again when a receiver binds again,
// as an SMSC does.
//
// Options (each also from the environment as SMSC_<NAME>, e.g. SMSC_PASSWORD):
//   --host H               listen address (127.0.0.1)
//   --port P               SMPP port; 0 picks a free one (2775)
//   --control-port P       HTTP control port on 127.0.0.1; 0 picks a free one, -1 none (-1)
//   --system-id S          (masd)          --password S    (masd)
//   --receipt-delay MS     delay before a receipt (50)
//   --receipt-stat S       DELIVRD | UNDELIV | REJECTD | EXPIRED ... (DELIVRD)
//   --throttle-every N     answer every Nth submit_sm with 0x58; 0 never (0)
//   --id-format F          hex | dec: how message ids are written (hex)
//   --record FILE          append what it receives as JSON lines to FILE; "-" stdout; "none" nowhere (none)
//   --keep N               keep the last N records in memory for GET /received (100000)
//
// The first line on stdout is {"event":"listening","port":P,"control_port":C}. Control, on stdin one
// command a line, or over HTTP:
//   stats                                  GET  /stats
//   received [SINCE]                       GET  /received?since=N     records with index >= N
//   mo {"from":..,"to":..,"text":..,       POST /mo {...}             "parts": force N parts; "udh16": 16-bit ref
//       "data_coding":8}
//   drop [{"block_ms":M}]                  POST /drop {...}           close every link; refuse binds for M ms
//   throttle N                             POST /throttle {"every":N}
//   set {"receipt_delay":MS,"receipt_stat":S}  POST /set {...}
// stdin commands answer with one JSON line on stdout; JSON lines {"op":"stats"} work too.
'use strict';

const http = require('http');
const fs = require('fs');
const readline = require('readline');
const smpp = require('smpp');

// ----- options -----------------------------------------------------------------------------------------

function parseArgs(argv) {
	const opts = {
		host: '127.0.0.1',
		port: 2775,
		control_port: -1,
		system_id: 'masd',
		password: 'masd',
		receipt_delay: 50,
		receipt_stat: 'DELIVRD',
		throttle_every: 0,
		id_format: 'hex',
		record: 'none',
		keep: 100000,
	};
	for (const key of Object.keys(opts)) {
		const env = process.env['SMSC_' + key.toUpperCase()];
		if (env !== undefined) opts[key] = env;
	}
	for (let i = 0; i < argv.length; i++) {
		const arg = argv[i];
		if (!arg.startsWith('--')) throw new Error('unexpected argument ' + arg);
		let name = arg.slice(2);
		let value;
		const eq = name.indexOf('=');
		if (eq >= 0) {
			value = name.slice(eq + 1);
			name = name.slice(0, eq);
		} else {
			value = argv[++i];
		}
		const key = name.replace(/-/g, '_');
		if (!(key in opts)) throw new Error('unknown option --' + name);
		if (value === undefined) throw new Error('--' + name + ' needs a value');
		opts[key] = value;
	}
	for (const key of ['port', 'control_port', 'receipt_delay', 'throttle_every', 'keep']) {
		opts[key] = Number(opts[key]);
		if (!Number.isFinite(opts[key])) throw new Error('--' + key.replace(/_/g, '-') + ' must be a number');
	}
	return opts;
}

const opts = parseArgs(process.argv.slice(2));

// ----- recording ---------------------------------------------------------------------------------------

const records = [];
let recordBase = 0; // index of records[0]
let recordOut = null;
if (opts.record === '-') recordOut = process.stdout;
else if (opts.record !== 'none') recordOut = fs.createWriteStream(opts.record, {flags: 'a'});

function record(event, fields) {
	const rec = Object.assign({event: event, t: Date.now() / 1000}, fields);
	if (opts.keep > 0) {
		records.push(rec);
		if (records.length > opts.keep) {
			records.shift();
			recordBase++;
		}
	}
	if (recordOut) recordOut.write(JSON.stringify(rec) + '\n');
}

function out(obj) {
	process.stdout.write(JSON.stringify(obj) + '\n');
}

// ----- state -------------------------------------------------------------------------------------------

const stats = {
	connections: 0,
	binds: 0,
	bind_failures: 0,
	submits: 0,
	submits_ok: 0,
	throttled: 0,
	receipts_sent: 0,
	receipts_acked: 0,
	mo_sent: 0,
	mo_acked: 0,
	drops: 0,
	started: Date.now() / 1000,
};
let nextId = 0x10000;
let blockUntil = 0;
const sessions = new Set(); // bound sessions
const outbox = []; // deliver_sm waiting for a receiver: {kind, fields}
let rr = 0;
let moRef = 0;

const STATES = {DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7, REJECTD: 8};

function newMessageId() {
	const n = nextId++;
	return opts.id_format === 'dec' ? String(n) : n.toString(16).toUpperCase();
}

// Raw bytes, not the package's decoded {udh, message}: the tests check exactly what came over the wire.
smpp.commands.submit_sm.params.short_message.filter = null;
smpp.tlvs.message_payload.filter = null;

function smppDate(d) {
	const p = (n) => String(n).padStart(2, '0');
	return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) + p(d.getUTCHours()) +
		p(d.getUTCMinutes());
}

function decodeBody(dataCoding, body) {
	const dc = dataCoding & 0x0f;
	if (dataCoding === 8 || dc === 8) return smpp.encodings.UCS2.decode(body);
	if (dc === 3) return smpp.encodings.LATIN1.decode(body);
	return smpp.gsmCoder.decode(body, 0x00);
}

function splitUdh(esmClass, raw) {
	if (!(esmClass & 0x40) || raw.length === 0) return {udh: null, body: raw};
	const len = raw[0] + 1;
	return {udh: raw.slice(0, len), body: raw.slice(len)};
}

// Concatenation information element of a UDH: {ref, total, seq} or null.
function concatInfo(udh) {
	if (!udh) return null;
	let i = 1;
	while (i + 1 < udh.length) {
		const iei = udh[i];
		const len = udh[i + 1];
		const data = udh.slice(i + 2, i + 2 + len);
		if (iei === 0x00 && len === 3) return {ref: data[0], total: data[1], seq: data[2], bits: 8};
		if (iei === 0x08 && len === 4) return {ref: data.readUInt16BE(0), total: data[2], seq: data[3], bits: 16};
		i += 2 + len;
	}
	return null;
}

// ----- outbound deliver_sm: receipts and MOs -----------------------------------------------------------

function receivers(systemId) {
	return [...sessions].filter((s) => s.bound && s.bound.rx && (!systemId || s.bound.system_id === systemId));
}

function deliver(item) {
	const rx = receivers(item.system_id);
	if (rx.length === 0) {
		outbox.push(item);
		return;
	}
	const session = rx[rr++ % rx.length];
	const pdu = new smpp.PDU('deliver_sm', Object.assign({}, item.fields));
	const ok = session.send(pdu, (resp) => {
		session.pending.delete(pdu.sequence_number);
		if (resp.command_status === 0) {
			if (item.kind === 'receipt') stats.receipts_acked++;
			else stats.mo_acked++;
			record(item.kind + '_acked', {message_id: item.message_id, status: resp.command_status});
		} else {
			// A refused deliver_sm is tried again later, as an SMSC retries.
			record(item.kind + '_refused', {message_id: item.message_id, status: resp.command_status});
			setTimeout(() => deliver(item), 200);
		}
	});
	if (!ok) {
		outbox.push(item);
		return;
	}
	session.pending.set(pdu.sequence_number, item);
	if (item.kind === 'receipt') stats.receipts_sent++;
	else stats.mo_sent++;
}

function flushOutbox() {
	const items = outbox.splice(0, outbox.length);
	for (const item of items) deliver(item);
}

function scheduleReceipt(session, pdu, messageId, submittedAt) {
	const stat = String(opts.receipt_stat);
	const state = STATES[stat] || 7;
	const now = new Date();
	const text = 'id:' + messageId + ' sub:001 dlvrd:' + (state === 2 ? '001' : '000') + ' submit date:' +
		smppDate(submittedAt) + ' done date:' + smppDate(now) + ' stat:' + stat + ' err:' +
		(state === 2 ? '000' : '001') + ' text:';
	deliver({
		kind: 'receipt',
		message_id: messageId,
		system_id: session.bound.system_id,
		fields: {
			service_type: '',
			source_addr_ton: pdu.dest_addr_ton,
			source_addr_npi: pdu.dest_addr_npi,
			source_addr: pdu.destination_addr,
			dest_addr_ton: pdu.source_addr_ton,
			dest_addr_npi: pdu.source_addr_npi,
			destination_addr: pdu.source_addr,
			esm_class: 0x04,
			data_coding: 0,
			short_message: Buffer.from(text, 'latin1'),
			receipted_message_id: messageId,
			message_state: state,
		},
	});
}

const GSM_EXTENDED = '^{}\\[~]|\u20ac\f';

function isGsm(text) {
	return smpp.encodings.ASCII.match(text);
}

// Inject a mobile-originated message; long texts (or "parts": N) go as N deliver_sm with a UDH.
function injectMo(req) {
	const from = String(req.from || '13800138000');
	const to = String(req.to || '106570001');
	const text = String(req.text || '');
	const gsm = req.data_coding === undefined ? isGsm(text) : req.data_coding !== 8;
	const dataCoding = gsm ? 0 : 8;
	const chars = Array.from(text); // code points; a surrogate pair never splits
	// What a character costs: GSM escapes two septets, UCS-2 surrogate pairs two code units.
	const cost = (c) => (gsm ? (GSM_EXTENDED.includes(c) ? 2 : 1) : c.length);
	const total = chars.reduce((n, c) => n + cost(c), 0);
	let chunks = [];
	if (req.parts) {
		const size = Math.ceil(chars.length / Number(req.parts));
		for (let i = 0; i < Number(req.parts); i++) chunks.push(chars.slice(i * size, (i + 1) * size).join(''));
	} else if (total <= (gsm ? 160 : 70)) {
		chunks = [text];
	} else {
		const limit = gsm ? 153 : 67;
		let cur = '';
		let used = 0;
		for (const c of chars) {
			if (used + cost(c) > limit) {
				chunks.push(cur);
				cur = '';
				used = 0;
			}
			cur += c;
			used += cost(c);
		}
		if (cur) chunks.push(cur);
	}
	const parts = chunks.length;
	const ref = (moRef = (moRef + 1) & (req.udh16 ? 0xffff : 0xff));
	const encode = (s) => (gsm ? smpp.gsmCoder.encode(s, 0x00) : smpp.encodings.UCS2.encode(s));
	chunks.forEach((chunk, i) => {
		let body = encode(chunk);
		let esm = 0;
		if (parts > 1) {
			const udh = req.udh16
				? Buffer.from([6, 0x08, 4, ref >> 8, ref & 0xff, parts, i + 1])
				: Buffer.from([5, 0x00, 3, ref, parts, i + 1]);
			body = Buffer.concat([udh, body]);
			esm = 0x40;
		}
		deliver({
			kind: 'mo',
			message_id: 'mo' + ref + '.' + (i + 1),
			system_id: req.system_id || null,
			fields: {
				source_addr_ton: 1,
				source_addr_npi: 1,
				source_addr: from,
				dest_addr_ton: 0,
				dest_addr_npi: 1,
				destination_addr: to,
				esm_class: esm,
				data_coding: dataCoding,
				short_message: body,
			},
		});
	});
	record('mo', {from: from, to: to, text: text, parts: parts, data_coding: dataCoding});
	return {parts: parts, data_coding: dataCoding};
}

function drop(req) {
	const blockMs = Number((req && req.block_ms) || 0);
	blockUntil = Date.now() + blockMs;
	const n = allSockets.size;
	for (const socket of [...allSockets]) socket.destroy();
	stats.drops++;
	record('drop', {links: n, block_ms: blockMs});
	return {dropped: n};
}

// ----- the SMPP server ---------------------------------------------------------------------------------

const allSockets = new Set();

const BIND = {
	bind_transceiver: {tx: true, rx: true},
	bind_transmitter: {tx: true, rx: false},
	bind_receiver: {tx: false, rx: true},
};

const server = smpp.createServer((session) => {
	stats.connections++;
	session.bound = null;
	session.pending = new Map();
	const peer = session.socket.remoteAddress + ':' + session.socket.remotePort;
	allSockets.add(session.socket);
	if (Date.now() < blockUntil) {
		record('refused', {peer: peer});
		session.socket.destroy();
		return;
	}

	for (const name of Object.keys(BIND)) {
		session.on(name, (pdu) => {
			const systemId = String(pdu.system_id);
			if (session.bound) {
				session.send(pdu.response({command_status: smpp.ESME_RALYBND}));
				return;
			}
			if (systemId !== String(opts.system_id) || String(pdu.password) !== String(opts.password)) {
				stats.bind_failures++;
				record('bind_failed', {bind: name, system_id: systemId, peer: peer});
				session.send(pdu.response({command_status: smpp.ESME_RBINDFAIL}));
				return;
			}
			session.bound = Object.assign({system_id: systemId, type: name}, BIND[name]);
			sessions.add(session);
			stats.binds++;
			record('bind', {bind: name, system_id: systemId, peer: peer, interface_version: pdu.interface_version});
			session.send(pdu.response({system_id: 'masd-interop'}));
			if (session.bound.rx) setImmediate(flushOutbox);
		});
	}

	session.on('submit_sm', (pdu) => {
		const submittedAt = new Date();
		if (!session.bound || !session.bound.tx) {
			session.send(pdu.response({command_status: smpp.ESME_RINVBNDSTS}));
			return;
		}
		stats.submits++;
		const raw = Buffer.isBuffer(pdu.short_message) ? pdu.short_message : Buffer.alloc(0);
		const {udh, body} = splitUdh(pdu.esm_class, raw);
		const payload = Buffer.isBuffer(pdu.message_payload) ? pdu.message_payload : null;
		const rec = {
			seq: pdu.sequence_number,
			system_id: session.bound.system_id,
			source_addr: pdu.source_addr,
			destination_addr: pdu.destination_addr,
			esm_class: pdu.esm_class,
			data_coding: pdu.data_coding,
			registered_delivery: pdu.registered_delivery,
			udh: udh ? udh.toString('hex') : null,
			concat: concatInfo(udh),
			body: body.toString('hex'),
			text: decodeBody(pdu.data_coding, payload || body),
		};
		if (payload) rec.message_payload = payload.toString('hex');
		if (pdu.sar_msg_ref_num !== undefined) {
			rec.sar = {ref: pdu.sar_msg_ref_num, total: pdu.sar_total_segments, seq: pdu.sar_segment_seqnum};
		}
		if (opts.throttle_every > 0 && stats.submits % opts.throttle_every === 0) {
			stats.throttled++;
			rec.status = smpp.ESME_RTHROTTLED;
			record('submit_sm', rec);
			session.send(pdu.response({command_status: smpp.ESME_RTHROTTLED}));
			return;
		}
		const messageId = newMessageId();
		stats.submits_ok++;
		rec.status = 0;
		rec.message_id = messageId;
		record('submit_sm', rec);
		session.send(pdu.response({message_id: messageId}));
		if (pdu.registered_delivery & 0x03) {
			const delay = Number(opts.receipt_delay);
			const bound = session.bound;
			const fire = () => scheduleReceipt({bound: bound}, pdu, messageId, submittedAt);
			if (delay > 0) setTimeout(fire, delay);
			else setImmediate(fire);
		}
	});

	session.on('enquire_link', (pdu) => session.send(pdu.response()));
	session.on('unbind', (pdu) => {
		record('unbind', {peer: peer});
		session.send(pdu.response(), () => session.close());
	});
	session.on('unknown', (pdu) => {
		record('unknown', {peer: peer, command_id: pdu.command_id});
		session.send(pdu.response());
	});
	for (const name of ['data_sm', 'query_sm', 'cancel_sm', 'replace_sm', 'submit_multi']) {
		session.on(name, (pdu) => {
			record(name, {peer: peer});
			session.send(pdu.response({command_status: smpp.ESME_RINVCMDID}));
		});
	}
	session.on('error', (e) => record('error', {peer: peer, error: String(e && e.message)}));
	session.on('close', () => {
		allSockets.delete(session.socket);
		const wasBound = sessions.delete(session);
		// What this link did not acknowledge goes to the next receiver that binds.
		const unacked = [...session.pending.values()];
		session.pending.clear();
		for (const item of unacked) {
			if (item.kind === 'receipt') stats.receipts_sent--;
			else stats.mo_sent--;
			outbox.push(item);
		}
		record('close', {peer: peer, bound: wasBound, requeued: unacked.length});
		if (unacked.length && receivers().length) setImmediate(flushOutbox);
	});
});

// ----- control -----------------------------------------------------------------------------------------

function statsNow() {
	const cpu = process.cpuUsage();
	return Object.assign({}, stats, {
		bound: [...sessions].map((s) => ({system_id: s.bound.system_id, bind: s.bound.type})),
		outbox: outbox.length,
		records: recordBase + records.length,
		throttle_every: opts.throttle_every,
		cpu_seconds: (cpu.user + cpu.system) / 1e6,
		uptime: Date.now() / 1000 - stats.started,
	});
}

function command(op, arg) {
	switch (op) {
	case 'stats':
		return statsNow();
	case 'received': {
		const since = Math.max(Number((arg && arg.since) || 0), recordBase);
		return {records: records.slice(since - recordBase), next: recordBase + records.length};
	}
	case 'mo':
		return injectMo(arg || {});
	case 'drop':
		return drop(arg || {});
	case 'throttle':
		opts.throttle_every = Number(arg && arg.every !== undefined ? arg.every : arg) || 0;
		return {throttle_every: opts.throttle_every};
	case 'set':
		for (const key of ['receipt_delay', 'receipt_stat', 'throttle_every', 'id_format']) {
			if (arg && arg[key] !== undefined) opts[key] = arg[key];
		}
		return {receipt_delay: opts.receipt_delay, receipt_stat: opts.receipt_stat,
			throttle_every: opts.throttle_every, id_format: opts.id_format};
	default:
		throw new Error('unknown command ' + JSON.stringify(op));
	}
}

function parseLine(line) {
	line = line.trim();
	if (!line) return null;
	if (line.startsWith('{')) {
		const obj = JSON.parse(line);
		return [obj.op, obj];
	}
	const sp = line.indexOf(' ');
	if (sp < 0) return [line, null];
	const rest = line.slice(sp + 1).trim();
	let arg;
	try {
		arg = JSON.parse(rest);
	} catch (e) {
		arg = rest;
	}
	if (typeof arg === 'number') arg = line.startsWith('received') ? {since: arg} : {every: arg};
	return [line.slice(0, sp), arg];
}

readline.createInterface({input: process.stdin}).on('line', (line) => {
	try {
		const cmd = parseLine(line);
		if (cmd) out(Object.assign({event: 'control', op: cmd[0]}, command(cmd[0], cmd[1])));
	} catch (e) {
		out({event: 'control', error: String(e.message)});
	}
});

const control = http.createServer((req, res) => {
	let body = '';
	req.setEncoding('utf8');
	req.on('data', (chunk) => (body += chunk));
	req.on('end', () => {
		const url = new URL(req.url, 'http://127.0.0.1');
		const op = url.pathname.replace(/^\/+/, '');
		let arg = null;
		try {
			if (body) arg = JSON.parse(body);
			else if ([...url.searchParams].length) arg = Object.fromEntries(url.searchParams);
			const result = command(op, arg);
			res.writeHead(200, {'Content-Type': 'application/json'});
			res.end(JSON.stringify(result));
		} catch (e) {
			res.writeHead(400, {'Content-Type': 'application/json'});
			res.end(JSON.stringify({error: String(e.message)}));
		}
	});
});

function listening() {
	const controlPort = opts.control_port >= 0 ? control.address().port : null;
	out({event: 'listening', port: server.address().port, control_port: controlPort, pid: process.pid});
}

server.on('error', (e) => {
	process.stderr.write('smsc: ' + e.message + '\n');
	process.exit(1);
});
server.listen(opts.port, opts.host, () => {
	if (opts.control_port >= 0) control.listen(opts.control_port, '127.0.0.1', listening);
	else listening();
});

function shutdown() {
	for (const s of allSockets) s.destroy();
	if (recordOut && recordOut !== process.stdout) recordOut.end();
	process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
