/* faultfs.h - shared declarations of faultfs, the fault-injecting FUSE
 * passthrough that StreamBus fault tests put a server's data directory on.
 *
 * The program is split by concern:
 *   faultfs.c        main(): arguments, backing directory, fuse_main()
 *   faultfs_ops.c    the FUSE operations (passthrough + fault hooks), the
 *                    file-system lock, powerloss/revive
 *   faultfs_fault.c  the commanded fault state (freeze, delay, EIO, ENOSPC,
 *                    dead) and the counters reported by `status`
 *   faultfs_data.c   undo log of file data not yet fsynced
 *   faultfs_ns.c     undo journal of directory entries not yet dir-fsynced
 *   faultfs_ctl.c    the control socket (one command per line)
 * The durability model is described in faultfs_ops.c and README.md.
 *
 * Errors follow the StreamBus convention: 0 or a positive count on success,
 * -errno on failure.
 */
#ifndef SB_TESTS_FAULTFS_H
#define SB_TESTS_FAULTFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* ---- limits: everything that grows has one ---- */

/* Old bytes held for unsynced overwrites, all files together. Tests write
 * far less; past it writes fail with EIO (and a log line) rather than
 * letting the model silently lose the ability to undo. */
#define FF_UNDO_BYTES_MAX (1ull << 30)
/* Files with unsynced data at once; each holds one open fd to its inode. */
#define FF_UNDO_FILES_MAX 4096u
/* Saved ranges per file (overlapping saves are never stored twice). */
#define FF_UNDO_SEGS_MAX 65536u
/* Namespace operations (create, mkdir, unlink, rmdir, rename) not yet made
 * durable by a directory fsync. Past it such operations fail with EIO. */
#define FF_NS_OPS_MAX 65536u
/* Control socket: concurrent clients and bytes per command line. */
#define FF_CTL_CLIENTS_MAX 16u
#define FF_CTL_LINE_MAX 256u
/* Longest per-operation delay that `delay_ms` accepts. */
#define FF_DELAY_MS_MAX 60000
/* Hidden folder (in the backing root) holding unlinked files until the
 * unlink is durable; invisible through the mount. */
#define FF_TRASH ".faultfs-trash"

/* One logfmt line per event on stderr. */
#define FF_LOG(level, fmt, ...) fprintf(stderr, "faultfs level=" level " " fmt "\n", ##__VA_ARGS__)

/* ---- faultfs_fault.c: commanded faults and counters ----
 * All functions are thread-safe (one internal mutex). */

struct ff_stats {
	uint64_t writes;
	uint64_t bytes_written;
	uint64_t fsyncs;        /* successful file and directory syncs */
	uint64_t fsyncs_failed; /* syncs failed (injected or real) */
	uint64_t failed_ops;    /* operations failed by an injected fault */
};

/* Blocks while frozen, then sleeps the commanded delay. Called first by every
 * FUSE operation, outside the file-system lock. */
void ff_fault_gate(void);
bool ff_fault_dead(void);
void ff_fault_set_dead(bool dead);
/* -EIO while fsync_eio is on, else 0. */
int ff_fault_sync_check(void);
/* Takes bytes from the ENOSPC budget: 0, or -ENOSPC (nothing taken) when the
 * budget is set and smaller than bytes. */
int ff_fault_charge(uint64_t bytes);
/* Remaining ENOSPC budget in bytes, or -1 when off. */
int64_t ff_fault_budget(void);
void ff_fault_note_write(size_t bytes);
void ff_fault_note_sync(bool ok);
void ff_fault_note_failed(void);
void ff_fault_set_fsync_eio(bool on);
void ff_fault_set_budget(int64_t bytes); /* -1 = off */
void ff_fault_set_delay_ms(int ms);
void ff_fault_set_frozen(bool frozen);
/* All faults off: fsync_eio, ENOSPC, delay, freeze. Leaves `dead` alone. */
void ff_fault_reset(void);
/* Writes the `status` fields (no "ok " prefix) into buf. */
void ff_fault_format(char *buf, size_t len);

/* ---- faultfs_data.c: undo log of unsynced file data ----
 * Called with the file-system lock held. fd is an open backing fd of the file
 * (any access mode); records are keyed by inode. */

int ff_data_before_write(int fd, off_t off, size_t len);
int ff_data_before_truncate(int fd, off_t new_size);
/* The file behind fd was fsynced: forget its record. */
void ff_data_synced(int fd);
/* Puts back every saved range and size; returns the number of files. */
int ff_data_revert_all(void);
/* Forgets every record (the current contents become durable). */
void ff_data_clear(void);
uint64_t ff_data_bytes(void);
size_t ff_data_files(void);

/* ---- faultfs_ns.c: undo journal of directory entries ----
 * Called with the file-system lock held. Paths are relative to the backing
 * root ("a/b", or "." for the root). */

int ff_ns_init(int rootfd);
/* 0 when one more operation fits in the journal, else -EIO. */
int ff_ns_room(void);
/* Records a new file or directory made by the caller. */
void ff_ns_created(const char *rel, bool is_dir);
/* Do the operation on the backing directory and record it. */
int ff_ns_unlink(const char *rel);
int ff_ns_rmdir(const char *rel);
int ff_ns_rename(const char *from, const char *to, unsigned int flags);
/* Directory (dev, ino) was fsynced. */
void ff_ns_dir_synced(dev_t dev, ino_t ino);
/* Undoes every operation not yet durable; returns how many. */
int ff_ns_revert_all(void);
/* Makes every operation durable (empties the trash). */
void ff_ns_clear(void);
size_t ff_ns_ops(void);

/* ---- faultfs_ops.c ---- */

extern const struct fuse_operations ff_ops;
int ff_ops_init(int rootfd);
void ff_ops_fini(void);
/* powerloss: undo all that is not durable, then enter the dead state.
 * Writes a short summary into msg. */
void ff_powerloss(char *msg, size_t len);
/* Clears the dead state and all undo state. */
void ff_revive(void);
/* Undo bytes, files and journal operations, under the lock. */
void ff_undo_counts(uint64_t *bytes, size_t *files, size_t *ops);

/* ---- faultfs_ctl.c ---- */

/* Binds and listens on path (a stale socket file there is replaced). */
int ff_ctl_listen(const char *path);
/* Starts / stops the thread serving the socket. */
int ff_ctl_start(void);
void ff_ctl_stop(void);

#endif /* SB_TESTS_FAULTFS_H */
