/* icn-eval: measure a model. `error`: test error, per-class error and confusion matrix;
 * `compare`: is one model's error really lower than another's (McNemar); `grid`: a picture
 * of a tensor stream; `fgsm`: the two-way adversarial test; `plot`: test error against
 * training-set size from the pipelines' results. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adversarial.h"
#include "compare.h"
#include "fileio.h"
#include "image.h"
#include "net.h"
#include "plot.h"
#include "snapshot.h"
#include "eval.h"
#include "runtime.h"
#include "util.h"
#include "wire.h"

static const char usage[] =
    "usage: icn-eval error --model MODEL [--data FILE|-] [--json] [--threads T]\n"
    "       icn-eval grid --out PNG [--data FILE|-] [--cols N] [--rows N] [--zoom Z]\n"
    "       icn-eval compare --model-a A --model-b B [--model-a A2 --model-b B2]... [--data FILE|-]\n"
    "                        [--json] [--threads T]\n"
    "       icn-eval fgsm --model-a A --model-b B [--data FILE|-] [--eps E] [--json]\n"
    "       icn-eval plot --out PNG [--title T] [--size WxH] [--script FILE] [RESULTS.jsonl|-]...\n"
    "\n"
    "error: classify a labelled tensor stream (default: stdin) and print the test error,\n"
    "       the error of each class and the confusion matrix (rows: true class, columns:\n"
    "       predicted). --json prints one JSON object instead.\n"
    "compare: classify the same labelled stream with models A and B and count the images\n"
    "       only A gets wrong and only B gets wrong; McNemar's exact two-sided p-value says\n"
    "       how likely so lopsided a split is if A and B are equally good. Give one pair per\n"
    "       seed (--model-a/--model-b in turn) to add the pooled count over all pairs.\n"
    "grid:  draw a tensor stream as a PNG. Pseudo-negatives (from icn-pool dump or\n"
    "       icn-synthesize) are laid out one row per generation, one column per class\n"
    "       (the paper's Figure 2); other images fill --rows x --cols (default 10 x 10)\n"
    "       in order. --zoom scales each pixel (default 2).\n"
    "fgsm:  the paper's two-way robustness test with the fast gradient sign method: the test\n"
    "       images that A classifies correctly are perturbed by eps * sign(input gradient of\n"
    "       A's loss) (eps on the [0, 1] pixel scale, default 0.125; doubled for the [-1, 1]\n"
    "       scale the models see; clamped to it); counts how many fool A and how many of those\n"
    "       also fool B; then the same with A and B swapped.\n"
    "plot:  test error against training-set size (the paper's Figure 3) as a PNG, drawn by\n"
    "       gnuplot (pngcairo terminal; Debian: gnuplot-nox): one line per method, the mean\n"
    "       over seeds with error bars of one standard deviation, log-scale x. Reads JSON\n"
    "       lines (default: stdin), one run each: {\"images\":N,\"seed\":S,\"method\":M,\n"
    "       \"error\":E,...} with E in [0, 1], as pipelines/training-size.sh writes them.\n"
    "       --size in pixels (default 800x600); --script also saves the gnuplot script.\n";

static void print_text(const icn_eval_result *r, const char *model) {
    printf("model %s: test error %.2f%% (%lld of %lld wrong)\n", model, 100.0 * r->wrong / r->n, (long long)r->wrong,
           (long long)r->n);
    printf("class  images  error\n");
    for (int k = 0; k < r->classes; k++) {
        int64_t total = 0, right = r->confusion[(size_t)k * r->classes + k];
        for (int j = 0; j < r->classes; j++) total += r->confusion[(size_t)k * r->classes + j];
        if (total) printf("%5d  %6lld  %5.2f%%\n", k, (long long)total, 100.0 * (total - right) / total);
    }
    printf("confusion (row: true, column: predicted)\n");
    for (int k = 0; k < r->classes; k++) {
        for (int j = 0; j < r->classes; j++) printf("%s%5lld", j ? " " : "", (long long)r->confusion[(size_t)k * r->classes + j]);
        putchar('\n');
    }
}

static void print_json(const icn_eval_result *r, const char *model, const icn_model_meta *meta) {
    printf("{\"model\":");
    icn_fput_json_string(stdout, model);
    printf(",\"step\":%lld,\"round\":%lld", (long long)meta->step, (long long)meta->round);
    printf(",\"n\":%lld,\"wrong\":%lld,\"error\":%.6f,\"per_class_error\":[", (long long)r->n,
           (long long)r->wrong, (double)r->wrong / r->n);
    for (int k = 0; k < r->classes; k++) {
        int64_t total = 0, right = r->confusion[(size_t)k * r->classes + k];
        for (int j = 0; j < r->classes; j++) total += r->confusion[(size_t)k * r->classes + j];
        if (total) printf("%s%.6f", k ? "," : "", (double)(total - right) / total);
        else printf("%snull", k ? "," : "");
    }
    printf("],\"confusion\":[");
    for (int k = 0; k < r->classes; k++) {
        printf("%s[", k ? "," : "");
        for (int j = 0; j < r->classes; j++) printf("%s%lld", j ? "," : "", (long long)r->confusion[(size_t)k * r->classes + j]);
        printf("]");
    }
    printf("]}\n");
}

/* Load the model at path (its metadata into meta, if given) and classify all of data with it;
 * dies with one line on failure. */
