/* test_reader.c - a reader's request and response (retriever/reader.c): chat and completions answers,
 * usage and finish_reason, the server's error.message on a non-2xx status, every malformed body a one-line
 * error naming the endpoint, the size bound, the model list, the request's JSON, an unreachable server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/alloc.h"
#include "lib/status.h"
#include "retriever/reader.h"

#define EP "http://127.0.0.1:9/v1/chat/completions"

static int parse(int completions, long status, const char *body, rtr_reader_reply *r) {
    return rtr_reader_parse(EP, completions, status, (const uint8_t *)body, strlen(body), r);
}

/* The detail of the last failure is one line that names the endpoint and holds want. */
static void assert_one_line_error(const char *want) {
    const char *d = rtr_errdetail();
    if (!strstr(d, want) || !strstr(d, EP) || strchr(d, '\n')) fail_msg("detail \"%s\" (want \"%s\")", d, want);
}

static void test_chat_response(void **state) {
    (void)state;
    rtr_reader_reply r;
    const char *body = "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"llama-3\",\"choices\":[{\"index\":0,"
                       "\"message\":{\"role\":\"assistant\",\"content\":\"Agnes Ploughwright [1].\\nShe kept it.\"},"
                       "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":9}}";
    assert_int_equal(parse(0, 200, body, &r), RTR_OK);
    assert_string_equal(r.text, "Agnes Ploughwright [1].\nShe kept it.");
    assert_int_equal(r.len, strlen(r.text));
    assert_string_equal(r.model, "llama-3");
    assert_int_equal(r.prompt_tokens, 120);
    assert_int_equal(r.completion_tokens, 9);
    assert_int_equal(r.length, 0);
    rtr_reader_reply_free(&r);
    /* no usage, no model, cut at max_tokens; an empty answer is an answer */
    assert_int_equal(parse(0, 201, "{\"choices\":[{\"message\":{\"content\":\"\"},\"finish_reason\":\"length\"}]}", &r),
                     RTR_OK);
    assert_string_equal(r.text, "");
    assert_null(r.model);
    assert_int_equal(r.prompt_tokens, -1);
    assert_int_equal(r.completion_tokens, -1);
    assert_int_equal(r.length, 1);
    rtr_reader_reply_free(&r);
}

static void test_completions_response(void **state) {
    (void)state;
    rtr_reader_reply r;
    const char *body = "{\"object\":\"text_completion\",\"choices\":[{\"text\":\" In 1931 [1].\",\"index\":0,"
                       "\"logprobs\":null,\"finish_reason\":\"length\"}],\"usage\":{\"completion_tokens\":5}}";
    assert_int_equal(parse(1, 200, body, &r), RTR_OK);
    assert_string_equal(r.text, " In 1931 [1].");
    assert_int_equal(r.completion_tokens, 5);
    assert_int_equal(r.length, 1);
    rtr_reader_reply_free(&r);
    /* a chat body read as completions, and the other way round */
    assert_int_equal(parse(1, 200, "{\"choices\":[{\"message\":{\"content\":\"x\"}}]}", &r), RTR_E_NET);
    assert_one_line_error("choices[0].text is missing");
    rtr_reader_reply_free(&r);
    assert_int_equal(parse(0, 200, "{\"choices\":[{\"text\":\"x\"}]}", &r), RTR_E_NET);
    assert_one_line_error("choices[0].message is missing");
    rtr_reader_reply_free(&r);
}

static void test_error_body(void **state) {
    (void)state;
    rtr_reader_reply r;
    /* OpenAI's error shape: its message, on one line, with the status */
    assert_int_equal(parse(0, 401, "{\"error\":{\"message\":\"Incorrect API key\\nprovided\",\"type\":\"auth\"}}", &r),
                     RTR_E_NET);
    assert_one_line_error("HTTP 401: Incorrect API key provided");
    assert_null(r.text);
    rtr_reader_reply_free(&r);
    /* error as a string (some servers), a body that is not JSON, no body */
    assert_int_equal(parse(0, 503, "{\"error\":\"Loading model\"}", &r), RTR_E_NET);
    assert_one_line_error("HTTP 503: Loading model");
    assert_int_equal(parse(0, 502, "<html>Bad\r\nGateway</html>", &r), RTR_E_NET);
    assert_one_line_error("HTTP 502: <html>Bad  Gateway</html>");
    assert_int_equal(parse(0, 500, "", &r), RTR_E_NET);
    assert_one_line_error("HTTP 500: (empty body)");
    /* a long message is cut */
    char big[2000];
    snprintf(big, sizeof big, "{\"error\":{\"message\":\"%01500d\"}}", 7);
    assert_int_equal(parse(0, 400, big, &r), RTR_E_NET);
    assert_one_line_error("...");
    assert_true(strlen(rtr_errdetail()) < 400);
    /* an error sent with a 2xx status */
    assert_int_equal(parse(0, 200, "{\"error\":{\"message\":\"context too long\"}}", &r), RTR_E_NET);
    assert_one_line_error("error: context too long");
    rtr_reader_reply_free(&r);
}

