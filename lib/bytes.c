/* bytes.c: little-endian loads and stores, CRC-32, UUIDs (bytes.h). */
#include "bytes.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <zlib.h>

void icn_le_store_u32(uint8_t *d, uint32_t v) {
    d[0] = (uint8_t)v; d[1] = (uint8_t)(v >> 8); d[2] = (uint8_t)(v >> 16); d[3] = (uint8_t)(v >> 24);
}

uint32_t icn_le_load_u32(const uint8_t *s) {
    return (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24;
}

void icn_le_store_u64(uint8_t *d, uint64_t v) {
    icn_le_store_u32(d, (uint32_t)v);
    icn_le_store_u32(d + 4, (uint32_t)(v >> 32));
}

uint64_t icn_le_load_u64(const uint8_t *s) { return (uint64_t)icn_le_load_u32(s) | (uint64_t)icn_le_load_u32(s + 4) << 32; }

uint32_t icn_crc32(uint32_t crc, const void *p, size_t n) {
    uLong c = crc;
    const Bytef *b = p;
    while (n) { /* zlib's crc32 takes a uInt length: feed it in slices */
        uInt m = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, b, m);
        b += m, n -= m;
    }
    return (uint32_t)c;
}

void icn_le_store_f32(uint8_t *dst, const float *src, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(dst, src, n * 4);
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        icn_le_store_u32(dst + 4 * i, u);
    }
#endif
}

void icn_le_load_f32(float *dst, const uint8_t *src, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(dst, src, n * 4);
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t u = icn_le_load_u32(src + 4 * i);
        memcpy(&dst[i], &u, 4);
    }
#endif
}

/* ---------------------------------------------------------------- UUIDs */

void icn_uuid_format(const uint8_t u[16], char out[ICN_UUID_STRLEN]) {
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *o++ = '-';
        *o++ = hex[u[i] >> 4], *o++ = hex[u[i] & 15];
    }
    *o = 0;
}

int icn_uuid_parse(const char *s, uint8_t u[16]) {
    if (strlen(s) != 36) return -1;
    for (int i = 0, j = 0; i < 16; i++) {
        if (j == 8 || j == 13 || j == 18 || j == 23) {
            if (s[j] != '-') return -1;
            j++;
        }
        int v = 0;
        for (int d = 0; d < 2; d++, j++) {
            char ch = s[j];
            int x = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
            if (x < 0) return -1;
            v = v * 16 + x;
        }
        u[i] = (uint8_t)v;
    }
    return 0;
}

int icn_uuid_random(uint8_t u[16]) {
    size_t got = 0;
    while (got < 16) {
        ssize_t k = getrandom(u + got, 16 - got, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) return errno = EIO, -1;
        got += (size_t)k;
    }
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* RFC 4122 version 4, variant 1 */
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    return 0;
}
