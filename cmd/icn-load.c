/* icn-load: data set files in (MNIST-style IDX, CIFAR-10, SVHN, NumPy .npy, a folder of PNG
 * images, a tensor stream), a tensor stream of "batch" frames or .npy files out (icn-load(1)).
 * Thin by design: flags here, everything else in lib/data.c, lib/datasets.c, lib/npy.c,
 * lib/imagefolder.c and lib/wire.c. */
#include "data.h"
#include "datasets.h"
#include "imagefolder.h"
#include "npy.h"
#include "fileio.h"
#include "util.h"
#include "wire.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: icn-load [mnist|fashion] [--split train|val|test|all] [OPTIONS]\n"
    "       icn-load cifar10 [--dir DIR] [--split train|val|test|all] [OPTIONS]\n"
    "       icn-load svhn [--dir DIR] [--split train|val|test|all|extra|train+extra] [OPTIONS]\n"
    "       icn-load --images FILE --labels FILE [--split S] [OPTIONS]\n"
    "       icn-load npy --images X.npy --labels Y.npy [--nchw] [OPTIONS]\n"
    "       icn-load images DIR [--classes-out FILE] [OPTIONS]\n"
    "       icn-load stream FILE|- [OPTIONS]\n"
    "       icn-load --fetch mnist|fashion\n"
    "       icn-load --info FILE|-\n"
    "Writes images as a tensor stream of msgpack \"batch\" frames (icn-wire(5)), or .npy files.\n"
    "  --split S        train: first 55,000 of the training file; val: its last 5,000;\n"
    "                   test: the t10k file; all: the whole training file\n"
    "                   (default train; with --images, the whole given file). cifar10 and\n"
    "                   svhn alike: val the last 1/12 of the training files, train the rest,\n"
    "                   all of them (cifar10's 50,000); svhn: extra, and train+extra (the\n"
    "                   whole of both: the paper's 604,388)\n"
    "  --dir DIR        cifar10: DIR holds data_batch_1.bin .. data_batch_5.bin, test_batch.bin\n"
    "                   (default: the data directory's cifar-10-batches-bin); svhn: DIR holds\n"
    "                   train_32x32.mat, test_32x32.mat, extra_32x32.mat (default: its svhn)\n"
    "  --images FILE    IDX image file (plain or .gz) instead of a named data set; with npy:\n"
    "                   a .npy of uint8 or float32 in [-1, 1], shape (n,h,w) or (n,h,w,c)\n"
    "  --labels FILE    its IDX label file; with npy: a .npy of shape (n,), uint8/int32/int64\n"
    "  --nchw           npy: the images are (n, c, h, w) (default channels last)\n"
    "  images DIR       DIR/CLASS/*.png, classes numbered in sorted order (mapping on stderr)\n"
    "  --classes-out F  images: also write the mapping to F (\"NUMBER<TAB>NAME\" lines)\n"
    "  stream FILE|-    a tensor stream (say icn-pool dump's), to convert with --npy-out\n"
    "  --classes L      keep only these labels, e.g. 0,1,7 (each 0..31)\n"
    "  --relabel        with --classes: number the kept classes 0..k-1 (7 -> 0; 3,7 -> 0,1)\n"
    "  --limit N        then keep a random subset of N images, in their original order\n"
    "  --seed S         seed of that subset (default 1)\n"
    "  --chunk N        images per frame (default 1000)\n"
    "  --out FILE|-     output, written atomically when a file (default -: stdout)\n"
    "  --npy-out PREFIX instead: PREFIX-images.npy (float32 n,h,w,c), PREFIX-labels.npy\n"
    "                   (int32) and PREFIX-prov.npy (provenance records), where present\n"
    "  --quiet          no summary line on stderr\n"
    "  --fetch NAME     download and verify mnist or fashion into the data directory\n"
    "  --info FILE|-    print count, shape and label histogram of a tensor stream\n"
    "  --help           this text\n"
    "Data directory: $ICN_DATA, else $XDG_CACHE_HOME/icn, else ~/.cache/icn.\n";

