/* sb_svc_status.h - the one place StreamBus errors become gRPC status codes
 * (RELIABILITY.md rule 7). */
#ifndef SB_SERVICE_STATUS_H
#define SB_SERVICE_STATUS_H

#include <grpc/status.h>

/* Maps a StreamBus/OS error (0 = OK) to a gRPC status code. */
grpc_status_code sb_svc_status(int err);

#endif
