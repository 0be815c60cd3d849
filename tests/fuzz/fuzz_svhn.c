/* fuzz_svhn: a MATLAB level-5 MAT-file as SVHN holds them (icn_svhn_load: X uint8
 * 32x32x3xN, y N x 1), which drives the MAT reader (matfile.c: tags, miMATRIX, miCOMPRESSED
 * with zlib, both byte orders); then every variable walked with icn_mat_next and read. */
#include "fuzz.h"
#include "datasets.h"
#include "matfile.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fuzz_file f;
    char err[ICN_ERRLEN];
    const char *path = fuzz_file_put(&f, data, size);
    icn_batch b;
    if (icn_svhn_load(&path, 1, &b, err, sizeof err) == 0) icn_batch_free(&b);
    icn_mat *m = icn_mat_open(path, err, sizeof err);
    if (!m) return 0;
    icn_mat_var v;
    double buf[512];
    for (int i = 0; i < 16 && icn_mat_next(m, &v, err, sizeof err) == 1; i++) {
        if (v.mx_class < ICN_MX_DOUBLE || v.mx_class > ICN_MX_UINT64) continue;
        size_t n = v.numel < 512 ? (size_t)v.numel : 512; /* the first elements, as a reader would */
        if (icn_mat_read_f64(m, buf, n, err, sizeof err)) break;
    }
    icn_mat_close(m);
    return 0;
}
