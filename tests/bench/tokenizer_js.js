#!/usr/bin/env node
// tokenizer_js.js - encode throughput of js-tiktoken (getEncoding("gpt2")),
// measured like bench_tokenizer.c: every *.txt file of CORPUS_DIR (name
// order) is one document, N runs (default 5), MB = 10^6 bytes of UTF-8 input,
// median of the runs. The texts are read and decoded before timing.
//
//   node tokenizer_js.js NODE_MODULES CORPUS_DIR [RUNS]
//
// Prints per-run numbers and "RESULT name=js-tiktoken median_mbps=<x> tokens=<n> bytes=<n>".
'use strict';
const fs = require('fs');
const path = require('path');

const [nodeModules, corpus, runsArg] = process.argv.slice(2);
if (!nodeModules || !corpus) {
    console.error('usage: tokenizer_js.js NODE_MODULES CORPUS_DIR [RUNS]');
    process.exit(2);
}
const runs = runsArg ? parseInt(runsArg, 10) : 5;
const { getEncoding } = require(path.join(nodeModules, 'js-tiktoken'));
const enc = getEncoding('gpt2');

const files = fs.readdirSync(corpus).filter(f => f.endsWith('.txt')).sort();
const docs = files.map(f => fs.readFileSync(path.join(corpus, f), 'utf8'));
const bytes = docs.reduce((n, d) => n + Buffer.byteLength(d, 'utf8'), 0);
console.log(`js-tiktoken: ${docs.length} files, ${(bytes / 1e6).toFixed(2)} MB, ${runs} runs`);
const mbps = [];
let tokens = 0;
for (let r = 0; r < runs; r++) {
    tokens = 0;
    const t0 = process.hrtime.bigint();
    for (const d of docs) tokens += enc.encode(d, [], []).length;
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    mbps.push(bytes / 1e6 / dt);
    console.log(`  run ${r + 1}: ${dt.toFixed(3)} s, ${(bytes / 1e6 / dt).toFixed(2)} MB/s, ${tokens} tokens`);
}
mbps.sort((a, b) => a - b);
const med = runs % 2 ? mbps[(runs - 1) / 2] : (mbps[runs / 2 - 1] + mbps[runs / 2]) / 2;
console.log(`  median: ${med.toFixed(2)} MB/s`);
console.log(`RESULT name=js-tiktoken median_mbps=${med.toFixed(2)} tokens=${tokens} bytes=${bytes}`);
