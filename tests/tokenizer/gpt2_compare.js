#!/usr/bin/env node
// gpt2_compare.js - checks `retro tokenizer encode --gpt2 DIR` against the two
// npm reference encoders, gpt-3-encoder and js-tiktoken (getEncoding("gpt2")).
//
//   node gpt2_compare.js RETRO GPT2_DIR NODE_MODULES [--fuzz N] CASE...
//
// A CASE is a file (one text), a directory (its *.txt files in name order,
// concatenated into one text; "DIR:N" takes only the first N files), or
// "edge" for the built-in edge cases; --fuzz N adds N random short texts. Every id of retro
// must equal both references; the first mismatch is printed with context and
// the script exits 1. The references must also agree with each other.
'use strict';
const fs = require('fs');
const path = require('path');
const os = require('os');
const { spawn } = require('child_process');

const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');

// Worker thread: gpt-3-encoder ids of the texts it is given (it is the slow
// reference, so it runs beside js-tiktoken and retro on another core).
if (!isMainThread) {
    const gpt3 = require(path.join(workerData.nodeModules, 'gpt-3-encoder'));
    const out = workerData.texts.map(t => Int32Array.from(gpt3Encode(gpt3, t)));
    parentPort.postMessage(out, out.map(a => a.buffer));
    return;
}

const args = process.argv.slice(2);
if (args.length < 3) {
    console.error('usage: gpt2_compare.js RETRO GPT2_DIR NODE_MODULES [--fuzz N] CASE...');
    process.exit(2);
}
const [retro, gpt2Dir, nodeModules] = args;
let fuzz = 0;
const cases = [];
for (let i = 3; i < args.length; i++) {
    if (args[i] === '--fuzz') fuzz = parseInt(args[++i], 10);
    else cases.push(args[i]);
}

const { getEncoding } = require(path.join(nodeModules, 'js-tiktoken'));
const tiktoken = getEncoding('gpt2');

// gpt-3-encoder concatenates arrays per piece (quadratic on long texts), so
// long texts are cut into parts where the result cannot change: between an
// ASCII letter and a following ASCII non-letter. A letter run must end there
// (a boundary in the whole text), the run ends the same way at the end of the
// left part, and the pattern never looks behind, so the pieces of the right
// part depend only on the right part. The ids are those of the whole text.
function gpt3Encode(gpt3, text) {
    const out = [];
    let start = 0;
    for (let i = 1; i < text.length; i++) {
        if (i - start < 2000) continue;
        const a = text.charCodeAt(i - 1), b = text.charCodeAt(i);
        const letter = c => (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
        if (letter(a) && b < 128 && !letter(b)) {
            for (const id of gpt3.encode(text.slice(start, i))) out.push(id);
            start = i;
        }
    }
    for (const id of gpt3.encode(text.slice(start))) out.push(id);
    return out;
}

// Runs retro on one text. Input and output go through files so that the
// process runs on while this script is busy computing reference ids.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gpt2cmp-'));
let jobNo = 0;
function retroEncode(buf) {
    const n = jobNo++;
    const inPath = path.join(tmp, `${n}.in`), outPath = path.join(tmp, `${n}.out`);
    fs.writeFileSync(inPath, buf);
    return () => new Promise((resolve) => {
        const fin = fs.openSync(inPath, 'r'), fout = fs.openSync(outPath, 'w');
        const p = spawn(retro, ['tokenizer', 'encode', '--gpt2', gpt2Dir], { stdio: [fin, fout, 'pipe'] });
        let err = '';
        p.stderr.on('data', d => { err += d; });
        p.on('close', code => {
            fs.closeSync(fin);
            fs.closeSync(fout);
            const s = fs.readFileSync(outPath, 'utf8').trim();
            fs.unlinkSync(inPath);
            fs.unlinkSync(outPath);
            if (code !== 0) resolve({ error: `retro exited with ${code}: ${err.trim()}` });
            else resolve({ ids: s === '' ? [] : s.split(' ').map(Number) });
        });
    });
}

// Runs job thunks, at most `limit` at a time; returns their results in order.
function pool(thunks, limit) {
    const results = new Array(thunks.length);
    let next = 0;
    return new Promise((resolve) => {
        let running = 0, done = 0;
        if (thunks.length === 0) return resolve(results);
        const launch = () => {
            while (running < limit && next < thunks.length) {
                const i = next++;
                running++;
                thunks[i]().then(r => {
                    results[i] = r;
                    running--;
                    if (++done === thunks.length) resolve(results);
                    else launch();
                });
            }
        };
        launch();
    });
}

function show(ids) {
    return ids.map(id => {
        const s = tiktoken.decode([id]);
        return `${id}:${JSON.stringify(s)}`;
    }).join(' ');
}

function firstDiff(a, b) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
    return a.length === b.length ? -1 : n;
}

