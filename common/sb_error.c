#include "sb_error.h"

#include <string.h>

const char *sb_strerror(int err)
{
	switch (err) {
	case 0: return "success";
	case SB_ECORRUPT: return "stored data is corrupt";
	case SB_EBADBATCH: return "malformed record batch";
	case SB_ETOOBIG: return "size limit exceeded";
	case SB_EBUSY: return "too many bytes in flight, retry later";
	case SB_EFAILED: return "log failed after an I/O error";
	case SB_ERANGE_LOW: return "offset below log start";
	case SB_ERANGE_HIGH: return "offset past log end";
	case SB_ENOTOPIC: return "unknown topic";
	case SB_ENOPARTITION: return "unknown partition";
	case SB_EEXISTS: return "topic already exists";
	case SB_EBADNAME: return "invalid topic name";
	case SB_EBADCONFIG: return "invalid configuration";
	case SB_ECLOSED: return "closed";
	case SB_ENOTLEADER: return "not the leader";
	case SB_EFENCED: return "fenced by a higher leader epoch";
	case SB_ENOTFOUND: return "not found";
	case SB_EINVAL: return "invalid argument";
	case SB_EUNAUTH: return "not authenticated";
	case SB_EDENIED: return "permission denied";
	default: break;
	}
	if (err < 0 && err > -4096)
		return strerror(-err); /* glibc's strerror is thread-safe for known codes */
	return "unknown error";
}
