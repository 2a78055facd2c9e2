'use strict';
// fake_embed_server.js - a deterministic OpenAI-style /v1/embeddings server for
// tests/test_embed_http.c. Loopback only.
//
//   node fake_embed_server.js [port]     (default 0: the system picks one)
//
// Prints "PORT <n>" on stdout once listening; exits when stdin closes (so it
// never outlives the test) or on SIGTERM.
//
// POST /v1/embeddings {"input": [...] | "text", "model": M}
//   embedding(text) = fakeEmbed(UTF-8 bytes of text, 8): an FNV-1a hash per
//   component, mapped to a multiple of 1/4 in [-125, 125] (exact in binary, so
//   the C test recomputes it bit for bit; the client normalises).
//   The model name picks a failure mode (see MODES below); any other name, or
//   no model, behaves normally.
// GET /stats   -> {"requests", "sizes", "auth", "model", "model_present",
//                  "empty_inputs", "content_type"} since the last reset
// POST /reset  -> clears the stats and the per-model state
const http = require('http');

const DIM = 8;

function fakeEmbed(bytes, dim) {
  const v = [];
  for (let j = 0; j < dim; j++) {
    let h = (2166136261 ^ Math.imul(j + 1, 0x9e3779b1)) >>> 0;
    for (const b of bytes) h = Math.imul((h ^ b) >>> 0, 16777619) >>> 0;
    h = (h ^ (h >>> 15)) >>> 0;
    v.push(((h % 1001) - 500) / 4);
  }
  return v;
}

let stats, seen, modelCalls;
function reset() {
  stats = { requests: 0, sizes: [], auth: null, model: null, model_present: false,
            empty_inputs: 0, content_type: null };
  seen = new Set();          // (model, inputs) pairs already answered once
  modelCalls = new Map();    // model -> number of requests
}
reset();

function send(res, status, obj, headers) {
  const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
  res.writeHead(status, Object.assign({ 'Content-Type': 'application/json' }, headers || {}));
  res.end(body);
}

function rows(inputs, dim) {
  return inputs.map((s, i) => ({ object: 'embedding', index: i,
                                 embedding: fakeEmbed(Buffer.from(s, 'utf8'), dim) }));
}

function listOf(data, model) {
  return { object: 'list', data, model, usage: { prompt_tokens: 0, total_tokens: 0 } };
}

// Each mode gets (res, inputs, model, firstTime, calls) and answers.
const MODES = {
  'fail-once-503': (res, inp, m, first) =>
    first ? send(res, 503, { error: { message: 'loading model' } }) : send(res, 200, listOf(rows(inp, DIM), m)),
  'always-500': (res) => send(res, 500, 'internal server error'),
  '429-retry-after': (res, inp, m, first) =>
    first ? send(res, 429, { error: { message: 'slow down' } }, { 'Retry-After': '1' })
          : send(res, 200, listOf(rows(inp, DIM), m)),
  'bad-json': (res) => send(res, 200, '{"data": [{"index": 0, "embedding": [0.25, '),
  'wrong-count': (res, inp, m) => send(res, 200, listOf(rows(inp, DIM).slice(0, -1), m)),
  'wrong-dim': (res, inp, m) => send(res, 200, listOf(rows(inp, DIM - 1), m)),
  'ragged-dim': (res, inp, m) => {
    const r = rows(inp, DIM);
    r[r.length - 1].embedding.push(0.5);
    send(res, 200, listOf(r, m));
  },
  'grow-dim': (res, inp, m, first, calls) => send(res, 200, listOf(rows(inp, calls === 1 ? DIM : 12), m)),
  'shuffled': (res, inp, m) => send(res, 200, listOf(rows(inp, DIM).reverse(), m)),
  'noindex': (res, inp, m) =>
    send(res, 200, listOf(rows(inp, DIM).map((r) => ({ embedding: r.embedding })), m)),
  'slow': (res, inp, m) => setTimeout(() => send(res, 200, listOf(rows(inp, DIM), m)), 2000),
  '400': (res) => send(res, 400, { error: { message: 'input is too long for this model',
                                            type: 'invalid_request_error' } }),
  'auth': (res, inp, m, first, calls, req) =>
    req.headers.authorization === 'Bearer sekrit-key'
      ? send(res, 200, listOf(rows(inp, DIM), m))
      : send(res, 401, { error: { message: 'invalid api key' } }),
  'nonnum': (res, inp, m) => {
    const r = rows(inp, DIM);
    r[0].embedding[3] = '0.5';
    send(res, 200, listOf(r, m));
  },
  'bigval': (res, inp, m) => {
    const r = rows(inp, DIM);
    r[0].embedding[0] = 1e300;
    send(res, 200, listOf(r, m));
  },
  'no-data': (res) => send(res, 200, { object: 'list', error: { message: 'model not loaded' } }),
  'no-embedding': (res, inp, m) => {
    const r = rows(inp, DIM);
    delete r[0].embedding;
    send(res, 200, listOf(r, m));
  },
  'dup-index': (res, inp, m) => send(res, 200, listOf(rows(inp, DIM).map((r) => Object.assign(r, { index: 0 })), m)),
  'bad-index': (res, inp, m) => send(res, 200, listOf(rows(inp, DIM).map((r) => Object.assign(r, { index: 99 })), m)),
  'base64': (res, inp, m) =>
    send(res, 200, listOf(inp.map((s, i) => ({ index: i, embedding: 'AAAAAA==' })), m)),
  'huge': (res) => {
    // Announces 300 MiB, sends a little, then hangs up.
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': String(300 * 1024 * 1024) });
    res.write('{"data": [');
    setTimeout(() => res.destroy(), 50);
  },
};

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const url = req.url.split('?')[0];
    if (req.method === 'GET' && url === '/stats') return send(res, 200, stats);
    if (req.method === 'POST' && url === '/reset') { reset(); return send(res, 200, { ok: true }); }
    if (req.method !== 'POST' || url !== '/v1/embeddings') return send(res, 404, { error: { message: 'not found' } });
    let body;
    try {
      // Strict: invalid UTF-8 in the request is an error, not silently repaired.
      body = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks)));
    } catch (err) {
      return send(res, 400, { error: { message: 'invalid JSON in request: ' + err.message } });
    }
    let inputs = body.input;
    if (typeof inputs === 'string') inputs = [inputs];
    if (!Array.isArray(inputs) || !inputs.every((s) => typeof s === 'string'))
      return send(res, 400, { error: { message: '"input" must be a string or an array of strings' } });
    const model = typeof body.model === 'string' ? body.model : null;
    stats.requests++;
    stats.sizes.push(inputs.length);
    stats.auth = req.headers.authorization || null;
    stats.model = model;
    stats.model_present = Object.prototype.hasOwnProperty.call(body, 'model');
    stats.empty_inputs += inputs.filter((s) => s.length === 0).length;
    stats.content_type = req.headers['content-type'] || null;
    const key = JSON.stringify([model, inputs]);
    const first = !seen.has(key);
    seen.add(key);
    const calls = (modelCalls.get(model) || 0) + 1;
    modelCalls.set(model, calls);
    const mode = MODES[model];
    if (mode) return mode(res, inputs, model, first, calls, req);
    send(res, 200, listOf(rows(inputs, DIM), model));
  });
});

server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  process.stdout.write('PORT ' + server.address().port + '\n');
});
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
