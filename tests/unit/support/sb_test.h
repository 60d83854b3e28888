/* sb_test.h - small helpers shared by the cmocka unit tests. */
#ifndef SB_TESTS_SUPPORT_TEST_H
#define SB_TESTS_SUPPORT_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

struct sb_aio;
struct sb_vfs;

#define SB_TEST_SKIP 77

/* Creates a fresh empty directory for one test under $SB_TEST_TMP (or /tmp)
 * and returns its path, malloc'd: the caller frees it. */
char *sbt_tmpdir(const char *name);

/* The I/O backend the suite runs on: SB_TEST_IO=uring|sync (default sync). */
const char *sbt_io_name(void);

/* Opens the engine for the POSIX vfs per SB_TEST_IO. If io_uring is asked
 * for but unavailable, prints why and exits with 77 (skipped). */
struct sb_aio *sbt_open_aio(void);

/* Deterministic xorshift PRNG for tests. */
uint64_t sbt_rand(uint64_t *state);

#endif
