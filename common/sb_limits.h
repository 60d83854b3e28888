/* sb_limits.h - every hard bound in StreamBus, in one place, with the reason
 * for each (SQLite's sqliteLimit.h habit). Runtime settings are validated
 * against these at start-up; nothing that grows is left without a bound. */
#ifndef SB_COMMON_LIMITS_H
#define SB_COMMON_LIMITS_H

/* Topic names: Kafka's rule, so tools that mirror topics between systems can
 * keep names unchanged; 249 leaves room for ".deleted-" prefixes in a 255-byte
 * file name. */
#define SB_TOPIC_NAME_MAX 249
/* Partitions per topic: each partition holds open fds and an in-memory index. */
#define SB_PARTITIONS_MAX 1024
/* Topics per node: bounds directory scans at start-up and admin listings. */
#define SB_TOPICS_MAX 10000
/* Topics in one ListTopics response (all of them: bounded by SB_TOPICS_MAX). */
#define SB_TOPICS_MAX_LISTED SB_TOPICS_MAX

/* One record batch on disk. Must be >= the largest gRPC message we accept so
 * that any valid produce request fits in one batch; 64 MiB also bounds the
 * read buffer a single oversized batch can force on a reader. */
#define SB_BATCH_BYTES_MAX (64u << 20)
/* Records in one batch: bounds decoder work per batch and offset deltas. */
#define SB_BATCH_RECORDS_MAX 1000000u
/* Headers on one record. */
#define SB_RECORD_HEADERS_MAX 1024u
/* Consumer groups: the name, the metadata of one commit, and the partitions
 * of the internal offsets topic (fixed once it exists). */
#define SB_GROUP_NAME_MAX 255u
#define SB_OFFSET_METADATA_MAX 4096u
#define SB_OFFSETS_TOPIC "__consumer_offsets"
#define SB_OFFSETS_TOPIC_PARTITIONS 4
/* Keys in one LookupRequest. */
#define SB_LOOKUP_KEYS_MAX 1000u

/* Segment size bounds. Index entries store 32-bit file positions, and a
 * segment never exceeds 2 GiB so they always fit. The 4 KiB minimum exists
 * for tests that roll often. */
#define SB_SEGMENT_BYTES_MIN 4096ull
#define SB_SEGMENT_BYTES_MAX (2ull << 30)
#define SB_SEGMENT_BYTES_DEFAULT (1ull << 30)

/* One sparse offset/time index entry every this many log bytes. 4 KiB keeps a
 * lookup's forward scan to one page and a 1 GiB segment's index at 2 MiB. */
#define SB_INDEX_INTERVAL_BYTES_DEFAULT 4096u
/* Entries per segment index; 2 GiB / 4 KiB = 512 Ki, with head-room for
 * smaller intervals. */
#define SB_INDEX_ENTRIES_MAX (4u << 20)

/* Bytes accepted by one partition but not yet acknowledged (copied, queued,
 * being written or awaiting fdatasync). Past this, appends get SB_EBUSY. */
#define SB_LOG_INFLIGHT_BYTES_DEFAULT (32u << 20)
#define SB_LOG_INFLIGHT_BYTES_MIN (1u << 16)
#define SB_LOG_INFLIGHT_BYTES_MAX (1u << 30)
/* Largest single write submitted to the kernel: big enough to reach the
 * disk's sequential bandwidth, small enough that one partition cannot keep the
 * I/O loop busy for long. */
#define SB_WRITE_CHUNK_BYTES_MAX (4u << 20)

/* Requests in flight in one I/O engine (io_uring SQ depth, fallback queue). */
#define SB_AIO_DEPTH 256u
/* Worker threads of the pwrite/fdatasync fallback engine. */
#define SB_AIO_SYNC_THREADS 4u

/* Recovery reads the active segment in chunks of this size. */
#define SB_RECOVERY_CHUNK_BYTES (4u << 20)

/* Config files (topic.conf) are small key=value text. */
#define SB_CONFIG_FILE_BYTES_MAX (64u << 10)

/* Paths we build: data dir + topic + partition + file name. */
#define SB_PATH_MAX 4096

/* ---- replication ---- */

/* Nodes in one cluster: the leader fans every partition out to each
 * follower, so the copies (and the leader's send work) grow with this. */
#define SB_REPL_NODES_MAX 16
/* Bytes in one FollowResponse, and of batches from one partition in it (a
 * single larger batch goes alone): big enough for disk speed, far below the
 * follower's receive limit. */
#define SB_REPL_MESSAGE_BYTES 4194304u
#define SB_REPL_PARTITION_BYTES 1048576u

/* ---- key store ---- */

/* Longest key of a keyed record. 64 KiB keeps a key well inside one
 * SSTable block and bounds a comparison. */
#define SB_KV_KEY_MAX (64u << 10)
/* Hard cap on one memtable's arena. A table is flushed whole into one
 * SSTable and replayed from the log after a crash; 1 GiB bounds both, and the
 * memory one partition can pin. Callers pass their own, smaller cap. */
#define SB_MEMTABLE_BYTES_MAX (1ull << 30)
/* Smallest cap accepted: four blocks, room for the first index and data
 * blocks; also catches a cap given in the wrong unit. */
#define SB_MEMTABLE_BYTES_MIN (1ull << 20)

#endif