typedef struct {
    const char *dataset, *images, *labels, *out, *fetch, *info, *classes_s, *dir;
    const char *source, *npy_out, *classes_out; /* source: DIR of images, FILE of stream */
    icn_split split;
    int split_set, quiet, relabel, nchw, out_set;
    uint32_t classes;
    int64_t limit;
    uint64_t seed;
    int32_t chunk;
} opts;

static void parse_split(opts *o, const char *s) {
    if (icn_split_parse(s, &o->split))
        icn_die(2, "--split: '%s' is not train, val, test, all, extra or train+extra", s);
    o->split_set = 1;
}

static void parse_args(int argc, char **argv, opts *o) {
    enum { O_SPLIT = 256, O_LIMIT, O_SEED, O_CLASSES, O_CHUNK, O_OUT, O_IMAGES, O_LABELS, O_FETCH, O_INFO, O_QUIET,
           O_RELABEL, O_DIR, O_NCHW, O_NPY_OUT, O_CLASSES_OUT };
    static const struct option longs[] = {
        {"split", required_argument, 0, O_SPLIT}, {"limit", required_argument, 0, O_LIMIT},
        {"seed", required_argument, 0, O_SEED}, {"classes", required_argument, 0, O_CLASSES},
        {"chunk", required_argument, 0, O_CHUNK}, {"out", required_argument, 0, O_OUT},
        {"images", required_argument, 0, O_IMAGES}, {"labels", required_argument, 0, O_LABELS},
        {"fetch", required_argument, 0, O_FETCH}, {"info", required_argument, 0, O_INFO},
        {"quiet", no_argument, 0, O_QUIET}, {"help", no_argument, 0, 'h'}, {"relabel", no_argument, 0, O_RELABEL},
        {"dir", required_argument, 0, O_DIR}, {"nchw", no_argument, 0, O_NCHW},
        {"npy-out", required_argument, 0, O_NPY_OUT}, {"classes-out", required_argument, 0, O_CLASSES_OUT},
        {0, 0, 0, 0}};
    *o = (opts){.out = "-", .seed = 1, .chunk = 1000};
    int c;
    while ((c = icn_getopt(argc, argv, longs, usage_text, NULL)) != -1) {
        switch (c) {
        case O_SPLIT: parse_split(o, optarg); break;
        case O_LIMIT: o->limit = icn_parse_long("--limit", optarg, 1, INT32_MAX); break;
        case O_SEED: o->seed = (uint64_t)icn_parse_long("--seed", optarg, 0, LONG_MAX); break;
        case O_CLASSES: o->classes = icn_parse_classes("--classes", optarg); o->classes_s = optarg; break;
        case O_CHUNK: o->chunk = (int32_t)icn_parse_long("--chunk", optarg, 1, 1 << 24); break;
        case O_OUT: o->out = optarg; o->out_set = 1; break;
        case O_NCHW: o->nchw = 1; break;
        case O_NPY_OUT: o->npy_out = optarg; break;
        case O_CLASSES_OUT: o->classes_out = optarg; break;
        case O_IMAGES: o->images = optarg; break;
        case O_LABELS: o->labels = optarg; break;
        case O_FETCH: o->fetch = optarg; break;
        case O_INFO: o->info = optarg; break;
        case O_QUIET: o->quiet = 1; break;
        case O_RELABEL: o->relabel = 1; break;
        case O_DIR: o->dir = optarg; break;
        }
    }
    if (optind < argc) o->dataset = argv[optind++];
    int npy = o->dataset && strcmp(o->dataset, "npy") == 0;
    int own = o->dataset && (strcmp(o->dataset, "images") == 0 || strcmp(o->dataset, "stream") == 0);
    if (own && optind < argc) o->source = argv[optind++];
    else if (own) icn_die(2, "%s: give the %s (see --help)", o->dataset, strcmp(o->dataset, "images") ? "stream FILE or -" : "folder DIR");
    icn_no_operands(argc, argv, NULL);
    if (!o->images != !o->labels) icn_die(2, "--images and --labels go together");
    if (npy && !o->images) icn_die(2, "npy: give --images X.npy and --labels Y.npy");
    if (o->nchw && !npy) icn_die(2, "--nchw goes with npy");
    if (o->classes_out && !(own && o->source && strcmp(o->dataset, "images") == 0)) icn_die(2, "--classes-out goes with images DIR");
    if (o->npy_out && o->out_set) icn_die(2, "give either --out or --npy-out, not both");
    if ((npy || own) && (o->dir || o->split_set))
        icn_die(2, "%s: --dir and --split are for named data sets and IDX files", o->dataset);
    if (npy || own) {
        if (!o->split_set) o->split = ICN_SPLIT_ALL;
        return;
    }
    if (o->images && (o->dataset || o->dir))
        icn_die(2, "give either a data set name (and --dir) or --images/--labels, not both");
    if (!o->split_set) o->split = o->images ? ICN_SPLIT_ALL : ICN_SPLIT_TRAIN;
    char err[ICN_ERRLEN];
    if (!o->images && !o->fetch && !o->info &&
        icn_dataset_check(o->dataset ? o->dataset : "mnist", o->dir, o->split, err, sizeof err))
        icn_die(2, "%s", err);
    if (o->images && o->split > ICN_SPLIT_ALL)
        icn_die(2, "--split %s is svhn's; --images takes train, val, test or all", icn_split_name(o->split));
    if (o->fetch && strcmp(o->fetch, "mnist") && strcmp(o->fetch, "fashion"))
        icn_die(2, "--fetch: '%s' is not mnist or fashion (icn-load(1) says where to get cifar10 and svhn)", o->fetch);
}

