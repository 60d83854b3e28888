/* sb_mutant.h - deliberately broken behaviour for the fault-injection suite.
 *
 * A durability test that never fails proves nothing, so tests/fault runs
 * each scenario once more against a server with one of these bugs switched
 * on and expects its checker to report lost acknowledged writes
 * (../shared/RELIABILITY.md). They exist only in builds configured with
 * -DSB_MUTANTS=ON (the test build); elsewhere sb_mutant() is the constant 0
 * and the compiler removes every branch on it.
 *
 * STREAMBUS_MUTANT=name[,name...] selects them at start-up. They act on the
 * pwrite/fdatasync engine (--io sync); io_uring's fsyncs bypass them.
 */
#ifndef SB_COMMON_MUTANT_H
#define SB_COMMON_MUTANT_H

enum sb_mutant_kind {
	SB_MUTANT_SKIP_FSYNC = 1,          /* "skip_fsync": fdatasync/fsync of files does nothing */
	SB_MUTANT_SKIP_DIR_FSYNC = 2,      /* "skip_dir_fsync": directory fsyncs do nothing */
	SB_MUTANT_IGNORE_FSYNC_ERROR = 4,  /* "ignore_fsync_error": a failed fdatasync reports success */
	SB_MUTANT_FOLLOWER_EARLY_ACK = 8,  /* "follower_early_ack": a follower acks before its append is durable */
};

#ifdef SB_MUTANTS
extern unsigned sb_mutants;
/* Reads STREAMBUS_MUTANT; returns the set, and logs nothing (the caller does). */
unsigned sb_mutant_init(void);
static inline int sb_mutant(unsigned kind) { return (sb_mutants & kind) != 0; }
#else
static inline unsigned sb_mutant_init(void) { return 0; }
static inline int sb_mutant(unsigned kind) { (void)kind; return 0; }
#endif

#endif
