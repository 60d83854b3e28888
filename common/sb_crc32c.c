/* sb_crc32c.c - CRC32C (Castagnoli) with run-time choice of implementation.
 *
 * Three implementations, all computing the RFC 3720 CRC (reflected polynomial
 * 0x82F63B78, initial value ~0, final xor ~0):
 *   - portable: slicing-by-8 tables, eight bytes per step.
 *   - sse4.2 (x86-64): the crc32 instruction on three interleaved streams.
 *     The instruction has a latency of about three cycles and a throughput of
 *     one per cycle, so one stream leaves the unit two thirds idle. Each round
 *     runs the crc of three adjacent blocks independently (the second and
 *     third from a zero state), then joins them: the CRC register is linear
 *     over GF(2), so crc(A || B) = shift_|B|(crc(A)) ^ crc_from_zero(B), where
 *     shift_n advances a state over n zero bytes, i.e. multiplies it by
 *     x^(8n) mod P. shift_n is applied with a 4 x 256 lookup table per block
 *     length, built once from x^(8n) mod P.
 *   - armv8 (arm64): the CRC32C instructions, one stream.
 *
 * Everything mutable (tables, chosen function) is written once, inside
 * pthread_once, and only read afterwards.
 */
#include "sb_crc32c.h"

#include "sb_endian.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#if defined(__aarch64__)
#include <arm_acle.h>
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7) /* Linux arm64 uapi value */
#endif
#endif

#define CRC32C_POLY 0x82F63B78u /* reflected 0x1EDC6F41 */

/* Block lengths of the three-stream rounds: the long one for bulk data, the
 * short one so that mid-sized buffers (768 B .. 24 KiB) still run three
 * streams. Multiples of 8 so that every stream consumes whole words. */
#define CRC32C_LONG_BYTES 8192
#define CRC32C_SHORT_BYTES 256

typedef uint32_t crc32c_fn(uint32_t crc, const uint8_t *p, size_t len);

static struct {
	/* slice8[k][b]: the CRC register after byte b followed by k zero bytes. */
	uint32_t slice8[8][256];
#if defined(__x86_64__)
	/* shift_*[k][b]: (b << 8k) advanced over LONG / SHORT zero bytes. */
	uint32_t shift_long[4][256];
	uint32_t shift_short[4][256];
#endif
	crc32c_fn *extend; /* chosen implementation: raw register in and out */
	const char *name;
} crc32c;

static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

/* ---- portable: slicing-by-8 ---- */

static uint32_t crc32c_portable(uint32_t crc, const uint8_t *p, size_t len)
{
	const uint32_t(*t)[256] = (const uint32_t(*)[256])crc32c.slice8;

	while (len > 0 && ((uintptr_t)p & 7) != 0) {
		crc = t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
		len--;
	}
	while (len >= 8) {
		uint64_t w = sb_load64(p) ^ crc;
		crc = t[7][w & 0xff] ^ t[6][(w >> 8) & 0xff] ^ t[5][(w >> 16) & 0xff] ^
		      t[4][(w >> 24) & 0xff] ^ t[3][(w >> 32) & 0xff] ^ t[2][(w >> 40) & 0xff] ^
		      t[1][(w >> 48) & 0xff] ^ t[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len > 0) {
		crc = t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
		len--;
	}
	return crc;
}

static void crc32c_init_slice8(void)
{
	for (uint32_t b = 0; b < 256; b++) {
		uint32_t c = b;
		for (int i = 0; i < 8; i++)
			c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		crc32c.slice8[0][b] = c;
	}
	for (int k = 1; k < 8; k++) {
		for (int b = 0; b < 256; b++) {
			uint32_t c = crc32c.slice8[k - 1][b];
			crc32c.slice8[k][b] = (c >> 8) ^ crc32c.slice8[0][c & 0xff];
		}
	}
}

/* ---- x86-64: SSE4.2, three streams ---- */

#if defined(__x86_64__)

/* Product of a and b modulo P in the reflected representation, where bit 31
 * is the coefficient of x^0 and bit 0 that of x^31. */
static uint32_t gf2_multmod(uint32_t a, uint32_t b)
{
	uint32_t product = 0;

	for (uint32_t m = 1u << 31; m != 0; m >>= 1) {
		if (a & m)
			product ^= b;
		b = (b & 1) ? (b >> 1) ^ CRC32C_POLY : b >> 1; /* b *= x */
	}
	return product;
}

/* x^(8 * len) mod P, by square-and-multiply. */
static uint32_t gf2_xpow8n(uint64_t len)
{
	uint64_t e = 8 * len;
	uint32_t result = 1u << 31; /* x^0 */
	uint32_t square = 1u << 30; /* x^1, then x^2, x^4, ... */

	while (e != 0) {
		if (e & 1)
			result = gf2_multmod(result, square);
		square = gf2_multmod(square, square);
		e >>= 1;
	}
	return result;
}

static void crc32c_init_shift(uint32_t table[4][256], size_t len)
{
	uint32_t xpow = gf2_xpow8n(len);

	for (int k = 0; k < 4; k++)
		for (uint32_t b = 0; b < 256; b++)
			table[k][b] = gf2_multmod(xpow, b << (8 * k));
}

/* Advances a CRC register over the zero bytes the table was built for. */
static inline uint32_t crc32c_shift(const uint32_t table[4][256], uint32_t crc)
{
	return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff] ^ table[2][(crc >> 16) & 0xff] ^
	       table[3][crc >> 24];
}