static void evaluate_model(const char *path, const char *data_name, const icn_batch *data, icn_eval_result *r,
                           icn_model_meta *meta) {
    char err[ICN_ERRLEN];
    icn_net net;
    icn_model_meta own;
    if (!meta) meta = &own;
    if (icn_model_load(path, &net, meta, NULL, NULL, err, sizeof err)) icn_die(1, "%s", err);
    icn_work *w = icn_work_new(&net, 256);
    if (icn_evaluate(&net, w, data, r, err, sizeof err)) icn_die(1, "%s: %s", data_name, err);
    icn_work_free(w);
    icn_net_free(&net);
}

static int cmd_error(int argc, char **argv) {
    const char *model = NULL, *data = "-";
    int json = 0, threads = 0, opt;
    enum { O_MODEL = 256, O_DATA, O_JSON, O_THREADS };
    static const struct option longs[] = {
        {"model", required_argument, 0, O_MODEL}, {"data", required_argument, 0, O_DATA},
        {"json", no_argument, 0, O_JSON}, {"threads", required_argument, 0, O_THREADS}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    while ((opt = icn_getopt(argc, argv, longs, usage, NULL)) != -1) {
        switch (opt) {
        case O_MODEL: model = optarg; break;
        case O_DATA: data = optarg; break;
        case O_JSON: json = 1; break;
        case O_THREADS: threads = (int)icn_parse_long("--threads", optarg, 1, 1024); break;
        }
    }
    icn_no_operands(argc, argv, NULL);
    if (!model) icn_die(2, "error: --model MODEL is required");
    icn_runtime_init(threads);
    icn_batch b = {0};
    char err[ICN_ERRLEN];
    if (icn_batch_read_images(data, &b, err, sizeof err)) icn_die(1, "%s", err);
    icn_eval_result r;
    icn_model_meta meta;
    evaluate_model(model, data, &b, &r, &meta);
    if (json) print_json(&r, model, &meta);
    else print_text(&r, model);
    icn_eval_result_free(&r);
    icn_batch_free(&b);
    return 0;
}

#define MAX_PAIRS 64

static void print_paired_json(const icn_paired_result *r) {
    printf("\"n\":%lld,\"wrong_a\":%lld,\"wrong_b\":%lld,\"only_a_wrong\":%lld,\"only_b_wrong\":%lld,"
           "\"both_wrong\":%lld,\"disagree\":%lld,\"p_value\":%.6g",
           (long long)r->n, (long long)r->wrong_a, (long long)r->wrong_b, (long long)r->only_a_wrong,
           (long long)r->only_b_wrong, (long long)r->both_wrong, (long long)r->disagree, r->p_value);
}

static void print_paired_text(const icn_paired_result *r) {
    printf("  A %.2f%% (%lld wrong), B %.2f%% (%lld wrong) of %lld; only A wrong %lld, only B wrong %lld, both %lld; "
           "McNemar exact p = %.3g\n",
           100.0 * r->wrong_a / r->n, (long long)r->wrong_a, 100.0 * r->wrong_b / r->n, (long long)r->wrong_b,
           (long long)r->n, (long long)r->only_a_wrong, (long long)r->only_b_wrong, (long long)r->both_wrong,
           r->p_value);
}

static int cmd_compare(int argc, char **argv) {
    const char *paths_a[MAX_PAIRS], *paths_b[MAX_PAIRS], *data = "-";
    int n_a = 0, n_b = 0, json = 0, threads = 0, opt;
    enum { O_MODEL_A = 256, O_MODEL_B, O_DATA, O_JSON, O_THREADS };
    static const struct option longs[] = {
        {"model-a", required_argument, 0, O_MODEL_A}, {"model-b", required_argument, 0, O_MODEL_B},
        {"data", required_argument, 0, O_DATA}, {"json", no_argument, 0, O_JSON},
        {"threads", required_argument, 0, O_THREADS}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    while ((opt = icn_getopt(argc, argv, longs, usage, NULL)) != -1) {
        switch (opt) {
        case O_MODEL_A:
            if (n_a == MAX_PAIRS) icn_die(2, "compare: at most %d --model-a", MAX_PAIRS);
            paths_a[n_a++] = optarg;
            break;
        case O_MODEL_B:
            if (n_b == MAX_PAIRS) icn_die(2, "compare: at most %d --model-b", MAX_PAIRS);
            paths_b[n_b++] = optarg;
            break;
        case O_DATA: data = optarg; break;
        case O_JSON: json = 1; break;
        case O_THREADS: threads = (int)icn_parse_long("--threads", optarg, 1, 1024); break;
        }
    }
    icn_no_operands(argc, argv, NULL);
    if (n_a == 0 || n_a != n_b)
        icn_die(2, "compare: give --model-a and --model-b in pairs (got %d --model-a, %d --model-b)", n_a, n_b);
    icn_runtime_init(threads);
    icn_batch test = {0};
    char err[ICN_ERRLEN];
    if (icn_batch_read_images(data, &test, err, sizeof err)) icn_die(1, "%s", err);
    icn_paired_result pooled = {0};
    if (json) printf("{\"pairs\":[");
    for (int i = 0; i < n_a; i++) {
        icn_eval_result ra, rb;
        evaluate_model(paths_a[i], data, &test, &ra, NULL);
        evaluate_model(paths_b[i], data, &test, &rb, NULL);
        icn_paired_result one = {0};
        icn_paired_add(&one, test.y, ra.pred, rb.pred, test.n);
        icn_paired_add(&pooled, test.y, ra.pred, rb.pred, test.n);
        if (json) {
            printf("%s{\"model_a\":", i ? "," : "");
            icn_fput_json_string(stdout, paths_a[i]);
            printf(",\"model_b\":");
            icn_fput_json_string(stdout, paths_b[i]);
            putchar(',');
            print_paired_json(&one);
            putchar('}');
        } else {
            printf("pair %d: A %s, B %s\n", i + 1, paths_a[i], paths_b[i]);
            print_paired_text(&one);
        }
        icn_eval_result_free(&ra);
        icn_eval_result_free(&rb);
    }
    if (json) {
        printf("],\"pooled\":{");
        print_paired_json(&pooled);
        printf("}}\n");
    } else if (n_a > 1) {
        printf("pooled over %d pairs:\n", n_a);
        print_paired_text(&pooled);
    }
    icn_batch_free(&test);
    return 0;
}

static void print_fgsm_json(const char *name, const icn_fgsm_result *r) {
    printf("\"%s\":{\"tested\":%lld,\"correct\":%lld,\"fool_source\":%lld,\"fool_both\":%lld}", name,
           (long long)r->tested, (long long)r->correct, (long long)r->fool_source, (long long)r->fool_both);
}

static void print_fgsm_text(const char *src, const char *dst, const icn_fgsm_result *r, double eps) {
    printf("made against %s (eps %g): %lld of %lld correctly classified test images become adversarial for %s; "
           "%lld of those (%.1f%%) also fool %s\n",
           src, eps, (long long)r->fool_source, (long long)r->correct, src, (long long)r->fool_both,
           r->fool_source ? 100.0 * r->fool_both / r->fool_source : 0.0, dst);
}

static int cmd_fgsm(int argc, char **argv) {
    const char *path_a = NULL, *path_b = NULL, *data = "-";
    double eps = 0.125;
    int json = 0, threads = 0, opt;
    enum { O_MODEL_A = 256, O_MODEL_B, O_DATA, O_EPS, O_JSON, O_THREADS };
    static const struct option longs[] = {
        {"model-a", required_argument, 0, O_MODEL_A}, {"model-b", required_argument, 0, O_MODEL_B},
        {"data", required_argument, 0, O_DATA}, {"eps", required_argument, 0, O_EPS},
        {"json", no_argument, 0, O_JSON}, {"threads", required_argument, 0, O_THREADS}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    while ((opt = icn_getopt(argc, argv, longs, usage, NULL)) != -1) {
        switch (opt) {
        case O_MODEL_A: path_a = optarg; break;
        case O_MODEL_B: path_b = optarg; break;
        case O_DATA: data = optarg; break;
        case O_EPS: eps = icn_parse_double("--eps", optarg, 0, 1); break;
        case O_JSON: json = 1; break;
        case O_THREADS: threads = (int)icn_parse_long("--threads", optarg, 1, 1024); break;
        }
    }
    icn_no_operands(argc, argv, NULL);
    if (!path_a || !path_b) icn_die(2, "fgsm: --model-a A and --model-b B are required");
    icn_runtime_init(threads);
    char err[ICN_ERRLEN];
    icn_net a, b;
    icn_model_meta meta_a, meta_b;
    if (icn_model_load(path_a, &a, &meta_a, NULL, NULL, err, sizeof err)) icn_die(1, "%s", err);
    if (icn_model_load(path_b, &b, &meta_b, NULL, NULL, err, sizeof err)) icn_die(1, "%s", err);
    icn_batch test = {0};
    if (icn_batch_read_images(data, &test, err, sizeof err)) icn_die(1, "%s", err);
    icn_fgsm_result ab, ba;
    double scaled = 2 * eps; /* [0, 1] pixels to the [-1, 1] scale */
    if (icn_fgsm(&a, meta_a.head, &b, &test, scaled, -1, 1, &ab, err, sizeof err) ||
        icn_fgsm(&b, meta_b.head, &a, &test, scaled, -1, 1, &ba, err, sizeof err))
        icn_die(1, "%s: %s", data, err);
    if (json) {
        printf("{\"eps\":%g,\"model_a\":", eps);
        icn_fput_json_string(stdout, path_a);
        printf(",\"model_b\":");
        icn_fput_json_string(stdout, path_b);
        putchar(',');
        print_fgsm_json("a_to_b", &ab);
        putchar(',');
        print_fgsm_json("b_to_a", &ba);
        printf("}\n");
    } else {
        print_fgsm_text(path_a, path_b, &ab, eps);
        print_fgsm_text(path_b, path_a, &ba, eps);
    }
    icn_batch_free(&test);
    icn_net_free(&a);
    icn_net_free(&b);
    return 0;
}

/* Cells of the grid: by (generation, class) for pseudo-negatives, else in stream order. */
static int grid_cells(const icn_batch *b, int rows_max, int cols_max, const float ***cells_out, int *rows, int *cols) {
    size_t d = icn_batch_dim(b);
    int by_generation = b->prov && b->y;
    /* pseudo-negatives of classes 0..999 (labels -1..-1000); anything else is drawn in order */
    for (int64_t i = 0; by_generation && i < b->n; i++) by_generation = b->y[i] < 0 && b->y[i] >= -1000;
    if (!by_generation) {
        *cols = (int)(b->n < cols_max ? b->n : cols_max);
        *rows = (int)((b->n + *cols - 1) / *cols < rows_max ? (b->n + *cols - 1) / *cols : rows_max);
        const float **cells = xcalloc((size_t)*rows * *cols, sizeof *cells);
        for (int64_t i = 0; i < b->n && i < (int64_t)*rows * *cols; i++) cells[i] = b->x + (size_t)i * d;
        *cells_out = cells;
        return 0;
    }
    int32_t gens[1024];
    int n_gens = 0, classes = 0;
    for (int64_t i = 0; i < b->n; i++) { /* distinct generations, in sorted order */
        int32_t g = b->prov[i].generation;
        int k = -(b->y[i] + 1), at = 0;
        if (k + 1 > classes) classes = k + 1;
        while (at < n_gens && gens[at] < g) at++;
        if ((at < n_gens && gens[at] == g) || n_gens == 1024) continue;
        memmove(gens + at + 1, gens + at, (size_t)(n_gens - at) * sizeof gens[0]);
        gens[at] = g, n_gens++;
    }
    *rows = n_gens < rows_max ? n_gens : rows_max;
    *cols = classes;
    const float **cells = xcalloc((size_t)*rows * *cols, sizeof *cells);
    for (int64_t i = 0; i < b->n; i++) {
        int k = -(b->y[i] + 1), r = 0;
        while (r < *rows && gens[r] != b->prov[i].generation) r++;
        if (r < *rows && !cells[(size_t)r * *cols + k]) cells[(size_t)r * *cols + k] = b->x + (size_t)i * d;
    }
    *cells_out = cells;
    return 1;
}

static int cmd_grid(int argc, char **argv) {
    const char *data = "-", *out = NULL;
    int rows = 10, cols = 10, zoom = 2, opt;
    enum { O_DATA = 256, O_OUT, O_ROWS, O_COLS, O_ZOOM };
    static const struct option longs[] = {
        {"data", required_argument, 0, O_DATA}, {"out", required_argument, 0, O_OUT},
        {"rows", required_argument, 0, O_ROWS}, {"cols", required_argument, 0, O_COLS},
        {"zoom", required_argument, 0, O_ZOOM}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    while ((opt = icn_getopt(argc, argv, longs, usage, NULL)) != -1) {
        switch (opt) {
        case O_DATA: data = optarg; break;
        case O_OUT: out = optarg; break;
        case O_ROWS: rows = (int)icn_parse_long("--rows", optarg, 1, 1000); break;
        case O_COLS: cols = (int)icn_parse_long("--cols", optarg, 1, 1000); break;
        case O_ZOOM: zoom = (int)icn_parse_long("--zoom", optarg, 1, 16); break;
        }
    }
    icn_no_operands(argc, argv, NULL);
    if (!out) icn_die(2, "grid: --out PNG is required");
    char err[ICN_ERRLEN];
    icn_batch b = {0};
    if (icn_batch_read_images(data, &b, err, sizeof err)) icn_die(1, "%s", err);
    const float **cells;
    int r, c, by_gen = grid_cells(&b, rows, cols, &cells, &r, &c);
    if (icn_png_grid(out, cells, r, c, b.h, b.w, b.c, zoom, err, sizeof err)) icn_die(1, "%s", err);
    icn_warn("wrote %s: %d x %d %s", out, r, c, by_gen ? "(rows: generations, columns: classes)" : "images");
    free(cells);
    icn_batch_free(&b);
    return 0;
}

static int cmd_plot(int argc, char **argv) {
    const char *out = NULL, *script_path = NULL;
    icn_plot_opts o = {NULL, 800, 600};
    int opt;
    enum { O_OUT = 256, O_TITLE, O_SIZE, O_SCRIPT };
    static const struct option longs[] = {
        {"out", required_argument, 0, O_OUT}, {"title", required_argument, 0, O_TITLE},
        {"size", required_argument, 0, O_SIZE}, {"script", required_argument, 0, O_SCRIPT},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    while ((opt = icn_getopt(argc, argv, longs, usage, NULL)) != -1) {
        switch (opt) {
        case O_OUT: out = optarg; break;
        case O_TITLE: o.title = optarg; break;
        case O_SCRIPT: script_path = optarg; break;
        case O_SIZE: {
            char *x = strchr(optarg, 'x');
            if (!x || x == optarg) icn_die(2, "--size: '%s' is not WIDTHxHEIGHT, such as 800x600", optarg);
            *x = 0;
            o.width = (int)icn_parse_long("--size", optarg, 100, 10000);
            o.height = (int)icn_parse_long("--size", x + 1, 100, 10000);
            break;
        }
        }
    }
    if (!out) icn_die(2, "plot: --out PNG is required");
    char err[ICN_ERRLEN];
    icn_results r = {0};
    if (optind == argc) {
        if (icn_results_read(&r, "-", err, sizeof err)) icn_die(1, "%s", err);
    }
    for (int i = optind; i < argc; i++)
        if (icn_results_read(&r, argv[i], err, sizeof err)) icn_die(1, "%s", err);
    icn_curve_point *p;
    size_t n;
    if (r.n == 0) icn_die(1, "%s%s: no results (every line blank)", r.files[0], r.n_files > 1 ? " and the others" : "");
    if (icn_results_summarize(&r, &p, &n, err, sizeof err)) icn_die(1, "%s", err);
    if (script_path) {
        char *script;
        if (icn_plot_script(&script, p, n, &o, out, err, sizeof err)) icn_die(1, "%s", err);
        if (icn_write_file_atomic(script_path, script, strlen(script), err, sizeof err)) icn_die(1, "%s", err);
        free(script);
    }
    if (icn_plot_png(p, n, &o, out, err, sizeof err)) icn_die(1, "%s", err);
    int methods = 0;
    for (size_t i = 0; i < n; i++) methods += i == 0 || strcmp(p[i].method, p[i - 1].method) != 0;
    icn_warn("wrote %s: %d method%s, %zu points, from %zu runs", out, methods, methods == 1 ? "" : "s", n, r.n);
    free(p);
    icn_results_free(&r);
    return 0;
}

int main(int argc, char **argv) {
    icn_set_progname(argv[0]);
    static const icn_command cmds[] = {{"error", cmd_error}, {"compare", cmd_compare}, {"grid", cmd_grid},
                                       {"fgsm", cmd_fgsm},   {"plot", cmd_plot}};
    return icn_dispatch(argc, argv, cmds, (int)(sizeof cmds / sizeof cmds[0]), usage);
}
