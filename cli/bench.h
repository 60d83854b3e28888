/* bench.h - streambus bench: shared state of the benchmark's threads.
 * bench.c parses options, creates the topic, starts the workers, prints the
 * progress line and the report; bench_produce.c is a producer stream (one
 * thread, one channel, one completion queue each); bench_consume.c is the
 * subscriber of --consume and --e2e. */
#ifndef SB_CLI_BENCH_H
#define SB_CLI_BENCH_H

#include "client.h"
#include "hist.h"

#include "streambus/v1/streambus.pb-c.h"

#include <pthread.h>
#include <stdint.h>

enum bench_mode { BENCH_THROUGHPUT, BENCH_RATE, BENCH_CONSUME, BENCH_E2E };

struct bench_cfg {
	enum bench_mode mode;
	char server[256];
	double timeout_s;
	const char *topic;
	const char *fsync; /* for creating the topic; NULL: the server's default */
	int64_t records;
	uint32_t record_size;
	uint32_t batch;
	uint32_t window;
	uint32_t streams;
	int32_t partitions; /* of a topic created by the bench */
	int32_t partition;  /* --consume / --e2e: the partition read and written */
	Streambus__V1__Acks acks;
	const char *acks_name;
	double rate; /* records/s over all streams; 0: as fast as the window allows */
};

/* What every worker shares; counters are updated with __atomic builtins. */
struct bench_shared {
	const struct bench_cfg *cfg;
	int64_t t0_ns; /* CLOCK_MONOTONIC start of the run (for the progress line) */
	int64_t sent, acked, failed, consumed;
	int stop;       /* set by main (Ctrl-C or a failed worker): finish early */
	int running;    /* workers not yet done */
	int subscribed; /* the subscriber's stream is open (or it gave up) */
};

struct bench_worker {
	pthread_t thread;
	struct bench_shared *sh;
	uint32_t index;
	int32_t partition;
	int64_t records; /* to produce, or (subscriber) to read before stopping; 0: to the end */
	int64_t start_offset;      /* subscriber: -1 = earliest */
	struct sbc_hist *hist;     /* ack latency, or produce-to-consume latency */
	int64_t first_ns, last_ns; /* first send / last ack (or first / last record read) */
	int64_t records_done, bytes_done, failed_requests;
	struct sbc_status err; /* err.code != OK: the worker failed */
	char err_what[128];
};

/* Thread bodies; arg is a struct bench_worker. */
void *bench_producer(void *arg);
void *bench_subscriber(void *arg);

/* CLOCK_MONOTONIC in ns. */
int64_t bench_now_ns(void);

#endif
