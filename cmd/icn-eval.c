/* icn-eval: measure a model. `error`: test error, per-class error and confusion matrix. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"
#include "snapshot.h"
#include "train.h"
#include "util.h"
#include "wire.h"

static const char usage[] =
    "usage: icn-eval error --model MODEL [--data FILE|-] [--json] [--threads T]\n"
    "\n"
    "error: classify a labelled tensor stream (default: stdin) and print the test error,\n"
    "       the error of each class and the confusion matrix (rows: true class, columns:\n"
    "       predicted). --json prints one JSON object instead.\n";

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

static void print_json(const icn_eval_result *r, const char *model) {
    printf("{\"model\":\"%s\",\"n\":%lld,\"wrong\":%lld,\"error\":%.6f,\"per_class_error\":[", model, (long long)r->n,
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

static int cmd_error(int argc, char **argv) {
    const char *model = NULL, *data = "-";
    int json = 0, threads = 0, opt;
    static const struct option options[] = {{"model", 1, 0, 'm'}, {"data", 1, 0, 'd'}, {"json", 0, 0, 'j'},
                                            {"threads", 1, 0, 't'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
        case 'm': model = optarg; break;
        case 'd': data = optarg; break;
        case 'j': json = 1; break;
        case 't': threads = (int)icn_parse_long("--threads", optarg, 1, 1024); break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind < argc) icn_die(2, "unexpected argument '%s' (see --help)", argv[optind]);
    if (!model) icn_die(2, "error: --model MODEL is required");
    icn_threads_init(threads);
    char err[ICN_ERRLEN];
    icn_net net;
    icn_model_meta meta;
    if (icn_model_load(model, &net, &meta, NULL, NULL, err, sizeof err)) icn_die(1, "%s", err);
    icn_batch b = {0};
    if (icn_batch_read_all(data, &b, err, sizeof err)) icn_die(1, "%s", err);
    if (b.n == 0) icn_die(1, "%s: no images in the tensor stream", data);
    icn_work *w = icn_work_new(&net, 256);
    icn_eval_result r;
    if (icn_evaluate(&net, w, &b, &r, err, sizeof err)) icn_die(1, "%s: %s", data, err);
    if (json) print_json(&r, model);
    else print_text(&r, model);
    icn_eval_result_free(&r);
    icn_work_free(w);
    icn_batch_free(&b);
    icn_net_free(&net);
    return 0;
}

int main(int argc, char **argv) {
    icn_set_progname(argv[0]);
    if (argc < 2) { fputs(usage, stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) { fputs(usage, stdout); return 0; }
    if (!strcmp(argv[1], "error")) return cmd_error(argc - 1, argv + 1);
    icn_die(2, "unknown command '%s' (see --help)", argv[1]);
}