static void test_malformed_bodies(void **state) {
    (void)state;
    static const struct {
        int completions;
        const char *body, *want;
    } cases[] = {
        {0, "", "bad JSON"},
        {0, "{\"choices\":[{\"message\":{\"content\":\"cut", "bad JSON"},
        {0, "{\"choices\":[]} trailing", "bad JSON"},
        {0, "[1,2]", "not a JSON object"},
        {0, "\"text\"", "bad JSON"},
        {0, "{}", "no \"choices\" array"},
        {0, "{\"choices\":{\"0\":1}}", "no \"choices\" array"},
        {0, "{\"choices\":[]}", "\"choices\" array is empty"},
        {0, "{\"choices\":[7]}", "choices[0] is not an object"},
        {0, "{\"choices\":[{\"message\":\"hi\"}]}", "choices[0].message is not an object"},
        {0, "{\"choices\":[{\"message\":{\"role\":\"assistant\"}}]}", "choices[0].message.content is missing"},
        {0, "{\"choices\":[{\"message\":{\"content\":null}}]}", "choices[0].message.content is null"},
        {0, "{\"choices\":[{\"message\":{\"content\":[\"a\"]}}]}", "choices[0].message.content is not a string"},
        {1, "{\"choices\":[{\"text\":42}]}", "choices[0].text is not a string"},
        {1, "{\"choices\":[{\"text\":\"a\\u0000b\"}]}", "bad JSON"},
        {1, "{\"choices\":[{\"text\":\"\xff\"}]}", "bad JSON"},
        {0, "{\"choices\":[{\"message\":{\"\\\n\n\ncontent\":\"\"}}]}", "bad JSON"},   /* fuzz_reader: a line break in jansson's text */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rtr_reader_reply r;
        int rc = parse(cases[i].completions, 200, cases[i].body, &r);
        if (rc != RTR_E_NET) fail_msg("case %zu: rc %d", i, rc);
        assert_one_line_error(cases[i].want);
        assert_null(r.text);
        rtr_reader_reply_free(&r);
    }
    /* a body over the bound is refused before it is parsed */
    size_t n = RTR_READER_MAX_BODY + 1;
    uint8_t *big = calloc(n, 1);
    assert_non_null(big);
    memset(big, ' ', n);
    rtr_reader_reply r;
    assert_int_equal(rtr_reader_parse(EP, 0, 200, big, n, &r), RTR_E_NET);
    assert_one_line_error("larger than 4 MiB");
    free(big);
}

static void test_out_of_memory(void **state) {
    (void)state;
    const char *body = "{\"model\":\"m\",\"choices\":[{\"message\":{\"content\":\"answer\"}}]}";
    for (long n = 1;; n++) {
        rtr_reader_reply r;
        rtr_alloc_fail_at(n);
        int rc = parse(0, 200, body, &r);
        rtr_alloc_fail_at(0);
        rtr_reader_reply_free(&r);
        if (rc == RTR_OK) break;
        assert_int_equal(rc, RTR_E_NOMEM);
        assert_true(n < 10);
    }
}

static void test_models(void **state) {
    (void)state;
    const char *list = "{\"object\":\"list\",\"data\":[{\"id\":\"qwen2.5:7b\",\"object\":\"model\"},{\"id\":\"b\"}]}";
    char *id = NULL;
    assert_int_equal(rtr_reader_parse_models((const uint8_t *)list, strlen(list), &id), RTR_OK);
    assert_string_equal(id, "qwen2.5:7b");
    rtr_free(id);
    static const char *const bad[] = {"", "{\"data\":[]}", "{\"data\":[{\"id\":3}]}", "{\"data\":[{\"id\":\"\"}]}", "[]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(rtr_reader_parse_models((const uint8_t *)bad[i], strlen(bad[i]), &id), RTR_E_NET);
        assert_null(id);
    }
}

