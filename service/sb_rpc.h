/* sb_rpc.h - the thin layer over the gRPC C core (1.51). Every direct call
 * into grpc_* that starts a batch lives in sb_rpc.c, so an API change between
 * gRPC releases touches one file. See ../shared/GRPC_CORE.md for the rules
 * these helpers follow (one op of each kind in flight, RECV_CLOSE alone in
 * its batch, a fresh byte buffer per send).
 *
 * Every function that starts a batch returns 0 (the tag will be delivered
 * exactly once) or a negative value (GRPC_CALL_ERROR_*; the tag will never
 * be delivered). Callers serialise batches on one call themselves.
 */
#ifndef SB_SERVICE_RPC_H
#define SB_SERVICE_RPC_H

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* A completion-queue tag: the worker calls fn(tag, success). */
struct sb_rpc_tag {
	void (*fn)(struct sb_rpc_tag *tag, int ok);
};

/* Packs m into a new byte buffer (one slice, zero extra copies). NULL on OOM.
 * The caller owns the buffer until a send takes it. */
grpc_byte_buffer *sb_rpc_pack(const ProtobufCMessage *m);
/* Unpacks bb into a message of descriptor d; NULL if malformed or larger
 * than max_bytes. Free with protobuf_c_message_free_unpacked. bb is not freed. */
ProtobufCMessage *sb_rpc_unpack(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb, size_t max_bytes);

/* Starts RECV_MESSAGE into *out (NULL when the client half-closed). */
int sb_rpc_recv(grpc_call *c, struct sb_rpc_tag *t, grpc_byte_buffer **out);
/* Starts SEND_MESSAGE of bb (destroy bb after the tag arrives). With
 * send_initial_md the initial metadata goes in the same batch. hint sets
 * GRPC_WRITE_BUFFER_HINT (never on the last send before going idle). */
int sb_rpc_send(grpc_call *c, struct sb_rpc_tag *t, grpc_byte_buffer *bb, int send_initial_md, int hint);
/* Starts SEND_STATUS_FROM_SERVER (plus initial metadata if not yet sent).
 * trailing metadata: n pairs key/value (lowercase keys), copied. */
int sb_rpc_send_status(grpc_call *c, struct sb_rpc_tag *t, int send_initial_md, grpc_status_code code,
		       const char *msg, const char *const *md_kv, size_t n);
/* Initial metadata + message (if bb) + status in one batch: a unary reply. */
int sb_rpc_reply(grpc_call *c, struct sb_rpc_tag *t, grpc_byte_buffer *bb, grpc_status_code code,
		 const char *msg);
/* Starts RECV_CLOSE_ON_SERVER; *cancelled is valid when the tag arrives. */
int sb_rpc_recv_close(grpc_call *c, struct sb_rpc_tag *t, int *cancelled);
/* Posts t to the call's completion queue at once (an empty batch): how
 * another thread wakes a parked call. */
int sb_rpc_wake(grpc_call *c, struct sb_rpc_tag *t);

/* The metadata value for key in md (NULL if absent), copied into buf. */
const char *sb_rpc_md_get(const grpc_metadata_array *md, const char *key, char *buf, size_t cap);

#endif
