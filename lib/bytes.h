/* bytes.h: the byte helpers of every icn file and frame format (msgpack frames, the pool store,
 * model files, .npy): little-endian float32, uint32 and uint64 (icn's formats are little-endian on every
 * host), CRC-32 (zlib's, the ISO-HDLC/PNG polynomial) and UUIDs. */
#ifndef ICN_BYTES_H
#define ICN_BYTES_H
#include <stddef.h>
#include <stdint.h>

void icn_le_store_f32(uint8_t *dst, const float *src, size_t n);
void icn_le_load_f32(float *dst, const uint8_t *src, size_t n);
void icn_le_store_u32(uint8_t *dst, uint32_t v);
uint32_t icn_le_load_u32(const uint8_t *src);
void icn_le_store_u64(uint8_t *dst, uint64_t v);
uint64_t icn_le_load_u64(const uint8_t *src);
/* Start with crc = 0; chain by passing the last result; any length. */
uint32_t icn_crc32(uint32_t crc, const void *p, size_t n);

/* UUIDs (a pool store's identity): 16 bytes, written 8-4-4-4-12 in lower-case hex. */
#define ICN_UUID_STRLEN 37                       /* 36 characters and the NUL */
void icn_uuid_format(const uint8_t uuid[16], char out[ICN_UUID_STRLEN]);
int icn_uuid_parse(const char *s, uint8_t uuid[16]); /* 0, or -1 when not 8-4-4-4-12 hex */
int icn_uuid_random(uint8_t uuid[16]); /* RFC 4122 version 4 from getrandom: 0, or -1 with errno */

#endif
