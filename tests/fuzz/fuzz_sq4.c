/* fuzz_sq4.c - a shard's 4-bit code file (index/sq4.c), mapped as a search maps it, then scanned in
 * whole and its ids read. The first byte, when odd, makes the dimension the harness asks for the one
 * the file's header names, so that the fuzzer gets past that check. */
#define _GNU_SOURCE   /* memfd_create */
#include <float.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "index/sq4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint32_t dim = 64;
    if ((data[0] & 1) && size >= 13) memcpy(&dim, data + 1 + 8, 4);
    data++, size--;
    int fd = memfd_create("fuzz.sq4", MFD_CLOEXEC);
    if (fd < 0) return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    rtr_sq4 *s;
    const int64_t *ids;
    int rc = rtr_sq4_map(fd, size, "fuzz.sq4", dim, &s, &ids);
    close(fd);   /* the map outlives it */
    if (rc) {
        FUZZ_FAILED_WELL(rc);
        return 0;
    }
    size_t n = rtr_sq4_n(s);
    FUZZ_CHECK(rtr_sq4_dim(s) == dim);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) sum += (uint64_t)ids[i];
    float *q = calloc(dim, sizeof *q);
    rtr_sq4_query qq;
    if (q) q[0] = 1;
    if (q && n && rtr_sq4_query_init(s, q, &qq) == RTR_OK) {
        float d[4];
        int64_t pos[4];
        for (int i = 0; i < 4; i++) d[i] = FLT_MAX, pos[i] = -1;
        rtr_sq4_scan(s, &qq, 0, n, 4, d, pos);
        for (int i = 0; i < 4; i++) FUZZ_CHECK(pos[i] >= -1 && pos[i] < (int64_t)n);
        rtr_sq4_query_free(&qq);
    }
    free(q);
    rtr_sq4_free(s);
    return sum == 42;   /* keeps the reads */
}
