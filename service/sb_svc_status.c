/* sb_svc_status.c - error -> gRPC status mapping (the only one). */
#include "sb_svc_status.h"

#include "sb_error.h"

#include <errno.h>

grpc_status_code sb_svc_status(int err)
{
	switch (err) {
	case 0: return GRPC_STATUS_OK;
	case SB_EBADBATCH:
	case SB_EBADNAME:
	case SB_EBADCONFIG:
	case SB_EINVAL: return GRPC_STATUS_INVALID_ARGUMENT;
	case SB_ENOTOPIC:
	case SB_ENOPARTITION:
	case SB_ENOTFOUND: return GRPC_STATUS_NOT_FOUND;
	case SB_EEXISTS: return GRPC_STATUS_ALREADY_EXISTS;
	case SB_ERANGE_LOW:
	case SB_ERANGE_HIGH: return GRPC_STATUS_OUT_OF_RANGE;
	case SB_ETOOBIG:
	case SB_EBUSY:
	case -ENOSPC:
	case -EDQUOT:
	case -ENOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case SB_EFAILED:
	case SB_ECLOSED:
	case SB_ENOTLEADER:
	case SB_EFENCED: return GRPC_STATUS_UNAVAILABLE;
	case SB_ECORRUPT: return GRPC_STATUS_DATA_LOSS;
	case SB_EUNAUTH: return GRPC_STATUS_UNAUTHENTICATED;
	case SB_EDENIED: return GRPC_STATUS_PERMISSION_DENIED;
	default: break;
	}
	if (err < 0 && err > -4096)
		return GRPC_STATUS_UNAVAILABLE; /* an I/O error: the log has failed */
	return GRPC_STATUS_INTERNAL;
}
