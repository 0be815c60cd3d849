/* plot.h: test error against training-set size (the paper's Figure 3), from the JSON-lines
 * results the pipelines write (one line per run: {"images":N,"seed":S,"method":"icn",
 * "error":E,...}), drawn as a PNG by gnuplot through a generated script. */
#ifndef ICN_PLOT_H
#define ICN_PLOT_H
#include <stddef.h>
#include <stdint.h>

#define ICN_METHOD_MAX 32

typedef struct {
    char method[ICN_METHOD_MAX + 1];
    int64_t images, seed;
    double error; /* in [0, 1] */
    int file;     /* index into icn_results.files */
    int64_t line; /* 1-based */
} icn_run_result;

typedef struct {
    icn_run_result *runs;
    size_t n, cap;
    char **files;
    int n_files;
} icn_results;

/* Append the runs of one JSON-lines file ("-": standard input). Each non-blank line must be a
 * JSON object with images (a whole number, 1 to 10^9), seed (a whole number, |seed| < 2^53),
 * method (1 to 32 of A-Z a-z 0-9 _ . + -) and error (a finite number in [0, 1]); other
 * members are ignored. Errors name the file and line ("r.jsonl:3: error is NaN, not a number
 * in [0, 1]"). */
int icn_results_read(icn_results *r, const char *path, char *err, size_t errlen);
void icn_results_free(icn_results *r);

/* One point of a curve: the mean and sample standard deviation (0 for one seed) of the error
 * over the seeds of one method at one training-set size. */
typedef struct {
    char method[ICN_METHOD_MAX + 1];
    int64_t images;
    int seeds;
    double mean, sd;
} icn_curve_point;

/* The points, methods in order of first appearance, sizes ascending within a method. Two
 * results for the same method, size and seed are an error naming both places. */
int icn_results_summarize(const icn_results *r, icn_curve_point **points, size_t *n, char *err, size_t errlen);

/* "ICN" for icn, "ICN-noise" for noise, the name itself otherwise. */
const char *icn_method_label(const char *method);

typedef struct {
    const char *title; /* NULL: a default */
    int width, height; /* pixels */
} icn_plot_opts;

/* The gnuplot script that draws the points (one line per method, error bars of one standard
 * deviation, log-scale x, error in percent) into `out` with the pngcairo terminal. Strings are
 * single-quoted, so gnuplot substitutes nothing in them; a control character in the title or
 * the path is an error. */
int icn_plot_script(char **script, const icn_curve_point *p, size_t n, const icn_plot_opts *o, const char *out,
                    char *err, size_t errlen);

/* Run gnuplot (found on PATH) on that script; the PNG is written to a temporary file beside
 * `out`, checked to be a PNG, then renamed. Errors: gnuplot not installed, gnuplot failing
 * (its last line of output), no PNG written. */
int icn_plot_png(const icn_curve_point *p, size_t n, const icn_plot_opts *o, const char *out, char *err, size_t errlen);

#endif
