// serve_page.js - drives the search page of `retro serve` in headless Chromium
// (puppeteer-core, the browser at $RETRO_CHROMIUM or /usr/bin/chromium); run by
// serve_page.sh, which starts the servers and makes the files.
//   node serve_page.js URL URL_NO_MODEL KEY KNOWN_FILE SENTENCE QUESTION UPLOAD_FILE UPLOAD_QUERY SHOT
// URL serves a model and needs KEY; URL_NO_MODEL serves the same knowledge base
// without a model or key. Every wait has a timeout; any failure exits 1.
"use strict";
const fs = require("fs");
const path = require("path");
const puppeteer = require("puppeteer-core");

const [url, urlNoModel, key, knownFile, sentence, question, uploadFile, uploadQuery, shot] = process.argv.slice(2);
const T = 20000;   // ms, every wait
const ok = msg => console.log("ok - page: " + msg);
function check(cond, msg) {
    if (!cond) throw new Error(msg);
}
async function api(p, body) {   // the server's own answer, to compare the page with
    const r = await fetch(url + p, {method: body ? "POST" : "GET", body: body && JSON.stringify(body),
        headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json"}});
    return {status: r.status, json: await r.json()};
}

// search QUERY on the page (typed, Enter) and return its results as shown
async function search(page, q) {
    await page.$eval("#q", e => { e.value = ""; });
    await page.type("#q", q);
    await page.keyboard.press("Enter");
    await page.waitForFunction(want => document.getElementById("results").dataset.query === want &&
        document.getElementById("search-form").getAttribute("aria-busy") === "false", {timeout: T}, q);
    return page.$$eval("#results > li", lis => lis.map(li => ({
        path: li.querySelector(".path").textContent,
        bytes: li.querySelector(".bytes").textContent,
        score: li.querySelector(".score").textContent,
        text: li.querySelector(".text").textContent,
        marks: Array.from(li.querySelectorAll(".text mark")).map(m => m.textContent),
        elements: Array.from(li.querySelectorAll(".text *")).map(e => e.tagName.toLowerCase()),
    })));
}

async function ask(page, q) {
    await page.$eval("#question", e => { e.value = ""; });
    await page.type("#question", q);
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => ["done", "error"].includes(document.getElementById("ask-out").dataset.state),
                               {timeout: T});
    return page.evaluate(() => ({
        state: document.getElementById("ask-out").dataset.state,
        status: document.getElementById("ask-status").textContent,
        answer: document.getElementById("answer").textContent,
        sources: Array.from(document.querySelectorAll("#ask-sources > li .path")).map(e => e.textContent),
        retrievals: Array.from(document.querySelectorAll("#ask-retrievals > li")).map(e => e.textContent),
    }));
}

async function run(browser) {
    const page = await browser.newPage();
    page.setDefaultTimeout(T);
    await page.setViewport({width: 1100, height: 900});
    const errors = [], outside = [];
    const origins = [new URL(url).origin, new URL(urlNoModel).origin];
    page.on("pageerror", e => errors.push(e.message));
    page.on("request", r => { if (!origins.includes(new URL(r.url()).origin)) outside.push(r.url()); });
    page.on("dialog", d => d.accept());   // the delete button's confirm()

    // 1. no key: the documents list gets 401 and the page asks for the key
    await page.goto(url + "/", {waitUntil: "load", timeout: T});
    await page.waitForSelector("#key-section:not([hidden])", {timeout: T});
    const unlabelled = await page.$$eval("input", es => es.filter(e => !e.labels.length).map(e => e.id));
    check(!unlabelled.length, "inputs without a label: " + unlabelled.join(", "));
    await page.type("#key", key);
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => document.querySelectorAll("#docs-body tr").length > 0, {timeout: T});
    const names = await page.$$eval("#docs-body td.name", tds => tds.map(t => t.textContent));
    check(names.some(n => n.endsWith("/" + path.basename(knownFile))), "documents listed: " + names.join(", "));
    check(await page.evaluate(() => sessionStorage.getItem("retro.apiKey")) === key, "the key is not in sessionStorage");
    check(await page.$eval("#key-section", e => e.hidden), "the key field stays after a good key");
    ok(`a 401 shows the key field; with the key (sessionStorage) ${names.length} documents are listed`);

    // 2. search: the known sentence's file first, its exact bytes, query words in <mark>, markup as text
    const hits = await search(page, sentence);
    check(hits.length > 0, "no results: " + await page.$eval("#search-status", e => e.textContent));
    const h = hits[0];
    check(h.path.endsWith("/" + path.basename(knownFile)), "first result: " + h.path);
    const [, start, end] = h.bytes.match(/(\d+)\D+(\d+)/).map(Number);
    check(fs.readFileSync(knownFile).subarray(start, end).toString() === h.text, "the text shown is not the byte span");
    check(h.marks.length > 0, "no <mark> in the first result");
    const words = new Set(sentence.toLowerCase().match(/[\p{L}\p{N}]+/gu));
    check(h.marks.every(m => words.has(m.toLowerCase())), "a marked word not in the query: " + h.marks.join(","));
    check(h.elements.every(t => t === "mark"), "markup from the text became elements: " + h.elements.join(","));
    check(h.text.includes("<b>bold</b>") && h.text.includes("<img"), "the tags in the text are not shown as text");
    check(await page.evaluate(() => window.__xss === undefined), "the text ran a script");
    ok(`search: ${path.basename(h.path)} first (${h.bytes}, ${h.score}), its bytes shown, ` +
       `${h.marks.length} words in <mark>, tags in the text shown as text`);

    // 3. ask: the sources, then the streamed generation; the same text as the server gives the same prompt
    const a = await ask(page, question);
    check(a.state === "done", "ask: " + a.status);
    check(a.answer.length > 0, "ask: no generated text");
    check(a.sources.length > 0 && a.sources.length <= 3, "ask: sources " + a.sources.length);
    check(a.retrievals.length > 0, "ask: no retrieval sources listed");
    const found = await api("/v1/search", {query: question, k: 3});
    const prompt = found.json.data.map(x => x.text).join("\n\n") + "\n\nQuestion: " + question + "\nAnswer:";
    const whole = await api("/v1/completions", {prompt, max_tokens: 64, temperature: 0});
    check(whole.status === 200, "completions: " + JSON.stringify(whole.json).slice(0, 200));
    check(whole.json.choices[0].text === a.answer, "the page's streamed answer differs from the server's completion");
    ok(`ask: ${a.sources.length} sources, ${a.answer.length} characters streamed (the server's greedy text ` +
       `for that prompt), ${a.retrievals.length} retrievals listed`);

    // 4. a server without a model: its 400 message, not an answer
    const bare = await browser.newPage();
    bare.setDefaultTimeout(T);
    bare.on("pageerror", e => errors.push(e.message));
    await bare.goto(urlNoModel + "/", {waitUntil: "load", timeout: T});
    const b = await ask(bare, question);
    check(b.state === "error" && /no model/.test(b.status), "no model: " + b.state + " " + b.status);
    check(b.sources.length > 0 && b.answer === "", "no model: sources " + b.sources.length + ", answer " + b.answer);
    await bare.close();
    ok(`no model: the sources, then the server's message ("${b.status}")`);

    // 5. upload through the file input: listed, then found by a search
    const name = path.basename(uploadFile);
    await (await page.$("#files")).uploadFile(uploadFile);
    await page.click("#upload-form button[type=submit]");
    const rowOf = n => Array.from(document.querySelectorAll("#docs-body tr"))
        .filter(tr => tr.cells[1].textContent === n).map(tr => tr.dataset.id)[0] || null;
    await page.waitForFunction(rowOf, {timeout: T}, name);
    const id = await page.evaluate(rowOf, name);
    const up = await search(page, uploadQuery);
    check(up.length && up[0].path === name, "after the upload, first result: " + (up[0] || {}).path);
    ok(`upload: ${name} listed (id ${id}) and found first by a search`);
    await page.screenshot({path: shot, fullPage: true});

    // 6. delete through its button: gone from the list, the server and search
    await page.click(`#docs-body tr[data-id="${id}"] button`);
    await page.waitForFunction(n => !Array.from(document.querySelectorAll("#docs-body tr"))
        .some(tr => tr.cells[1].textContent === n), {timeout: T}, name);
    check((await api("/v1/documents/" + id)).status === 404, "the deleted document is still on the server");
    const gone = await search(page, uploadQuery);
    check(!gone.some(x => x.path === name), "search still finds the deleted document");
    ok(`delete: ${name} gone from the list, the server and search`);

    // 7. paging: 50 more documents; after a reload (the key kept by the tab) a page of 50, then "More"
    const more = [];
    for (let i = 0; i < 50; i++) more.push({name: `notes/n${i}.txt`, text: `Note ${i} about the harbour ferries.`});
    check((await api("/v1/documents", {documents: more})).status === 200, "posting 50 documents");
    const total = names.length + more.length;
    await page.reload({waitUntil: "load", timeout: T});
    await page.waitForFunction(() => !document.getElementById("more").hidden, {timeout: T});
    check(await page.$$eval("#docs-body tr", trs => trs.length) === 50, "the first page is not 50 documents");
    check(await page.$eval("#key-section", e => e.hidden), "the key was asked for again after a reload");
    await page.click("#more");
    await page.waitForFunction(n => document.querySelectorAll("#docs-body tr").length === n &&
        document.getElementById("more").hidden, {timeout: T}, total);
    ok(`documents in pages: 50, then "More" shows the other ${total - 50}`);

    check(!errors.length, "errors in the page: " + errors.join("; "));
    check(!outside.length, "requests outside the server: " + outside.join(", "));
    ok("no script errors; no request left the server");
}

(async () => {
    const browser = await puppeteer.launch({
        executablePath: process.env.RETRO_CHROMIUM || "/usr/bin/chromium",
        headless: true,   // puppeteer-core adds --headless=new for this; spelled out below as well
        args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        timeout: T, protocolTimeout: 3 * T,
    });
    try {
        await run(browser);
    } finally {
        await browser.close();
    }
})().catch(e => {
    console.error("FAIL: " + (e && e.message || e));
    process.exit(1);
});
