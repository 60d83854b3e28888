/* sb_kvstore.h - a partition's key store: the latest record of every key,
 * kept beside the partition's log (docs/SSTABLE.md "The key store").
 *
 * What it holds. For every keyed record the log can serve, the newest
 * version of its key: offset, timestamp, value, headers. A record with the
 * tombstone attribute (SB_RECORD_ATTR_TOMBSTONE) deletes its key. Records
 * without a key are not indexed.
 *
 * How. The log is the write-ahead log: the store reads the log's readable
 * prefix in order (sb_log_read) and puts each keyed record into the active
 * memtable (sb_memtable.h). A memtable past memtable_bytes is frozen and
 * flushed to an SSTable (sb_sstable.h) named by the log offsets it covers,
 * <max:20 digits>-<min:20 digits>.sst in <log dir>/kv/. So that a restart
 * never replays much of the log, the memtable is also flushed once
 * replay_bytes_max bytes of log were read since the last flush, even if it
 * is small (an empty table just records the covered range), and on close.
 * On open, the memtable is rebuilt by replaying the log from the offset
 * after the newest table's covered range.
 *
 * Lookups go active memtable -> frozen memtable -> tables newest first, and
 * stop at the first version found (a tombstone means "not found"): every
 * newer structure holds strictly higher offsets. Before looking, a lookup
 * applies whatever the log made readable before it began, so a record
 * readable before a lookup starts is visible to it.
 *
 * Compaction (size-tiered over consecutive tables, newest first): a run of
 * the newest tables in which each older table is at most twice the bytes of
 * the newer ones together is merged into one when it has
 * SB_KV_COMPACT_MIN_TABLES tables (or SB_KV_TABLES_MAX tables exist). Runs
 * are consecutive in age so that newest-first lookups stay right; a merge
 * that includes the oldest table drops tombstones older than
 * delete_retention_ms. The merge writes a new table durably, installs it,
 * then deletes its inputs; on open, a table whose range lies inside another's
 * is a leftover input of an interrupted merge and is deleted. Merges read and
 * write at most compaction_rate_bytes per second. Appends never wait for any
 * of this: the store only reads the log.
 *
 * Damage. A table failing its checks (at open or on a lookup) is reported
 * (event=kv_table_corrupt) and the store is rebuilt from the log: every
 * table is deleted and the log replayed from its start. A log cut below what
 * the store indexed (an unclean promotion) also rebuilds it. Records that
 * retention deleted before a rebuild are gone from the store too.
 *
 * Thread-safety: lookups from any thread, concurrently with sb_kvstore_step
 * (one thread at a time: the log manager's key-store worker).
 */
#ifndef SB_STORAGE_KVSTORE_H
#define SB_STORAGE_KVSTORE_H

#include <stdint.h>

#include "sb_error.h"

struct sb_vfs;
struct sb_log;
struct sb_kvstore;

#define SB_KV_COMPACT_MIN_TABLES 4
#define SB_KV_TABLES_MAX 16
#define SB_KV_DIR "kv"

struct sb_kvstore_config {
	uint64_t memtable_bytes;       /* flush past this; [SB_MEMTABLE_BYTES_MIN, SB_MEMTABLE_BYTES_MAX / 2] */
	uint64_t replay_bytes_max;     /* log bytes read between flushes at most (bounds restart replay) */
	int64_t delete_retention_ms;   /* tombstones older than this go in a bottom-most merge */
	uint64_t compaction_rate_bytes; /* merge I/O bytes per second; 0 = unlimited */
	int64_t cleaner_interval_ms;   /* the log cleaner's round on compacted topics (sb_logmgr); 0 = off */
};

void sb_kvstore_config_default(struct sb_kvstore_config *cfg);

/* Opens the store of log in <log_dir>/kv (creating it), removes leftovers
 * of interrupted flushes and merges, opens the tables (a damaged one makes
 * the store rebuild, see above) and replays the log's readable prefix after
 * them. name is for log lines. 0, SB_EINVAL (config), -errno, -ENOMEM. */
int sb_kvstore_open(struct sb_vfs *vfs, struct sb_log *log, const char *log_dir, const char *name,
		    const struct sb_kvstore_config *cfg, struct sb_kvstore **out) SB_MUST_CHECK;

/* Flushes the memtable (best effort: the log replays what is lost) and
 * frees everything. No lookup or step may be running. */
void sb_kvstore_close(struct sb_kvstore *kv);

/* Background work, from one thread: applies what the log made readable,
 * flushes a full memtable, runs one merge if one is due. Returns 1 if it
 * did I/O worth calling again soon, 0 if idle, or a negative error (logged;
 * the store stays usable: lookups go on with what it holds). */
int sb_kvstore_step(struct sb_kvstore *kv, int64_t now_ms);

/* The newest version of a key, copied out. */
struct sb_kv_result {
	int found;            /* 0: no record has the key (or its newest is a tombstone) */
	int64_t offset;
	int64_t timestamp_ms;
	uint8_t *value;       /* malloc'd (NULL if value_len is 0) */
	uint32_t value_len;
	uint8_t *headers;     /* the record's encoded headers (sb_record_header_next), malloc'd */
	uint32_t headers_len;
};
void sb_kv_result_free(struct sb_kv_result *r);

/* Looks key up after applying everything the log made readable before the
 * call (see above). 0 (r filled, found or not), SB_EINVAL (empty or over
 * SB_KV_KEY_MAX), SB_ECORRUPT (a damaged table: the store rebuilds; retry),
 * -errno, -ENOMEM. */
int sb_kvstore_get(struct sb_kvstore *kv, const uint8_t *key, uint32_t key_len, struct sb_kv_result *r) SB_MUST_CHECK;

/* The log cleaner's question about a record of this partition (compacted
 * topics): 0 to drop it, because the store holds a newer version of its
 * key, or because it is the key's tombstone and older than
 * delete_retention_ms; else 1 (also for keys the store does not know and
 * records it has not applied yet: in doubt, keep). No apply. */
struct sb_record_view;
int sb_kvstore_keep(struct sb_kvstore *kv, const struct sb_record_view *rec, int64_t now_ms);

struct sb_kvstore_stats {
	int64_t applied_end;     /* log offset up to which records are indexed */
	uint64_t memtable_bytes; /* active + frozen */
	uint64_t memtable_entries;
	uint32_t tables;
	uint64_t table_bytes;
	uint64_t flushes, compactions, rebuilds;
	uint64_t compaction_bytes_read, compaction_bytes_written;
};
void sb_kvstore_stats(struct sb_kvstore *kv, struct sb_kvstore_stats *out);

#endif
