/* test_safetensors.c - safetensors files: round trip, an independent reader
 * (Python + numpy) agrees, and every kind of corrupt or truncated file is
 * refused without a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>

#include "lib/alloc.h"
#include "lib/safetensors.h"
#include "lib/status.h"
#include "testutil.h"

static float A[3 * 5];
static int64_t B[7];
static uint8_t C[4];

static char *write_sample(const char *dir) {
    for (int i = 0; i < 15; i++) A[i] = (float)i * 0.25f - 1.0f;
    for (int i = 0; i < 7; i++) B[i] = (int64_t)i * 1000000007LL - 3;
    for (int i = 0; i < 4; i++) C[i] = (uint8_t)(250 + i);
    rtr_st_writer *w;
    assert_int_equal(rtr_st_writer_new(&w), RTR_OK);
    int64_t sa[2] = {3, 5}, sb[1] = {7}, sc[3] = {1, 2, 2};
    assert_int_equal(rtr_st_writer_add(w, "layer.0.weight", RTR_ST_F32, 2, sa, A), RTR_OK);
    assert_int_equal(rtr_st_writer_add(w, "step_ids", RTR_ST_I64, 1, sb, B), RTR_OK);
    assert_int_equal(rtr_st_writer_add(w, "bytes", RTR_ST_U8, 3, sc, C), RTR_OK);
    assert_int_equal(rtr_st_writer_add(w, "empty", RTR_ST_F32, 1, (int64_t[]){0}, NULL), RTR_OK);
    assert_int_equal(rtr_st_writer_add(w, "bytes", RTR_ST_U8, 3, sc, C), RTR_E_INVALID);   /* duplicate */
    assert_int_equal(rtr_st_writer_meta(w, "format", "retro"), RTR_OK);
    char *path = rtr_path_join(dir, "t.safetensors");
    assert_int_equal(rtr_st_writer_save(w, path), RTR_OK);
    rtr_st_writer_free(w);
    return path;
}

static void test_round_trip(void **state) {
    (void)state;
    char *dir = tu_tmpdir("st");
    char *path = write_sample(dir);
    rtr_safetensors *st;
    assert_int_equal(rtr_st_load(path, &st), RTR_OK);
    assert_int_equal(rtr_st_count(st), 4);
    const rtr_st_tensor *a = rtr_st_find(st, "layer.0.weight");
    assert_non_null(a);
    assert_int_equal(a->dtype, RTR_ST_F32);
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[0], 3);
    assert_int_equal(a->shape[1], 5);
    assert_memory_equal(a->data, A, sizeof A);
    assert_memory_equal(rtr_st_find(st, "step_ids")->data, B, sizeof B);
    assert_int_equal(rtr_st_find(st, "empty")->nbytes, 0);
    assert_string_equal(rtr_st_get(st, 1)->name, "step_ids");   /* header order */
    assert_string_equal(rtr_st_meta(st, "format"), "retro");
    assert_null(rtr_st_meta(st, "nope"));
    assert_null(rtr_st_find(st, "nope"));
    rtr_st_free(st);
    rtr_rmtree(dir);
    rtr_free(path);
    free(dir);
}