let failures = 0, checked = 0, tokens = 0;

// Compares retro's ids with the references for one text.
function compare(name, ref, got) {
    if (got.error) {
        console.error(`${name}: ${got.error}`);
        failures++;
        return;
    }
    got = got.ids;
    const d = firstDiff(ref, got);
    checked++;
    tokens += ref.length;
    if (d < 0) return;
    failures++;
    const before = tiktoken.decode(ref.slice(Math.max(0, d - 8), d));
    console.error(`${name}: MISMATCH at token ${d} of ${ref.length} (retro gave ${got.length})\n` +
                  `  text before: ${JSON.stringify(before)}\n` +
                  `  expected: ${show(ref.slice(d, d + 6))}\n` +
                  `  retro:    ${show(got.slice(d, d + 6))}`);
}

// Reference ids of one text (gpt-3-encoder's come from the worker); null
// (and a failure) if the references differ.
function reference(name, text, ref, ref2) {
    ref = Array.from(ref);
    const d = firstDiff(ref, ref2);
    if (d < 0) return ref;
    console.error(`${name}: the references disagree at token ${d}:\n` +
                  `  gpt-3-encoder: ${show(ref.slice(Math.max(0, d - 3), d + 4))}\n` +
                  `  js-tiktoken:   ${show(ref2.slice(Math.max(0, d - 3), d + 4))}`);
    failures++;
    return null;
}

// Hand-picked edge cases of the pattern: contractions, whitespace runs and
// their backtracking, ends of text, class boundaries.
const edge = [
    '', ' ', '  ', '\n', ' \n', '\n ', 'a', ' a', '  a', '   a', 'a ', 'a  ', 'a\n', 'a \n',
    "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'x", "''s", "'''", " 's", "  's",
    "it's", "It'S", "we're", "they've", "I'm", "you'll", "he'd", "don't", "rock'n'roll",
    "'sam", "'tis", "'llama", "'", "a'", "a'b", "1's", "!'s", ".'re",
    'hello world', 'hello  world', 'hello   world', 'hello\tworld', 'hello \tworld',
    'hello\t world', 'hello\n\nworld', 'hello \n world', 'hello\u00a0world', 'hello \u00a0world',
    'hello\u00a0 world', 'hello\u3000world', 'x\u3000\u3000y', 'a\r\nb', 'a \r\n b', 'end   ',
    'end\n\n\n', '   start', '\t\tstart', '123', ' 123', '1 2 3', 'abc123def', '12abc', 'a1b2',
    '3.14', '1,000', '-5', ' -5', '$100', '...', ' ...', '?!', ' ?!', 'a.b.c', '(x)', ' (x)',
    '日本', ' 日本', '日本 語', 'é', 'e\u0301', ' e\u0301', '\u0301', ' \u0301', '\u0301a',
    '٣', ' ٣', 'Ⅻ', ' ½', 'x²', '😀', ' 😀', '😀😀', 'a😀b', '👨\u200d👩\u200d👧', '\ufeff', ' \ufeff',
    '\ufeffa', 'a\ufeff b', '\u2028', 'x\u2028y', '\u0085', 'a\u0085b', '\u001f', 'a\u001c b',
    '\u000b', 'a\u000bb', '\u000c ', 'a \u180e b', '\u200b', 'a\u200bb', '\u2060x',
    '<|endoftext|>', 'a<|endoftext|>b', ' <|endoftext|> ', '<|endoftext|><|endoftext|>',
    'a'.repeat(300), ' ' + 'ab'.repeat(200), 'x'.repeat(1000) + ' y', '0'.repeat(500),
    '!'.repeat(400), ' '.repeat(300), ' '.repeat(300) + 'a', '\n'.repeat(200) + 'b',
    'Supercalifragilisticexpialidocious', ' antidisestablishmentarianism',
    'ĠĠĠ', 'ÃÂÃÂÃÂ', '\u0100\u0101', 'ÿþ',
];

