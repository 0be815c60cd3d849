/* fuzz_jsonl: a JSON-lines results file (icn_results_read: one JSON object per line, through
 * json.c, which calls jansson), then the curve summary drawn from it (icn_results_summarize).
 * jansson is Debian's shared library, not built with the sanitizers: coverage and ASan see
 * json.c and plot.c, and jansson only through what it returns and allocates. */
#include "fuzz.h"
#include "plot.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fuzz_file f;
    char err[ICN_ERRLEN];
    icn_results r = {0};
    if (icn_results_read(&r, fuzz_file_put(&f, data, size), err, sizeof err) == 0) {
        icn_curve_point *pts;
        size_t n;
        if (icn_results_summarize(&r, &pts, &n, err, sizeof err) == 0) free(pts);
    }
    icn_results_free(&r);
    return 0;
}