static void test_independent_reader_agrees(void **state) {
    (void)state;
    if (system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0) fail_msg("python3-numpy missing: run scripts/setup.sh");
    char *dir = tu_tmpdir("st");
    char *path = write_sample(dir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/tools/safetensors_read.py %s", RETRO_SOURCE_DIR, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[4096];
    int seen = 0;
    while (fgets(line, sizeof line, p)) {
        if (strstr(line, "\"layer.0.weight\"")) {
            double sum = 0;
            for (int i = 0; i < 15; i++) sum += A[i];
            char want[128];
            snprintf(want, sizeof want, "\"shape\": [3, 5], \"sum\": %.1f", sum);
            assert_non_null(strstr(line, want));
            assert_non_null(strstr(line, "\"first\": [-1.0, -0.75, -0.5, -0.25]"));
            seen++;
        }
        if (strstr(line, "\"step_ids\"")) {
            assert_non_null(strstr(line, "\"first\": [-3.0, 1000000004.0, 2000000011.0, 3000000018.0]"));
            seen++;
        }
        if (strstr(line, "\"bytes\"")) {
            assert_non_null(strstr(line, "\"shape\": [1, 2, 2], \"sum\": 1006.0"));
            seen++;
        }
        if (strstr(line, "\"metadata\"")) {
            assert_non_null(strstr(line, "\"format\": \"retro\""));
            seen++;
        }
    }
    assert_int_equal(pclose(p), 0);
    assert_int_equal(seen, 4);
    rtr_rmtree(dir);
    rtr_free(path);
    free(dir);
}

static void test_truncated_and_flipped_never_crash(void **state) {
    (void)state;
    char *dir = tu_tmpdir("st");
    char *path = write_sample(dir);
    uint8_t *buf;
    size_t len;
    assert_int_equal(rtr_read_file(path, 1 << 20, &buf, &len), RTR_OK);
    rtr_safetensors *st;
    for (size_t cut = 0; cut < len; cut++) {
        assert_int_equal(rtr_st_parse(buf, cut, "x", &st), RTR_E_CORRUPT);
        assert_null(st);
    }
    /* flip every byte of the header in turn: refused or, if the JSON still
     * parses to the same meaning (e.g. a space), accepted; never a crash */
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= 0x5A;
        int rc = rtr_st_parse(buf, len, "x", &st);
        assert_true(rc == RTR_OK || rc == RTR_E_CORRUPT);
        rtr_st_free(st);
        buf[i] ^= 0x5A;
    }
    rtr_free(buf);
    rtr_rmtree(dir);
    rtr_free(path);
    free(dir);
}

static int parse_header(const char *json, size_t data_len) {
    size_t hl = strlen(json);
    uint8_t *b = calloc(8 + hl + data_len + 1, 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, json, hl);
    rtr_safetensors *st;
    int rc = rtr_st_parse(b, 8 + hl + data_len, "bad.safetensors", &st);
    rtr_st_free(st);
    free(b);
    return rc;
}

static void test_lying_headers(void **state) {
    (void)state;
    assert_int_equal(parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8), RTR_OK);
    /* offsets past the data */
    assert_int_equal(parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4), RTR_E_CORRUPT);
    assert_non_null(strstr(rtr_errdetail(), "bad.safetensors"));
    /* shape disagrees with the byte count */
    assert_int_equal(parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8), RTR_E_CORRUPT);
    /* a huge shape that would overflow */
    assert_int_equal(parse_header("{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", 8), RTR_E_CORRUPT);
    /* gap, overlap, trailing bytes */
    assert_int_equal(parse_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}}", 5), RTR_E_CORRUPT);
    assert_int_equal(parse_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", 3), RTR_E_CORRUPT);
    assert_int_equal(parse_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 3), RTR_E_CORRUPT);
    /* unknown dtype, negative dims, too many dims, duplicate names, not an object */
    assert_int_equal(parse_header("{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2), RTR_E_CORRUPT);
    assert_int_equal(parse_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[-2],\"data_offsets\":[0,2]}}", 2), RTR_E_CORRUPT);
    assert_int_equal(parse_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1), RTR_E_CORRUPT);
    assert_int_equal(parse_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1), RTR_E_CORRUPT);
    assert_int_equal(parse_header("[1,2,3]", 0), RTR_E_CORRUPT);
    assert_int_equal(parse_header("{\"__metadata__\":{\"k\":5}}", 0), RTR_E_CORRUPT);
    /* a header length beyond the file */
    uint8_t b[16] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, '{', '}'};
    rtr_safetensors *st;
    assert_int_equal(rtr_st_parse(b, sizeof b, "x", &st), RTR_E_CORRUPT);
}

static void test_allocation_failures(void **state) {
    (void)state;
    char *dir = tu_tmpdir("st");
    char *path = write_sample(dir);
    int failed = 0;
    for (long k = 1; k < 50; k++) {
        rtr_safetensors *st = NULL;
        rtr_alloc_fail_at(k);
        int rc = rtr_st_load(path, &st);
        rtr_alloc_fail_at(0);
        rtr_st_free(st);
        if (rc == RTR_OK) break;
        assert_int_equal(rc, RTR_E_NOMEM);
        failed++;
    }
    assert_true(failed >= 2);
    rtr_rmtree(dir);
    rtr_free(path);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_independent_reader_agrees),
        cmocka_unit_test(test_truncated_and_flipped_never_crash),
        cmocka_unit_test(test_lying_headers),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