static void test_request(void **state) {
    (void)state;
    rtr_reader_passage p[] = {{"The keeper is Agnes.", " She kept the lamp.\n\n"}, {"Boats \xff came.", NULL}};
    rtr_reader_opts o = {.url = "http://x", .max_tokens = 64, .temperature = 0};
    rtr_buf b = {0};
    assert_int_equal(rtr_reader_request(&o, "rtr", "Who is the keeper?", p, 2, &b), RTR_OK);
    json_t *j = json_loadb((const char *)b.data, b.len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "rtr");
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 64);
    assert_true(json_number_value(json_object_get(j, "temperature")) == 0);
    assert_true(json_is_false(json_object_get(j, "stream")));
    json_t *msgs = json_object_get(j, "messages");
    assert_int_equal(json_array_size(msgs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "role")), "system");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "content")), RTR_READER_SYSTEM);
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "role")), "user");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "content")),
                        "Passages:\n\n[1] The keeper is Agnes. She kept the lamp.\n\n[2] Boats \xef\xbf\xbd came.\n\n"
                        "Question: Who is the keeper?");
    json_decref(j);
    /* completions: the same text in one prompt, ending with the cue */
    o.completions = 1;
    o.temperature = 0.7f;
    b.len = 0;
    assert_int_equal(rtr_reader_request(&o, "default", "Who?", p, 1, &b), RTR_OK);
    j = json_loadb((const char *)b.data, b.len, 0, NULL);
    assert_non_null(j);
    assert_null(json_object_get(j, "messages"));
    assert_string_equal(json_string_value(json_object_get(j, "prompt")),
                        RTR_READER_SYSTEM "\n\nPassages:\n\n[1] The keeper is Agnes. She kept the lamp.\n\n"
                                          "Question: Who?\nAnswer:");
    assert_true(json_number_value(json_object_get(j, "temperature")) == 0.7);
    assert_int_equal(rtr_buf_terminate(&b), RTR_OK);
    assert_non_null(strstr((const char *)b.data, "\"temperature\":0.7,"));
    json_decref(j);
    rtr_buf_free(&b);
}

/* A loopback port nobody listens on: bound, then closed. */
static int closed_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    return ntohs(a.sin_port);
}

static void test_ask_errors(void **state) {
    (void)state;
    rtr_reader_passage p[] = {{"text", NULL}};
    rtr_reader_reply r;
    rtr_reader_opts o = {.url = "ftp://127.0.0.1", .max_tokens = 8};
    assert_int_equal(rtr_reader_ask(&o, "q", p, 1, &r), RTR_E_INVALID);
    o.url = "http://";
    assert_int_equal(rtr_reader_ask(&o, "q", p, 1, &r), RTR_E_INVALID);
    o.url = "http://127.0.0.1:8080";
    o.max_tokens = 0;
    assert_int_equal(rtr_reader_ask(&o, "q", p, 1, &r), RTR_E_INVALID);
    /* nobody there: one line naming the endpoint (user:password@ removed) */
    char url[128], want[128];
    int port = closed_port();
    snprintf(url, sizeof url, "http://me:secret@127.0.0.1:%d/v1/", port);
    snprintf(want, sizeof want, "reader http://127.0.0.1:%d/v1/completions: cannot connect", port);
    o = (rtr_reader_opts){.url = url, .model = "m", .completions = 1, .max_tokens = 8, .timeout_ms = 5000};
    assert_int_equal(rtr_reader_ask(&o, "q", p, 1, &r), RTR_E_NET);
    const char *d = rtr_errdetail();
    if (!strstr(d, want) || strchr(d, '\n') || strstr(d, "secret")) fail_msg("detail \"%s\"", d);
    rtr_reader_reply_free(&r);
    char *shown = rtr_reader_url_shown(url);
    assert_non_null(shown);
    snprintf(want, sizeof want, "http://127.0.0.1:%d/v1/", port);
    assert_string_equal(shown, want);
    rtr_free(shown);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_response),    cmocka_unit_test(test_completions_response),
        cmocka_unit_test(test_error_body),       cmocka_unit_test(test_malformed_bodies),
        cmocka_unit_test(test_out_of_memory),    cmocka_unit_test(test_models),
        cmocka_unit_test(test_request),          cmocka_unit_test(test_ask_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
