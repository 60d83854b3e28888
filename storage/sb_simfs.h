/* sb_simfs.h - an in-memory simulated file system behind struct sb_vfs, for
 * crash and fault tests (RELIABILITY.md tier A; LevelDB/RocksDB's
 * fault-injection file systems do the same).
 *
 * Model:
 *   - Every file has a durable image (its bytes as of its last successful
 *     datasync) and a volatile image (what reads see now). Writes and
 *     truncates since the last datasync are kept as an ordered list of
 *     pending changes.
 *   - Every directory has a durable entry table (as of its last sync_dir) and
 *     a volatile one. Creates, renames and unlinks since then are pending.
 *   - sb_simfs_crash() models power loss: each file keeps its durable image
 *     plus, per the crash mode, some of its pending changes (a random prefix
 *     of them, the last one possibly torn at any byte, and possibly a zero or
 *     garbage extension past the durable size); each directory keeps its
 *     durable table plus a random prefix of its pending entry changes. All
 *     fds are invalidated. Randomness comes from the seed: the same seed and
 *     the same operation sequence give the same image.
 *   - Faults: the k-th operation (counting every vfs call) can fail with a
 *     chosen -errno, a write can be cut short, and power_off_at(k) makes
 *     every operation from k on fail with -EIO (the machine has lost power;
 *     nothing more reaches the disk) until sb_simfs_crash().
 *   - Mutants (deliberately broken disks that the tests must catch):
 *     SKIP_SYNC makes datasync return 0 without making anything durable;
 *     SKIP_DIR_SYNC does the same for sync_dir; IGNORE_SYNC_ERROR turns an
 *     injected datasync error into success (the data stays non-durable).
 *
 * Thread-safe: one mutex guards the whole file system.
 */
#ifndef SB_STORAGE_SIMFS_H
#define SB_STORAGE_SIMFS_H

#include <stdint.h>

#include "sb_error.h"

struct sb_vfs;
struct sb_simfs;

enum sb_simfs_crash_mode {
	SB_SIMFS_CRASH_DROP_UNSYNCED = 0, /* keep exactly the durable images */
	SB_SIMFS_CRASH_RANDOM = 1,        /* random prefixes, torn last write, junk tails */
	SB_SIMFS_CRASH_KEEP_ALL = 2,      /* process crash: everything written survives */
};

enum sb_simfs_mutant {
	SB_SIMFS_MUTANT_NONE = 0,
	SB_SIMFS_MUTANT_SKIP_SYNC = 1,
	SB_SIMFS_MUTANT_SKIP_DIR_SYNC = 2,
	SB_SIMFS_MUTANT_IGNORE_SYNC_ERROR = 4,
};

/* Which operations a fault applies to. */
enum sb_simfs_opmask {
	SB_SIMFS_OP_WRITE = 1,    /* pwrite */
	SB_SIMFS_OP_SYNC = 2,     /* datasync */
	SB_SIMFS_OP_DIRSYNC = 4,  /* sync_dir */
	SB_SIMFS_OP_META = 8,     /* open/create, rename, unlink, mkdir, rmdir, truncate */
	SB_SIMFS_OP_READ = 16,    /* pread, stat, list_dir, fsize */
	SB_SIMFS_OP_ANY = 31,
};

/* Creates an empty file system with the root directory "/". Paths are
 * absolute or relative to "/". Returns 0 or -ENOMEM. */
int sb_simfs_new(uint64_t seed, struct sb_simfs **out) SB_MUST_CHECK;
void sb_simfs_free(struct sb_simfs *fs);
/* The vfs view; valid until sb_simfs_free. */
struct sb_vfs *sb_simfs_vfs(struct sb_simfs *fs);

/* Operations performed so far (every vfs call counts, failed ones too). */
uint64_t sb_simfs_op_count(struct sb_simfs *fs);

/* The next operation matching mask, counting from now, whose ordinal among
 * matching operations is nth (0 = the very next one), fails with err (e.g.
 * -EIO, -ENOSPC) and has no effect. One pending fault at a time; a new call
 * replaces it. */
void sb_simfs_fail_nth(struct sb_simfs *fs, unsigned mask, uint64_t nth, int err);
/* The nth pwrite from now writes at most max_bytes (a short write). */
void sb_simfs_short_write_nth(struct sb_simfs *fs, uint64_t nth, uint32_t max_bytes);
/* From the op with absolute ordinal k (see op_count) on, every operation
 * fails with -EIO and changes nothing. */
void sb_simfs_power_off_at(struct sb_simfs *fs, uint64_t k);
/* Fail every write that would make the total bytes stored (sum of volatile
 * file sizes) exceed limit with -ENOSPC; 0 = no limit. */
void sb_simfs_set_capacity(struct sb_simfs *fs, uint64_t limit);
void sb_simfs_set_mutants(struct sb_simfs *fs, unsigned mutants);
/* Clears pending faults and power-off. */
void sb_simfs_clear_faults(struct sb_simfs *fs);

/* Power loss (or process crash, with KEEP_ALL) as described above. Every
 * open fd becomes invalid (-EBADF); faults are cleared; the result becomes
 * both the durable and the volatile image. */
void sb_simfs_crash(struct sb_simfs *fs, enum sb_simfs_crash_mode mode);

/* Test helpers: the volatile bytes of a file (malloc'd, caller frees), and
 * overwriting bytes in place durably (to simulate bit rot). */
int sb_simfs_read_whole(struct sb_simfs *fs, const char *path, uint8_t **out, uint64_t *len) SB_MUST_CHECK;
int sb_simfs_corrupt(struct sb_simfs *fs, const char *path, uint64_t off, const void *bytes,
		     uint64_t len) SB_MUST_CHECK;

#endif
