/* sb_crc32c.h - CRC32C (Castagnoli, iSCSI polynomial 0x1EDC6F41, reflected
 * 0x82F63B78), as RFC 3720 defines it: initial value ~0, final xor ~0.
 *
 * The implementation is chosen once at run time: SSE4.2 crc32 instructions
 * with three interleaved streams on x86-64, the ARMv8 CRC32 instructions on
 * arm64, a portable slicing-by-8 table otherwise. All give identical results.
 */
#ifndef SB_COMMON_CRC32C_H
#define SB_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC32C of buf[0..len). Thread-safe; no set-up call needed (the first call
 * picks the implementation). buf may be NULL when len is 0. */
uint32_t sb_crc32c(const void *buf, size_t len);

/* Continues a CRC: sb_crc32c_extend(sb_crc32c(a, n), b, m) equals the CRC32C
 * of a followed by b. Start from 0 for an empty prefix. */
uint32_t sb_crc32c_extend(uint32_t crc, const void *buf, size_t len);

/* The portable implementation, for tests that compare it to the chosen one. */
uint32_t sb_crc32c_extend_portable(uint32_t crc, const void *buf, size_t len);

/* Name of the implementation in use: "sse4.2", "armv8", or "portable". */
const char *sb_crc32c_impl(void);

#endif
