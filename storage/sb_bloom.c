/* sb_bloom.c - the blocked bloom filter of sb_bloom.h. */
#include "sb_bloom.h"

#include "sb_endian.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Multipliers of the hash: odd 64-bit constants with well-spread bits. K1 is
 * 2^64 / golden ratio (Knuth's multiplicative hashing); K2 is a large prime
 * used as a multiplier by several published hashes; SEED is arbitrary. */
#define HASH_K1 0x9E3779B97F4A7C15ull
#define HASH_K2 0xC2B2AE3D27D4EB4Full
#define HASH_SEED 0x5354424C4F4F4D31ull /* "SBLOOM1" */

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
	return (x << r) | (x >> (64u - r));
}

/* The 64-bit finalizer of Austin Appleby's MurmurHash3: every input bit
 * affects every output bit with probability close to 1/2. */
static inline uint64_t fmix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xFF51AFD7ED558CCDull;
	x ^= x >> 33;
	x *= 0xC4CEB9FE1A85EC53ull;
	x ^= x >> 33;
	return x;
}

/* One step: absorb a 64-bit word. Each of the three operations is a
 * bijection of h for a fixed word (xor, rotation, multiplication by an odd
 * number), and w * K2 is a bijection of w. */
static inline uint64_t absorb(uint64_t h, uint64_t w)
{
	return rotl64(h ^ (w * HASH_K2), 29) * HASH_K1;
}

uint64_t sb_bloom_hash(const void *key, size_t len)
{
	const uint8_t *p = key;
	uint64_t h = HASH_SEED ^ ((uint64_t)len * HASH_K1);
	while (len >= 8) {
		h = absorb(h, sb_load64(p));
		p += 8;
		len -= 8;
	}
	if (len > 0) {
		uint64_t w = 0; /* the 1..7 tail bytes, little-endian, zero-padded */
		for (size_t i = 0; i < len; i++)
			w |= (uint64_t)p[i] << (8 * i);
		h = absorb(h, w);
	}
	return fmix64(h);
}

/* ---- geometry shared by builder and view ---- */

static uint32_t probes_for(uint32_t bits_per_key)
{
	/* round(b * ln 2), in integers: ln 2 ~= 0.693147 */
	uint32_t k = (bits_per_key * 693147u + 500000u) / 1000000u;
	if (k < 1)
		k = 1;
	if (k > SB_BLOOM_PROBES_MAX)
		k = SB_BLOOM_PROBES_MAX;
	return k;
}

static uint32_t blocks_for(size_t n, uint32_t bits_per_key)
{
	uint64_t bits = (uint64_t)n * bits_per_key;
	uint64_t blocks = (bits + SB_BLOOM_BLOCK_BITS - 1) / SB_BLOOM_BLOCK_BITS;
	if (blocks > SB_BLOOM_BYTES_MAX / SB_BLOOM_BLOCK_BYTES)
		blocks = SB_BLOOM_BYTES_MAX / SB_BLOOM_BLOCK_BYTES;
	return (uint32_t)blocks;
}

/* The probes of a key: x_0 = low 32 bits of h, bit_j = x_j >> 23 (0..511),
 * x_(j+1) = x_j * PROBE_MUL mod 2^32. */
#define PROBE_MUL 0x9E3779B9u /* 2^32 / golden ratio, odd */

static inline uint32_t block_of(uint64_t h, uint32_t block_count)
{
	return (uint32_t)(((h >> 32) * (uint64_t)block_count) >> 32);
}

/* ---- builder ---- */

int sb_bloom_builder_init(struct sb_bloom_builder *b, uint32_t bits_per_key)
{
	memset(b, 0, sizeof *b);
	if (bits_per_key == 0)
		bits_per_key = SB_BLOOM_BITS_PER_KEY_DEFAULT;
	if (bits_per_key < SB_BLOOM_BITS_PER_KEY_MIN || bits_per_key > SB_BLOOM_BITS_PER_KEY_MAX)
		return SB_EINVAL;
	b->bits_per_key = bits_per_key;
	return 0;
}

void sb_bloom_builder_fini(struct sb_bloom_builder *b)
{
	free(b->hashes);
	memset(b, 0, sizeof *b);
}

