/* fuzz_idx: an IDX image file and its label file (icn_idx_load), plain or gzip.
 * Input: 1 flag byte (bit 0: gzip the images, bit 1: gzip the labels, both done here so that
 * the fuzzer mutates the IDX bytes and not only the deflate stream), 2 bytes of label-file
 * length L (little-endian, clipped), L label-file bytes, then the image file. A raw gzip file
 * in either part (the seeds hold some) is read as gzip too: zlib detects it. */
#include "fuzz.h"
#include "datasets.h"
#include "util.h"

#include <zlib.h>

static uint8_t *gzip(const uint8_t *p, size_t n, size_t *out_n) {
    z_stream z = {0};
    if (deflateInit2(&z, 1, Z_DEFLATED, 9 + 16, 1, Z_DEFAULT_STRATEGY) /* small state: no mmap per call */ != Z_OK) abort();
    size_t cap = deflateBound(&z, (uLong)n) + 32;
    uint8_t *o = malloc(cap);
    if (!o) abort();
    z.next_in = (Bytef *)p, z.avail_in = (uInt)n, z.next_out = o, z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) abort();
    *out_n = cap - z.avail_out;
    deflateEnd(&z);
    return o;
}

static const char *put(fuzz_file *f, const uint8_t *p, size_t n, int gz) {
    if (!gz) return fuzz_file_put(f, p, n);
    size_t m;
    uint8_t *g = gzip(p, n, &m);
    const char *path = fuzz_file_put(f, g, m);
    free(g);
    return path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fuzz_file fi, fl;
    if (size < 3) return 0;
    uint8_t flags = data[0];
    size_t L = (size_t)data[1] | (size_t)data[2] << 8;
    data += 3, size -= 3;
    if (L > size) L = size;
    const char *labels = put(&fl, data, L, flags & 2);
    const char *images = put(&fi, data + L, size - L, flags & 1);
    char err[ICN_ERRLEN];
    icn_batch b;
    if (icn_idx_load(images, labels, &b, err, sizeof err) == 0) icn_batch_free(&b);
    return 0;
}