/* The fetch script: $ICN_SCRIPTS, else installed (../share/icn/scripts) or in the source tree
 * (../../scripts, for build/bin) relative to this binary. */
static char *find_script(void) {
    const char *env = getenv("ICN_SCRIPTS");
    char exe[PATH_MAX], path[PATH_MAX + 64];
    if (env && *env) {
        snprintf(path, sizeof path, "%s/fetch-mnist.sh", env);
        if (access(path, R_OK) == 0) return xstrdup(path);
        icn_die(1, "ICN_SCRIPTS: no readable %s", path);
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) icn_die(1, "cannot find this binary (/proc/self/exe) to locate fetch-mnist.sh; set ICN_SCRIPTS");
    exe[n] = 0;
    const char *dir = dirname(exe);
    static const char *const rel[] = {"../share/icn/scripts", "../../scripts"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s/fetch-mnist.sh", dir, rel[i]);
        if (access(path, R_OK) == 0) return xstrdup(path);
    }
    icn_die(1, "fetch-mnist.sh not found in %s/../share/icn/scripts or %s/../../scripts; set ICN_SCRIPTS", dir, dir);
}

static void run_fetch(const char *name) {
    char *script = find_script(), *dir = icn_data_dir();
    fflush(NULL);
    if (strcmp(name, "fashion") == 0) execl("/bin/sh", "sh", script, "--fashion", dir, (char *)NULL);
    else execl("/bin/sh", "sh", script, dir, (char *)NULL);
    icn_die(1, "cannot run /bin/sh %s: %s", script, strerror(errno));
}

static void print_info(const char *path) {
    char err[ICN_ERRLEN];
    icn_batch b;
    if (icn_batch_read_all(path, &b, err, sizeof err)) icn_die(1, "%s", err);
    printf("images: %d\n", b.n);
    if (b.n > 0) printf("shape: %dx%dx%d\n", b.h, b.w, b.c);
    printf("labels: %s\n", b.y ? "yes" : "no");
    long pos[256] = {0}, neg[256] = {0}, other = 0;
    for (int32_t i = 0; b.y && i < b.n; i++) {
        int32_t y = b.y[i];
        if (y >= 0 && y < 256) pos[y]++;
        else if (y < 0 && y >= -256) neg[-y - 1]++;
        else other++;
    }
    for (int k = 0; k < 256; k++)
        if (pos[k]) printf("class %d: %ld\n", k, pos[k]);
    for (int k = 0; k < 256; k++)
        if (neg[k]) printf("pseudo-negative of class %d: %ld\n", k, neg[k]);
    if (other) printf("other labels: %ld\n", other);
    printf("provenance: %s\n", b.prov ? "yes" : "no");
    size_t m = (size_t)b.n * icn_batch_dim(&b);
    double lo = INFINITY, hi = -INFINITY, sum = 0;
    for (size_t i = 0; i < m; i++) {
        lo = fmin(lo, b.x[i]);
        hi = fmax(hi, b.x[i]);
        sum += b.x[i];
    }
    if (m) printf("pixels: min %g max %g mean %.4f\n", lo, hi, sum / (double)m);
    icn_batch_free(&b);
    if (fflush(stdout) != 0) icn_die(1, "stdout: write error");
}