int sb_bloom_builder_add_hash(struct sb_bloom_builder *b, uint64_t h)
{
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 1024;
		if (b->n >= SB_BLOOM_KEYS_MAX)
			return SB_ETOOBIG;
		if (cap > SB_BLOOM_KEYS_MAX)
			cap = SB_BLOOM_KEYS_MAX;
		uint64_t *p = realloc(b->hashes, cap * sizeof *p);
		if (!p)
			return -ENOMEM;
		b->hashes = p;
		b->cap = cap;
	}
	b->hashes[b->n++] = h;
	return 0;
}

int sb_bloom_builder_add(struct sb_bloom_builder *b, const void *key, size_t len)
{
	return sb_bloom_builder_add_hash(b, sb_bloom_hash(key, len));
}

size_t sb_bloom_builder_count(const struct sb_bloom_builder *b)
{
	return b->n;
}

size_t sb_bloom_builder_bytes(const struct sb_bloom_builder *b)
{
	return SB_BLOOM_HEADER_BYTES +
	       (size_t)blocks_for(b->n, b->bits_per_key) * SB_BLOOM_BLOCK_BYTES;
}

void sb_bloom_builder_write(const struct sb_bloom_builder *b, uint8_t *out)
{
	uint32_t nblocks = blocks_for(b->n, b->bits_per_key);
	uint32_t k = probes_for(b->bits_per_key);
	uint8_t *blocks = out + SB_BLOOM_HEADER_BYTES;

	sb_store32(out, nblocks);
	out[4] = (uint8_t)k;
	out[5] = (uint8_t)SB_BLOOM_HASH_VERSION;
	sb_store16(out + 6, 0);
	memset(blocks, 0, (size_t)nblocks * SB_BLOOM_BLOCK_BYTES);
	if (nblocks == 0)
		return;
	for (size_t i = 0; i < b->n; i++) {
		uint64_t h = b->hashes[i];
		uint8_t *blk = blocks + (size_t)block_of(h, nblocks) * SB_BLOOM_BLOCK_BYTES;
		uint32_t x = (uint32_t)h;
		for (uint32_t j = 0; j < k; j++, x *= PROBE_MUL) {
			uint32_t bit = x >> 23;
			blk[bit >> 3] |= (uint8_t)(1u << (bit & 7));
		}
	}
}

/* ---- view ---- */

int sb_bloom_view_init(struct sb_bloom_view *v, const void *data, size_t len)
{
	const uint8_t *p = data;
	memset(v, 0, sizeof *v);
	if (len < SB_BLOOM_HEADER_BYTES || len > SB_BLOOM_HEADER_BYTES + (size_t)SB_BLOOM_BYTES_MAX)
		return SB_ECORRUPT;
	uint32_t nblocks = sb_load32(p);
	uint32_t k = p[4];
	if (p[5] != SB_BLOOM_HASH_VERSION || sb_load16(p + 6) != 0 || k < 1 ||
	    k > SB_BLOOM_PROBES_MAX ||
	    len - SB_BLOOM_HEADER_BYTES != (uint64_t)nblocks * SB_BLOOM_BLOCK_BYTES)
		return SB_ECORRUPT;
	v->blocks = p + SB_BLOOM_HEADER_BYTES;
	v->block_count = nblocks;
	v->k = k;
	return 0;
}

int sb_bloom_may_contain_hash(const struct sb_bloom_view *v, uint64_t h)
{
	if (v->block_count == 0)
		return 0;
	const uint8_t *blk = v->blocks + (size_t)block_of(h, v->block_count) * SB_BLOOM_BLOCK_BYTES;
	uint32_t x = (uint32_t)h;
	for (uint32_t j = 0; j < v->k; j++, x *= PROBE_MUL) {
		uint32_t bit = x >> 23;
		if (!(blk[bit >> 3] & (1u << (bit & 7))))
			return 0;
	}
	return 1;
}

int sb_bloom_may_contain(const struct sb_bloom_view *v, const void *key, size_t len)
{
	return sb_bloom_may_contain_hash(v, sb_bloom_hash(key, len));
}

uint64_t sb_bloom_bits(const struct sb_bloom_view *v)
{
	return (uint64_t)v->block_count * SB_BLOOM_BLOCK_BITS;
}
