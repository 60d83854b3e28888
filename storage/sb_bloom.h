/* sb_bloom.h - a blocked bloom filter: one 64-bit hash per key, every probe
 * of a key inside one 64-byte (512-bit) block, so a query touches one cache
 * line (Putze, Sanders, Singler: "Cache-, Hash- and Space-Efficient Bloom
 * Filters", 2007).
 *
 * Hash. sb_bloom_hash() is StreamBus's own 64-bit hash of a byte string
 * (below and in docs/SSTABLE.md). It is part of the on-disk format: changing
 * it makes every stored filter answer "no" for present keys, so it is pinned
 * by a test and its version is stored in each filter (hash_version).
 *
 * Probes. From one h = sb_bloom_hash(key):
 *   block  = ((h >> 32) * block_count) >> 32      (a multiply-shift range map)
 *   x_0    = low 32 bits of h
 *   bit_i  = x_i >> 23                             (the top 9 bits: 0 .. 511)
 *   x_i+1  = x_i * 0x9E3779B9 mod 2^32             (i = 0 .. k-1)
 * Bit b of a block is bit (b & 7) of its byte (b >> 3). The probes are a
 * multiplicative rehash of the low half (as RocksDB's FastLocalBloom does),
 * not double hashing h1 + i*h2: double hashing was measured first and read
 * its bits from the top of an arithmetic progression, whose probes correlate
 * between keys; it gave 1.05 % at 10 bits per key and 0.135 % at 16 against
 * the 0.96 % and 0.086 % below. The rehash measures within 2 % of the formula
 * (test_sstable.c checks 4, 6, 8, 10 and 16 bits per key).
 *
 * Size and false-positive rate. With n keys and bits_per_key = b, the filter
 * has block_count = ceil(n * b / 512) blocks (capped at SB_BLOOM_BYTES_MAX)
 * and k = round(b * ln 2) probes, clamped to [1, SB_BLOOM_PROBES_MAX]. A
 * classic bloom filter of m = n * b bits has
 *     FPR = (1 - e^(-k n / m))^k = (1 - e^(-k / b))^k,
 * minimised at k = b ln 2: 0.82 % at b = 10. In a blocked filter the number
 * of keys landing in one block is Poisson with mean lambda = 512 / b, and a
 * block holding j keys answers a false "yes" with the classic rate of a
 * 512-bit filter holding j keys, so
 *     FPR = sum_j  e^(-lambda) lambda^j / j!  *  (1 - (1 - 1/512)^(k j))^k,
 * which is 0.96 % at b = 10 (k = 7), 2.3 % at b = 8, 0.41 % at b = 12:
 * slightly above the classic filter (crowded blocks cost more than empty
 * ones save) for one cache miss per query instead of k.
 *
 * Threads: a builder belongs to one thread. A view is read-only: any number
 * of threads may query one view concurrently.
 */
#ifndef SB_STORAGE_BLOOM_H
#define SB_STORAGE_BLOOM_H

#include <stddef.h>
#include <stdint.h>

#include "sb_error.h"

/* Bits of one block: one 64-byte cache line. */
#define SB_BLOOM_BLOCK_BYTES 64u
#define SB_BLOOM_BLOCK_BITS (8u * SB_BLOOM_BLOCK_BYTES)
/* Bytes before the blocks in a serialized filter (see sb_bloom_builder_write). */
#define SB_BLOOM_HEADER_BYTES 8u
/* Hash version stored in each filter: 1 = sb_bloom_hash as documented here. */
#define SB_BLOOM_HASH_VERSION 1u

/* bits_per_key bounds. Below 1 a filter is useless; past 32 (k = 22, a
 * predicted FPR of ~0.002 %) more bits buy almost nothing in a 512-bit block
 * and only cost memory. 10 gives ~1 %. */
#define SB_BLOOM_BITS_PER_KEY_MIN 1u
#define SB_BLOOM_BITS_PER_KEY_MAX 32u
#define SB_BLOOM_BITS_PER_KEY_DEFAULT 10u
/* Probes per key: round(32 ln 2) = 22, so 24 is never reached by a builder;
 * a reader rejects anything larger (a corrupt header). */
