/* sb_error.h - the one error convention of StreamBus.
 *
 * Every function that can fail returns int: 0 (or a non-negative count) on
 * success, a negative value on failure. Operating-system errors pass through
 * as -errno (exactly as io_uring's cqe->res does). Domain errors live in a
 * reserved negative band below SB_EBASE so that they never collide with errno
 * values (Linux errno values stay below 4096).
 *
 * sb_strerror() names both kinds. The mapping to gRPC status codes lives in
 * exactly one function in service/.
 */
#ifndef SB_COMMON_ERROR_H
#define SB_COMMON_ERROR_H

#define SB_MUST_CHECK __attribute__((warn_unused_result))

#define SB_EBASE (-100000)

enum sb_error {
	SB_ECORRUPT = SB_EBASE - 1,      /* stored bytes fail CRC or structure checks */
	SB_EBADBATCH = SB_EBASE - 2,     /* a batch from a client is malformed */
	SB_ETOOBIG = SB_EBASE - 3,       /* a record, batch or request exceeds a limit */
	SB_EBUSY = SB_EBASE - 4,         /* back-pressure: in-flight bytes at their bound */
	SB_EFAILED = SB_EBASE - 5,       /* the log is in its sticky failed state */
	SB_ERANGE_LOW = SB_EBASE - 6,    /* offset below the log start offset */
	SB_ERANGE_HIGH = SB_EBASE - 7,   /* offset past the log end offset */
	SB_ENOTOPIC = SB_EBASE - 8,      /* unknown topic */
	SB_ENOPARTITION = SB_EBASE - 9,  /* unknown partition */
	SB_EEXISTS = SB_EBASE - 10,      /* topic already exists */
	SB_EBADNAME = SB_EBASE - 11,     /* topic name violates the naming rules */
	SB_EBADCONFIG = SB_EBASE - 12,   /* a setting is out of its bounds */
	SB_ECLOSED = SB_EBASE - 13,      /* object is closing or closed */
	SB_ENOTLEADER = SB_EBASE - 14,   /* this node is not the partition leader */
	SB_EFENCED = SB_EBASE - 15,      /* a higher leader epoch was seen */
	SB_ENOTFOUND = SB_EBASE - 16,    /* no such entry (e.g. no offset for a timestamp) */
	SB_EINVAL = SB_EBASE - 17,       /* invalid argument from a caller */
	SB_EUNAUTH = SB_EBASE - 18,      /* no credentials, or unknown ones */
	SB_EDENIED = SB_EBASE - 19,      /* known caller, not allowed */
	SB_ELAST = SB_EBASE - 20
};

/* Returns a static, human-readable name for err: a domain error's text, or
 * strerror(-err) for an OS error. Never returns NULL. Thread-safe. */
const char *sb_strerror(int err);

#endif
