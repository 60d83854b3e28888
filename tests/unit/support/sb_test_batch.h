/* sb_test_batch.h - deterministic test records: record i of a test carries
 * key "k<i>" and a value whose bytes are a function of i, so any record read
 * back can be checked byte for byte without keeping copies. */
#ifndef SB_TESTS_SUPPORT_TEST_BATCH_H
#define SB_TESTS_SUPPORT_TEST_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "sb_batch.h"

/* Builds one batch of n records with ids first..first+n-1, values of
 * value_len bytes, timestamps ts0 + id. Returns a malloc'd copy. */
uint8_t *sbt_batch(uint64_t first, uint32_t n, uint32_t value_len, int64_t ts0, size_t *len);

/* Checks every record of the batches in data[0..len): record at offset o
 * must be record id o (offsets == ids in these tests) with value_len bytes.
 * Returns the number of records checked, or -1 (with a message on stderr). */
int64_t sbt_check_batches(const uint8_t *data, size_t len, uint32_t value_len, int64_t ts0,
			  int64_t expect_first);

#endif
