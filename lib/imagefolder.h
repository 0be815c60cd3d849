/* imagefolder.h: a folder of PNG images, one subfolder per class (the layout of torchvision's
 * ImageFolder):  DIR/cat/001.png, DIR/cat/002.png, DIR/dog/a.png ...
 * Classes are numbered 0..k-1 in byte-wise sorted order of the subfolder names, and the files
 * of a class are read in byte-wise sorted order too, so a folder always gives the same batch.
 * Names starting with '.' are skipped. Everything else is checked and refused with one line
 * naming it: an entry of DIR that is not a folder, an entry of a class folder that is not a
 * regular file, a file without the PNG signature or that libpng cannot decode, a size or colour
 * (grey against RGB) that differs from the first image's, an empty class. Alpha is dropped
 * (composited on black); palette images become grey or RGB. Pixels become x/127.5 - 1. */
#ifndef ICN_IMAGEFOLDER_H
#define ICN_IMAGEFOLDER_H
#include "batch.h"

#define ICN_IMAGEFOLDER_MAX_CLASSES 65536
#define ICN_IMAGEFOLDER_MAX_FILE ((size_t)64 << 20) /* bytes of one PNG file */

typedef struct {
    int n;        /* classes */
    char **names; /* names[k]: the subfolder of class k */
} icn_class_names;

/* Load DIR into out (labels = class numbers) and its class names into names (free both). */
int icn_imagefolder_load(const char *dir, icn_batch *out, icn_class_names *names, char *err, size_t errlen);
void icn_class_names_free(icn_class_names *names);

#endif
