/* sb_endian.h - little-endian loads and stores for on-disk formats. Every
 * multi-byte integer StreamBus writes to disk is little-endian; these compile
 * to plain moves on little-endian hosts. Pointers need no alignment. */
#ifndef SB_COMMON_ENDIAN_H
#define SB_COMMON_ENDIAN_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t sb_load16(const void *p) { uint16_t v; memcpy(&v, p, 2); return le16toh(v); }
static inline uint32_t sb_load32(const void *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static inline uint64_t sb_load64(const void *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }
static inline void sb_store16(void *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }
static inline void sb_store32(void *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static inline void sb_store64(void *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }

#endif