/* images DIR: the class mapping on stderr and, with --classes-out, in a file. */
static void load_folder(const opts *o, icn_batch *b) {
    char err[ICN_ERRLEN];
    icn_class_names names;
    if (icn_imagefolder_load(o->source, b, &names, err, sizeof err)) icn_die(1, "%s", err);
    size_t cap = 64, len = 0;
    char *map = xmalloc(cap);
    map[0] = 0;
    for (int k = 0; k < names.n; k++) {
        size_t need = strlen(names.names[k]) + 16;
        if (len + need >= cap) map = xrealloc(map, cap = 2 * (len + need));
        len += (size_t)snprintf(map + len, cap - len, "%d\t%s\n", k, names.names[k]);
        if (!o->quiet) fprintf(stderr, "%s: class %d: %s\n", icn_progname, k, names.names[k]);
    }
    if (o->classes_out && icn_write_file_atomic(o->classes_out, map, len, err, sizeof err)) icn_die(1, "%s", err);
    free(map);
    icn_class_names_free(&names);
}

static void load(const opts *o, icn_batch *b) {
    char err[ICN_ERRLEN];
    const char *name = o->dataset ? o->dataset : "mnist";
    int rc = 0;
    if (strcmp(name, "images") == 0) load_folder(o, b);
    else if (strcmp(name, "stream") == 0) rc = icn_batch_read_all(o->source, b, err, sizeof err);
    else if (strcmp(name, "npy") == 0) rc = icn_npy_load(o->images, o->labels, o->nchw, b, err, sizeof err);
    else rc = o->images ? icn_idx_load(o->images, o->labels, b, err, sizeof err)
                        : icn_dataset_load(name, o->dir, o->split, b, err, sizeof err);
    if (rc) icn_die(1, "%s", err);
    if (b->n == 0) icn_die(1, "%s: no images", o->source ? o->source : name);
    if (icn_split_apply(b, o->split, err, sizeof err)) icn_die(1, "%s", err);
    if (icn_batch_select(b, o->classes, o->limit, o->seed, err, sizeof err)) icn_die(1, "%s", err);
    if (b->n == 0) icn_die(1, "no images left after --classes %s", o->classes_s);
    if (o->relabel) icn_batch_relabel(b, o->classes);
}

int main(int argc, char **argv) {
    icn_set_progname(argv[0]);
    opts o;
    parse_args(argc, argv, &o);
    if (o.fetch) run_fetch(o.fetch);
    if (o.info) {
        print_info(o.info);
        return 0;
    }
    icn_batch b;
    load(&o, &b);
    char err[ICN_ERRLEN];
    if (o.npy_out ? icn_npy_write_batch(o.npy_out, &b, err, sizeof err)
                  : icn_batch_write_file(o.out, &b, o.chunk, err, sizeof err))
        icn_die(1, "%s", err);
    char what[160];
    int k = snprintf(what, sizeof what, "split %s", icn_split_name(o.split));
    if (o.classes_s) k += snprintf(what + k, sizeof what - (size_t)k, ", classes %.64s", o.classes_s);
    if (o.limit) snprintf(what + k, sizeof what - (size_t)k, ", seed %llu", (unsigned long long)o.seed);
    if (!o.quiet)
        fprintf(stderr, "%s: wrote %d images %dx%dx%d (%s) to %s%s\n", icn_progname, b.n, b.h, b.w, b.c, what,
                o.npy_out ? o.npy_out : o.out, o.npy_out ? "-*.npy" : "");
    icn_batch_free(&b);
    return 0;
}
