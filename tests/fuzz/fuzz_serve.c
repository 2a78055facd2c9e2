/* fuzz_serve.c - the bodies and paths of retro serve's requests (cli/serve_req.c): the first byte picks
 * the endpoint (search, completions, chat, embeddings, ask, documents, a document's path, a page's query),
 * the rest is the body as the server reads it (jansson, duplicates refused). */
#include <jansson.h>
#include <string.h>

#include "cli/serve_req.h"
#include "fuzz_util.h"

static void body(int which, const uint8_t *data, size_t size) {
    json_error_t je;
    json_t *req = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(req)) {
        json_decref(req);
        return;
    }
    int rc;
    switch (which) {
    case 0: {
        serve_search q;
        if ((rc = serve_parse_search(req, &q))) break;
        FUZZ_CHECK(q.query && q.k >= 1 && q.k <= 4096 && q.n_exclude <= SERVE_MAX_EXCLUDE);
        FUZZ_CHECK(q.len == strlen(q.query) || memchr(q.query, 0, q.len));
        break;
    }
    case 1:
    case 2: {
        serve_completion c;
        if ((rc = serve_parse_completion(req, which == 2, &c))) break;
        FUZZ_CHECK(c.prompt && c.max_tokens >= 1 && c.max_tokens <= 100000 && c.top_k >= 0);
        FUZZ_CHECK(c.temperature >= 0 && c.temperature <= 100 && c.top_p > 0 && c.top_p <= 1);
        FUZZ_CHECK(c.n_stop >= 0 && c.n_stop <= SERVE_MAX_STOP);
        for (int i = 0; i < c.n_stop; i++) FUZZ_CHECK(c.stop[i] && c.stop[i][0]);
        FUZZ_CHECK(c.top_logprobs >= 0 && c.top_logprobs <= (which == 2 ? 20 : 5) && (c.logprobs || !c.top_logprobs));
        if (which == 2) FUZZ_CHECK(c.n_stop >= 1 && strlen(c.prompt) >= strlen("Assistant:"));
        serve_completion_free(&c);
        break;
    }
    case 3: {
        serve_embed e;
        if ((rc = serve_parse_embeddings(req, &e))) break;
        FUZZ_CHECK(e.n >= 1 && e.n <= 2048);
        for (size_t i = 0; i < e.n; i++) FUZZ_CHECK(e.texts[i] != NULL);
        serve_embed_free(&e);
        break;
    }
    case 4: {
        serve_ask a;
        if ((rc = serve_parse_ask(req, &a))) break;
        FUZZ_CHECK(a.question && a.question[0] && a.passages >= 1 && a.passages <= 16 && a.quotes <= 16);
        FUZZ_CHECK(a.max_tokens >= 1 && a.max_tokens <= 4096 && a.temperature >= 0 && a.temperature <= 100);
        break;
    }
    default: {
        serve_docs d;
        if ((rc = serve_parse_documents(req, &d))) break;
        FUZZ_CHECK(d.n >= 1 && d.n <= SERVE_MAX_DOCS);
        for (size_t i = 0; i < d.n; i++) FUZZ_CHECK(d.docs[i].name && strlen(d.docs[i].name) >= 1 && d.docs[i].text);
        serve_docs_free(&d);
        break;
    }
    }
    if (rc) FUZZ_FAILED_WELL(rc);
    json_decref(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 65536) return 0;
    int which = data[0] % 8;
    if (which < 6) {
        body(which, data + 1, size - 1);
        return 0;
    }
    char s[1024];   /* a path or a query string, as libmicrohttpd hands them over: NUL-terminated */
    size_t n = size - 1 < sizeof s - 1 ? size - 1 : sizeof s - 1;
    memcpy(s, data + 1, n);
    s[n] = 0;
    if (which == 6) {
        uint64_t id;
        int rc = serve_parse_doc_id(s, &id);
        if (rc) FUZZ_FAILED_WELL(rc);
        else FUZZ_CHECK(id >= 1 && id <= INT64_MAX);
        return 0;
    }
    char *amp = strchr(s, '&');   /* "AFTER&LIMIT"; no '&': after only */
    if (amp) *amp = 0;
    uint64_t after;
    size_t limit;
    int rc = serve_parse_page(s[0] ? s : NULL, amp ? amp + 1 : NULL, &after, &limit);
    if (rc) FUZZ_FAILED_WELL(rc);
    else FUZZ_CHECK(limit >= 1 && limit <= 1000);
    return 0;
}
