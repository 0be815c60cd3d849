/* fuzz_npy: .npy files (icn_npy_parse_header, icn_npy_load_images, icn_npy_load_labels).
 * Input: 1 flag byte (bit 0: images channels first), then the file. The same bytes are parsed
 * in memory, then read from a file as images and as labels. */
#include "fuzz.h"
#include "npy.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fuzz_file f;
    if (size < 1) return 0;
    int nchw = data[0] & 1;
    data++, size--;
    char err[ICN_ERRLEN];
    icn_npy_header h;
    (void)icn_npy_parse_header(data, size, size, &h, err, sizeof err);
    const char *path = fuzz_file_put(&f, data, size);
    icn_batch b;
    if (icn_npy_load_images(path, nchw, &b, err, sizeof err) == 0) icn_batch_free(&b);
    int32_t *y;
    if (icn_npy_load_labels(path, 4, &y, err, sizeof err) == 0) free(y);
    return 0;
}
