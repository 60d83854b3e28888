/* sb_svc_reflect.c - grpc.reflection v1 and v1alpha (being written). */
#include "sb_svc.h"

void sb_svc__reflection(struct sb_svc *svc, enum sb_method m, grpc_call *call)
{
	(void)m;
	sb_svc__reject(svc, call, GRPC_STATUS_UNIMPLEMENTED, "reflection is not available yet");
}