static inline uint64_t load64_native(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8); /* x86 is little-endian, as the crc32 instruction expects */
	return v;
}

/* Consumes rounds of three blocks of `block` bytes from *pp while at least
 * that much remains; returns the register, advances *pp and lowers *lenp. */
__attribute__((target("sse4.2"))) static inline uint64_t
crc32c_sse42_rounds(uint64_t crc, const uint8_t **pp, size_t *lenp, size_t block,
                    const uint32_t shift[4][256])
{
	const uint8_t *p = *pp;
	size_t len = *lenp;

	while (len >= 3 * block) {
		uint64_t crc1 = 0, crc2 = 0;
		const uint8_t *end = p + block;
		do {
			crc = _mm_crc32_u64(crc, load64_native(p));
			crc1 = _mm_crc32_u64(crc1, load64_native(p + block));
			crc2 = _mm_crc32_u64(crc2, load64_native(p + 2 * block));
			p += 8;
		} while (p < end);
		crc = crc32c_shift(shift, (uint32_t)crc) ^ crc1;
		crc = crc32c_shift(shift, (uint32_t)crc) ^ crc2;
		p += 2 * block;
		len -= 3 * block;
	}
	*pp = p;
	*lenp = len;
	return crc;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc32, const uint8_t *p,
                                                               size_t len)
{
	uint64_t crc = crc32;

	while (len > 0 && ((uintptr_t)p & 7) != 0) {
		crc = _mm_crc32_u8((uint32_t)crc, *p++);
		len--;
	}
	crc = crc32c_sse42_rounds(crc, &p, &len, CRC32C_LONG_BYTES, crc32c.shift_long);
	crc = crc32c_sse42_rounds(crc, &p, &len, CRC32C_SHORT_BYTES, crc32c.shift_short);
	while (len >= 8) {
		crc = _mm_crc32_u64(crc, load64_native(p));
		p += 8;
		len -= 8;
	}
	while (len > 0) {
		crc = _mm_crc32_u8((uint32_t)crc, *p++);
		len--;
	}
	return (uint32_t)crc;
}

#endif /* __x86_64__ */

/* ---- arm64: ARMv8 CRC32 instructions ---- */

#if defined(__aarch64__)

__attribute__((target("+crc"))) static uint32_t crc32c_armv8(uint32_t crc, const uint8_t *p,
                                                             size_t len)
{
	while (len > 0 && ((uintptr_t)p & 7) != 0) {
		crc = __crc32cb(crc, *p++);
		len--;
	}
	while (len >= 8) {
		crc = __crc32cd(crc, sb_load64(p));
		p += 8;
		len -= 8;
	}
	while (len > 0) {
		crc = __crc32cb(crc, *p++);
		len--;
	}
	return crc;
}

#endif /* __aarch64__ */

/* ---- one-time set-up and the public entry points ---- */

static void crc32c_init(void)
{
	crc32c_init_slice8();
	crc32c.extend = crc32c_portable;
	crc32c.name = "portable";
#if defined(__x86_64__)
	crc32c_init_shift(crc32c.shift_long, CRC32C_LONG_BYTES);
	crc32c_init_shift(crc32c.shift_short, CRC32C_SHORT_BYTES);
	__builtin_cpu_init();
	if (__builtin_cpu_supports("sse4.2")) {
		crc32c.extend = crc32c_sse42;
		crc32c.name = "sse4.2";
	}
#elif defined(__aarch64__)
	if (getauxval(AT_HWCAP) & HWCAP_CRC32) {
		crc32c.extend = crc32c_armv8;
		crc32c.name = "armv8";
	}
#endif
}

static inline void crc32c_ready(void)
{
	/* Only fails for invalid arguments; the once object is static. */
	(void)pthread_once(&crc32c_once, crc32c_init);
}

uint32_t sb_crc32c_extend(uint32_t crc, const void *buf, size_t len)
{
	if (len == 0)
		return crc; /* also keeps NULL + 0 out of the pointer arithmetic */
	crc32c_ready();
	return ~crc32c.extend(~crc, buf, len);
}

uint32_t sb_crc32c(const void *buf, size_t len)
{
	return sb_crc32c_extend(0, buf, len);
}

uint32_t sb_crc32c_extend_portable(uint32_t crc, const void *buf, size_t len)
{
	if (len == 0)
		return crc;
	crc32c_ready();
	return ~crc32c_portable(~crc, buf, len);
}

const char *sb_crc32c_impl(void)
{
	crc32c_ready();
	return crc32c.name;
}
