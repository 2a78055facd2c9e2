/* fuzz_corpus.c - the corpus readers (index/corpus.c): plain text, HTML, .jsonl and .json, with both
 * UTF-8 policies. The first byte picks the format and the policy; every document is valid UTF-8. */
#include "fuzz_util.h"
#include "index/corpus.h"
#include "lib/alloc.h"
#include "lib/utf8.h"

static int on_doc(void *ctx, const rtr_extracted *d) {
    (void)ctx;
    FUZZ_CHECK(rtr_utf8_valid_prefix(d->text, d->len) == d->len);
    return RTR_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const int formats[] = {RTR_FMT_TEXT, RTR_FMT_HTML, RTR_FMT_JSONL, RTR_FMT_JSON};
    rtr_corpus_opts o = {.utf8_policy = data[0] & 4 ? RTR_UTF8_SKIP : RTR_UTF8_REPLACE};
    char *detail = NULL;
    uint64_t bad = 0;
    int rc = rtr_corpus_extract(data + 1, size - 1, formats[data[0] & 3], &o, on_doc, NULL, &detail, &bad);
    FUZZ_CHECK(rc >= 0 || rc == RTR_E_NOMEM);
    rtr_free(detail);
    (void)rtr_looks_binary(data, size);
    return 0;
}
