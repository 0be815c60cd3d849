/* imagefolder.c: one subfolder of PNG files per class into a batch (imagefolder.h). */
#include "imagefolder.h"

#include "data.h"
#include "datasets.h"
#include "fileio.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_SIDE 4096
#define MAX_IMAGES 10000000

static int by_bytes(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }
static int not_hidden(const struct dirent *d) { return d->d_name[0] != '.'; }

/* The entries of path not starting with '.', sorted byte-wise (alphasort would follow the locale). */
static int list_dir(const char *path, struct dirent ***out, char *err, size_t errlen) {
    int n = scandir(path, out, not_hidden, by_bytes);
    if (n < 0) return icn_errf(err, errlen, "%s: %s", path, strerror(errno));
    return n;
}

static void free_list(struct dirent **list, int n) {
    for (int i = 0; i < n; i++) free(list[i]);
    free(list);
}

/* State of one load: the shape fixed by the first image, pixels appended as they come. */
typedef struct {
    icn_batch *b;
    int32_t cap;
    const char *first; /* path of the first image, for messages */
    char first_buf[512];
} folder;

static int add_png(folder *f, const char *path, int32_t label, char *err, size_t errlen) {
    uint8_t *data; /* icn_read_file refuses anything but a regular file, unread */
    size_t len;
    if (icn_read_file(path, ICN_IMAGEFOLDER_MAX_FILE, &data, &len, err, errlen)) return -1;
    if (len < 8 || png_sig_cmp(data, 0, 8) != 0) {
        free(data);
        return icn_errf(err, errlen, "%s: not a PNG file (no PNG signature)", path);
    }
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&im, data, len)) {
        icn_errf(err, errlen, "%s: bad PNG: %s", path, im.message);
        free(data);
        return -1;
    }
    int c = im.format & PNG_FORMAT_FLAG_COLOR ? 3 : 1;
    int32_t h = (int32_t)im.height, w = (int32_t)im.width;
    int rc = 0;
    if (im.height < 1 || im.height > MAX_SIDE || im.width < 1 || im.width > MAX_SIDE)
        rc = icn_errf(err, errlen, "%s: %ux%u pixels (expected sides of 1 to %d)", path, im.width, im.height, MAX_SIDE);
    else if (f->b->n > 0 && (h != f->b->h || w != f->b->w))
        rc = icn_errf(err, errlen, "%s: %dx%d pixels, but %s is %dx%d (every image must have one size)", path, w, h,
                      f->first, f->b->w, f->b->h);
    else if (f->b->n > 0 && c != f->b->c)
        rc = icn_errf(err, errlen, "%s: %s, but %s is %s (convert them to one)", path, c == 3 ? "RGB" : "grey",
                      f->first, f->b->c == 3 ? "RGB" : "grey");
    else if (f->b->n >= MAX_IMAGES)
        rc = icn_errf(err, errlen, "%s: more than %d images", path, MAX_IMAGES);
    if (rc) {
        png_image_free(&im);
        free(data);
        return rc;
    }
    im.format = c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    size_t dim = (size_t)h * (size_t)w * (size_t)c;
    uint8_t *px = xmalloc(dim);
    int ok = png_image_finish_read(&im, NULL, px, 0, NULL);
    free(data);
    if (!ok) {
        icn_errf(err, errlen, "%s: bad PNG: %s", path, im.message);
        png_image_free(&im);
        free(px);
        return -1;
    }
    icn_batch *b = f->b;
    if (b->n == 0) {
        b->h = h, b->w = w, b->c = c;
        snprintf(f->first_buf, sizeof f->first_buf, "%s", path);
        f->first = f->first_buf;
    }
    if (b->n == f->cap) { /* grows with the images actually decoded */
        f->cap = f->cap ? f->cap * 2 : 64;
        b->x = xrealloc(b->x, (size_t)f->cap * dim * sizeof(float));
        b->y = xrealloc(b->y, (size_t)f->cap * sizeof(int32_t));
    }
    icn_pixels_from_u8(b->x + (size_t)b->n * dim, px, h, w, c, 1, (size_t)w * (size_t)c, (size_t)c);
    b->y[b->n++] = label;
    free(px);
    return 0;
}

void icn_class_names_free(icn_class_names *names) {
    for (int i = 0; i < names->n; i++) free(names->names[i]);
    free(names->names);
    names->names = NULL;
    names->n = 0;
}

int icn_imagefolder_load(const char *dir, icn_batch *out, icn_class_names *names, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    memset(names, 0, sizeof *names);
    struct stat st;
    if (stat(dir, &st) != 0) return icn_errf(err, errlen, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return icn_errf(err, errlen, "%s: not a directory", dir);
    struct dirent **classes;
    int k = list_dir(dir, &classes, err, errlen);
    if (k < 0) return -1;
    int rc = 0;
    if (k == 0) rc = icn_errf(err, errlen, "%s: no class folders (expected DIR/CLASS/IMAGE.png)", dir);
    if (k > ICN_IMAGEFOLDER_MAX_CLASSES)
        rc = icn_errf(err, errlen, "%s: %d class folders (at most %d)", dir, k, ICN_IMAGEFOLDER_MAX_CLASSES);
    folder f = {.b = out};
    names->names = xcalloc((size_t)(k ? k : 1), sizeof(char *));
    for (int i = 0; rc == 0 && i < k; i++) {
        char *cdir = icn_path_join(dir, classes[i]->d_name);
        names->names[names->n++] = xstrdup(classes[i]->d_name);
        if (stat(cdir, &st) != 0) rc = icn_errf(err, errlen, "%s: %s", cdir, strerror(errno));
        else if (!S_ISDIR(st.st_mode))
            rc = icn_errf(err, errlen, "%s: not a directory (%s must hold one folder per class)", cdir, dir);
        struct dirent **files = NULL;
        int m = rc ? 0 : list_dir(cdir, &files, err, errlen);
        if (m < 0) rc = -1;
        else if (rc == 0 && m == 0) rc = icn_errf(err, errlen, "%s: no images in class %d", cdir, i);
        for (int j = 0; rc == 0 && j < m; j++) {
            char *path = icn_path_join(cdir, files[j]->d_name);
            rc = add_png(&f, path, i, err, errlen);
            free(path);
        }
        if (files) free_list(files, m > 0 ? m : 0);
        free(cdir);
    }
    free_list(classes, k);
    if (rc) {
        icn_batch_free(out);
        icn_class_names_free(names);
        return -1;
    }
    return 0;
}