#define SB_BLOOM_PROBES_MAX 24u
/* Largest filter: it is held in memory for as long as its table is open.
 * 64 MiB holds ~53 M keys at 10 bits per key; past that the filter stays at
 * this size and its FPR grows. */
#define SB_BLOOM_BYTES_MAX (64u << 20)
/* Keys one builder accepts. The builder keeps 8 bytes per key until it is
 * written (the size depends on the final count), so this bounds that memory
 * at 512 MiB. */
#define SB_BLOOM_KEYS_MAX (1u << 26)

/* The filter's 64-bit hash of key[0..len) (key may be NULL when len is 0).
 * Pure function; any thread. */
uint64_t sb_bloom_hash(const void *key, size_t len);

/* Collects the hashes of a set of keys and writes the filter. Caller-owned
 * storage: sb_bloom_builder_init / sb_bloom_builder_fini. Fields private. */
struct sb_bloom_builder {
	uint64_t *hashes;
	size_t n, cap;
	uint32_t bits_per_key;
};

/* Prepares b for keys at bits_per_key (0 means the default). Returns 0 or
 * SB_EINVAL if bits_per_key is outside [MIN, MAX] (b is then still safe to
 * fini). Allocates nothing. */
int sb_bloom_builder_init(struct sb_bloom_builder *b, uint32_t bits_per_key) SB_MUST_CHECK;
/* Frees the builder's memory; b may be re-initialised afterwards. */
void sb_bloom_builder_fini(struct sb_bloom_builder *b);

/* Adds one key (or its sb_bloom_hash). Adding a key twice is harmless.
 * Returns 0, -ENOMEM (nothing added), or SB_ETOOBIG past SB_BLOOM_KEYS_MAX. */
int sb_bloom_builder_add(struct sb_bloom_builder *b, const void *key, size_t len) SB_MUST_CHECK;
int sb_bloom_builder_add_hash(struct sb_bloom_builder *b, uint64_t h) SB_MUST_CHECK;

/* Keys added so far. */
size_t sb_bloom_builder_count(const struct sb_bloom_builder *b);

/* Bytes sb_bloom_builder_write will produce for the keys added so far:
 * SB_BLOOM_HEADER_BYTES + 64 * block_count, at most SB_BLOOM_HEADER_BYTES +
 * SB_BLOOM_BYTES_MAX. */
size_t sb_bloom_builder_bytes(const struct sb_bloom_builder *b);

/* Writes the serialized filter into out, which must have
 * sb_bloom_builder_bytes(b) bytes of room. Layout (little-endian):
 *   0 u32 block_count    (0 for a filter of no keys: it answers "no")
 *   4 u8  k              (probes per key)
 *   5 u8  hash_version   (SB_BLOOM_HASH_VERSION)
 *   6 u16 reserved, 0
 *   8     block_count blocks of 64 bytes
 * The builder is unchanged and may take more keys. */
void sb_bloom_builder_write(const struct sb_bloom_builder *b, uint8_t *out);

/* A read-only view of a serialized filter; points into the caller's bytes,
 * which must outlive it. Nothing is copied. */
struct sb_bloom_view {
	const uint8_t *blocks;
	uint32_t block_count;
	uint32_t k;
};

/* Checks data[0..len) and sets v up over it. Returns 0, or SB_ECORRUPT if
 * the header does not match the length, k is 0 or > SB_BLOOM_PROBES_MAX, the
 * hash version is unknown, the reserved field is not 0, or the filter is
 * larger than SB_BLOOM_BYTES_MAX. Never reads outside data[0..len). */
int sb_bloom_view_init(struct sb_bloom_view *v, const void *data, size_t len) SB_MUST_CHECK;

/* 1 if the key may be in the set, 0 if it certainly is not. */
int sb_bloom_may_contain(const struct sb_bloom_view *v, const void *key, size_t len);
int sb_bloom_may_contain_hash(const struct sb_bloom_view *v, uint64_t h);

/* Bits in the filter (512 * block_count). */
uint64_t sb_bloom_bits(const struct sb_bloom_view *v);

#endif