// Deterministic fuzz over an alphabet of pattern-relevant characters.
const alphabet = [
    ' ', ' ', ' ', '  ', '\n', '\t', '\r\n', '\u00a0', '\u3000', '\u2028', '\ufeff', '\u0085',
    "'", "'s", "'ll", "'re", "'d", 's', 't', 'e', 'a', 'Z', 'll', 'the', ' the', 'é', 'e\u0301',
    'ñ', 'ß', 'Ω', 'ж', 'ش', 'ש', 'क', '\u093f', '中', 'の', '한', 'ก', '\u0e31', '😀', '👍🏽',
    '1', '9', '42', '٣', '१', '½', '²', 'Ⅻ', '.', ',', '!', '?', '-', '_', '(', ')', '"', '$',
    '€', '@', '#', '/', '\\', '<|endoftext|>', '\u200d', '\u0301',
];
let seed = 20261123;
function rnd(n) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return Math.floor(seed / 2147483648 * n);
}
function fuzzString() {
    const len = 1 + rnd(40);
    let s = '';
    for (let i = 0; i < len; i++) s += alphabet[rnd(alphabet.length)];
    return s;
}

function collect(dir, limit) {
    const files = fs.readdirSync(dir).filter(f => f.endsWith('.txt')).sort();
    const take = limit ? files.slice(0, limit) : files;
    return { n: take.length, text: take.map(f => fs.readFileSync(path.join(dir, f), 'utf8')).join('') };
}

async function main() {
    const t0 = Date.now();
    const texts = [];   // [name, text]
    for (const c of cases) {
        if (c === 'edge') {
            // One retro call per text: joined texts would share pieces.
            edge.forEach((s, i) => texts.push([`edge case ${i} ${JSON.stringify(s.slice(0, 30))}`, s]));
            continue;
        }
        const m = /^(.*):(\d+)$/.exec(c);
        const p = m ? m[1] : c;
        if (!fs.existsSync(p)) {
            console.error(`${p}: not found`);
            failures++;
            continue;
        }
        if (fs.statSync(p).isDirectory()) {
            const { n, text } = collect(p, m ? parseInt(m[2], 10) : 0);
            texts.push([`${p} (${n} files, ${text.length} UTF-16 units)`, text]);
        } else {
            texts.push([p, fs.readFileSync(p, 'utf8')]);
        }
    }
    for (let i = 0; i < fuzz; i++) {
        const s = fuzzString();
        texts.push([`fuzz case ${i} ${JSON.stringify(s)}`, s]);
    }
    // Long texts first: their retro runs overlap the reference work.
    const order = texts.map((_, i) => i).sort((a, b) => texts[b][1].length - texts[a][1].length);
    const jobs = pool(order.map(i => retroEncode(Buffer.from(texts[i][1], 'utf8'))), 3);
    const worker = new Worker(__filename, { workerData: { nodeModules, texts: texts.map(t => t[1]) } });
    const gpt3Ids = new Promise((resolve, reject) => {
        worker.on('message', resolve);
        worker.on('error', reject);
    });
    // js-tiktoken here, short texts first, yielding so the pool can start jobs.
    const tk = new Array(texts.length);
    for (const i of order.slice().reverse()) {
        tk[i] = tiktoken.encode(texts[i][1], [], []);
        await new Promise(r => setImmediate(r));
    }
    const g3 = await gpt3Ids;
    const refs = texts.map((t, i) => reference(t[0], t[1], g3[i], tk[i]));
    const got = await jobs;
    order.forEach((i, k) => { if (refs[i]) compare(texts[i][0], refs[i], got[k]); });
    fs.rmSync(tmp, { recursive: true, force: true });
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    if (failures) {
        console.error(`gpt2_compare: ${failures} FAILED, ${checked} texts checked (${secs} s)`);
        process.exit(1);
    }
    console.log(`gpt2_compare: ok, ${checked} texts, ${tokens} tokens identical to gpt-3-encoder ` +
                `and js-tiktoken (${secs} s)`);
}

main();
