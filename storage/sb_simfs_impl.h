/* sb_simfs_impl.h - private to sb_simfs.c (paths, fds, faults, the vfs ops)
 * and sb_simfs_crash.c (byte images, entry tables, crash, garbage
 * collection). Nothing outside those two files includes it.
 *
 * Every function declared here expects fs->mu to be held by the caller.
 * Internal allocations go through sb_simfs__alloc(), which aborts on
 * out-of-memory: simfs is a test tool, and a half-applied operation would
 * make every later result of a test meaningless.
 */
#ifndef SB_STORAGE_SIMFS_IMPL_H
#define SB_STORAGE_SIMFS_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "sb_simfs.h"
#include "sb_vfs.h"

/* One path component, as in NAME_MAX. */
#define SB_SIMFS__NAME_BYTES_MAX 255
/* A whole path, as in PATH_MAX. */
#define SB_SIMFS__PATH_BYTES_MAX 4096
/* One file: everything lives in memory twice (volatile + durable) plus the
 * pending writes, so keep a test from eating the machine. */
#define SB_SIMFS__FILE_BYTES_MAX (1ull << 30)
/* Open fds at once (-EMFILE past it). */
#define SB_SIMFS__FDS_MAX 1024
/* fd numbers start here (0..2 are stdio in a real process); each crash moves
 * the range so that a stale fd from before the crash never names a new file. */
#define SB_SIMFS__FD_BASE 3
#define SB_SIMFS__FD_GENERATIONS 1000
/* Longest zero or garbage extension a RANDOM crash adds to a file. */
#define SB_SIMFS__JUNK_BYTES_MAX 8192

struct sb_simfs__inode;

/* A growable byte image; bytes past len are unspecified (zeroed on growth). */
struct sb_simfs__bytes {
	uint8_t *data;
	uint64_t len;
	uint64_t cap;
};

enum sb_simfs__change_kind {
	SB_SIMFS__CHANGE_WRITE = 1,    /* data[0..len) at off */
	SB_SIMFS__CHANGE_TRUNCATE = 2, /* new length = len */
};

/* One pending file change since the last successful datasync. */
struct sb_simfs__change {
	int kind;
	uint64_t off;
	uint64_t len;
	uint8_t *data; /* owned; NULL for truncates */
};

struct sb_simfs__dirent {
	char *name; /* owned */
	struct sb_simfs__inode *ino;
};

/* A directory's entries, sorted by name (binary search; sorted listings). */
struct sb_simfs__table {
	struct sb_simfs__dirent *ents;
	size_t n;
	size_t cap;
};

enum sb_simfs__dirop_kind {
	SB_SIMFS__DIROP_SET = 1,    /* name -> ino (create, link, rename target) */
	SB_SIMFS__DIROP_DEL = 2,    /* remove name (unlink, rmdir, rename source) */
	SB_SIMFS__DIROP_RENAME = 3, /* name -> to inside one directory, atomically */
};

/* One pending entry change since the last successful sync_dir. */
struct sb_simfs__dirop {
	int kind;
	char *name; /* owned */
	char *to;   /* owned; RENAME only */
	struct sb_simfs__inode *ino;
};

struct sb_simfs__inode {
	uint64_t id;
	int is_dir;
	uint64_t mark; /* == fs->mark_epoch while a reachability walk has seen it */
	/* Files: volatile = durable + changes applied in order. */
	struct sb_simfs__bytes vol;
	struct sb_simfs__bytes dur;
	struct sb_simfs__change *changes;
	size_t nchanges;
	size_t changes_cap;
	/* Directories: vtab = dtab + dirops applied in order. */
	struct sb_simfs__table vtab;
	struct sb_simfs__table dtab;
	struct sb_simfs__dirop *dirops;
	size_t ndirops;
	size_t dirops_cap;
	/* Every inode, in creation order (crash draws randomness in this order). */
	struct sb_simfs__inode *next;
};

struct sb_simfs__fd {
	struct sb_simfs__inode *ino; /* NULL: slot free */
	int flags;
};

struct sb_simfs {
	struct sb_vfs vfs;
	pthread_mutex_t mu;
	uint64_t rng;
	uint64_t next_id;
	uint64_t mark_epoch;
	struct sb_simfs__inode *root;
	struct sb_simfs__inode *head;
	struct sb_simfs__inode *tail;
	struct sb_simfs__fd fds[SB_SIMFS__FDS_MAX];
	int fd_base; /* fd numbers of this generation: fd_base + slot */
	uint64_t crashes;
	uint64_t op_count;
	/* fail_nth */
	int fault_armed;
	unsigned fault_mask;
	uint64_t fault_left;
	int fault_err;
	/* short_write_nth */
	int short_armed;
	uint64_t short_left;
	uint32_t short_max;
	/* power_off_at */
	int power_armed;
	uint64_t power_at;
	uint64_t capacity;
	unsigned mutants;
};

void *sb_simfs__alloc(void *p, size_t n);
char *sb_simfs__strdup(const char *s);
/* Returns arr (elements of elem bytes, capacity *cap) grown to hold at least
 * need elements; updates *cap. */
void *sb_simfs__grow(void *arr, size_t *cap, size_t need, size_t elem);
/* Deterministic PRNG (splitmix64) seeded by sb_simfs_new. */
uint64_t sb_simfs__rand(struct sb_simfs *fs);

/* Byte images. */
void sb_simfs__bytes_write(struct sb_simfs__bytes *b, uint64_t off, const void *data, uint64_t len);
void sb_simfs__bytes_resize(struct sb_simfs__bytes *b, uint64_t len);
void sb_simfs__bytes_copy(struct sb_simfs__bytes *dst, const struct sb_simfs__bytes *src);
void sb_simfs__bytes_free(struct sb_simfs__bytes *b);

/* File changes: applies to the volatile image and records as pending. */
void sb_simfs__file_write(struct sb_simfs__inode *f, uint64_t off, const void *data, uint64_t len);
void sb_simfs__file_truncate(struct sb_simfs__inode *f, uint64_t len);
/* datasync: durable := volatile, no pending changes. */
void sb_simfs__file_sync(struct sb_simfs__inode *f);

/* Entry tables. */
struct sb_simfs__inode *sb_simfs__table_get(const struct sb_simfs__table *t, const char *name);
/* Directory changes: applies to the volatile table and records as pending. */
void sb_simfs__dir_change(struct sb_simfs__inode *dir, int kind, const char *name, const char *to,
                          struct sb_simfs__inode *ino);
/* sync_dir: durable table := volatile table, no pending changes. */
void sb_simfs__dir_sync(struct sb_simfs__inode *dir);

/* Inodes: created empty and appended to the all-inodes list. */
struct sb_simfs__inode *sb_simfs__inode_new(struct sb_simfs *fs, int is_dir);
/* Frees every inode (sb_simfs_free). */
void sb_simfs__free_all(struct sb_simfs *fs);
/* Starts a reachability walk: after it, inode->mark == fs->mark_epoch means
 * "seen". sb_simfs__mark visits ino and, for directories, the entries of
 * their volatile table (and, with everything, also of the durable table and
 * the pending changes) recursively. */
void sb_simfs__mark_begin(struct sb_simfs *fs);
void sb_simfs__mark(struct sb_simfs *fs, struct sb_simfs__inode *ino, int everything);
/* Frees every inode that no table, pending change or open fd refers to. */
void sb_simfs__gc(struct sb_simfs *fs);

#endif
