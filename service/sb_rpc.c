/* sb_rpc.c - batches on the gRPC C core (see sb_rpc.h). */
#include "sb_rpc.h"

#include "sb_utf8.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <stdlib.h>
#include <string.h>

grpc_byte_buffer *sb_rpc_pack(const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	grpc_slice s = grpc_slice_malloc(n);
	protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

/* 1 if every string field of the message in p[0..n) (nested messages
 * too) is UTF-8 without NUL bytes: protobuf-c checks neither, and would
 * hand over "a\0b" as "a". Unknown fields are skipped; 0 on malformed
 * wire data (protobuf-c would refuse it anyway). */
static int strings_ok(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n, int depth)
{
	const uint8_t *end = p + n;
	if (depth > 32)
		return 0;
	while (p < end) {
		uint64_t key = 0, len = 0;
		int shift = 0;
		do {
			if (p == end || shift > 63)
				return 0;
			key |= (uint64_t)(*p & 0x7F) << shift;
			shift += 7;
		} while (*p++ & 0x80);
		switch (key & 7) {
		case 0:
			for (int i = 0;; i++) {
				if (p == end || i > 9)
					return 0;
				if (!(*p++ & 0x80))
					break;
			}
			break;
		case 1:
		case 5: {
			size_t w = (key & 7) == 1 ? 8 : 4;
			if ((size_t)(end - p) < w)
				return 0;
			p += w;
			break;
		}
		case 2: {
			shift = 0;
			do {
				if (p == end || shift > 63)
					return 0;
				len |= (uint64_t)(*p & 0x7F) << shift;
				shift += 7;
			} while (*p++ & 0x80);
			if (len > (uint64_t)(end - p))
				return 0;
			const ProtobufCFieldDescriptor *f =
			    key >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3)) : NULL;
			if (f && f->type == PROTOBUF_C_TYPE_STRING && !sb_utf8_valid(p, (size_t)len))
				return 0;
			if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && !strings_ok(f->descriptor, p, (size_t)len, depth + 1))
				return 0;
			p += len;
			break;
		}
		default: return 0;
		}
	}
	return 1;
}

ProtobufCMessage *sb_rpc_unpack(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb, size_t max_bytes)
{
	grpc_byte_buffer_reader r;
	ProtobufCMessage *m = NULL;
	if (!bb || grpc_byte_buffer_length(bb) > max_bytes || !grpc_byte_buffer_reader_init(&r, bb))
		return NULL;
	grpc_slice all = grpc_byte_buffer_reader_readall(&r); /* one slice even if bb had many */
	grpc_byte_buffer_reader_destroy(&r);
	if (strings_ok(d, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all), 0))
		m = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
	grpc_slice_unref(all);
	return m;
}

static int start(grpc_call *c, const grpc_op *ops, size_t n, struct sb_rpc_tag *t)
{
	grpc_call_error e = grpc_call_start_batch(c, ops, n, t, NULL);
	return e == GRPC_CALL_OK ? 0 : -(int)e;
}

int sb_rpc_recv(grpc_call *c, struct sb_rpc_tag *t, grpc_byte_buffer **out)
{
	grpc_op op;
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = out;
	return start(c, &op, 1, t);
}

int sb_rpc_send(grpc_call *c, struct sb_rpc_tag *t, grpc_byte_buffer *bb, int send_initial_md, int hint)
{
	grpc_op ops[2];
	size_t n = 0;
	memset(ops, 0, sizeof ops);
	if (send_initial_md)
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n].flags = hint ? GRPC_WRITE_BUFFER_HINT : 0;
	ops[n++].data.send_message.send_message = bb;
	return start(c, ops, n, t);
}

int sb_rpc_send_status(grpc_call *c, struct sb_rpc_tag *t, int send_initial_md, grpc_status_code code,
		       const char *msg, const char *const *md_kv, size_t n_md)
{
	grpc_op ops[2];
	grpc_metadata md[8];
	size_t n = 0;
	grpc_slice details = grpc_slice_from_copied_string(msg ? msg : "");
	memset(ops, 0, sizeof ops);
	if (n_md > 8)
		n_md = 8;
	for (size_t i = 0; i < n_md; i++) {
		memset(&md[i], 0, sizeof md[i]);
		md[i].key = grpc_slice_from_static_string(md_kv[2 * i]);
		md[i].value = grpc_slice_from_copied_string(md_kv[2 * i + 1]);
	}
	if (send_initial_md)
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = code;
	ops[n].data.send_status_from_server.status_details = &details;
	ops[n].data.send_status_from_server.trailing_metadata = n_md ? md : NULL;
	ops[n++].data.send_status_from_server.trailing_metadata_count = n_md;
	int rc = start(c, ops, n, t);
	grpc_slice_unref(details);
	for (size_t i = 0; i < n_md; i++)
		grpc_slice_unref(md[i].value);
	return rc;
}

int sb_rpc_reply(grpc_call *c, struct sb_rpc_tag *t, grpc_byte_buffer *bb, grpc_status_code code,
		 const char *msg)
{
	grpc_op ops[3];
	size_t n = 0;
	grpc_slice details = grpc_slice_from_copied_string(msg ? msg : "");
	memset(ops, 0, sizeof ops);
	ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (bb) {
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = bb;
	}
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = code;
	ops[n++].data.send_status_from_server.status_details = &details;
	int rc = start(c, ops, n, t);
	grpc_slice_unref(details);
	return rc;
}

int sb_rpc_recv_close(grpc_call *c, struct sb_rpc_tag *t, int *cancelled)
{
	grpc_op op;
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = cancelled;
	return start(c, &op, 1, t);
}

int sb_rpc_wake(grpc_call *c, struct sb_rpc_tag *t)
{
	return start(c, NULL, 0, t);
}

const char *sb_rpc_md_get(const grpc_metadata_array *md, const char *key, char *buf, size_t cap)
{
	size_t klen = strlen(key);
	for (size_t i = 0; i < md->count; i++) {
		const grpc_slice *k = &md->metadata[i].key;
		if (GRPC_SLICE_LENGTH(*k) == klen && memcmp(GRPC_SLICE_START_PTR(*k), key, klen) == 0) {
			size_t n = GRPC_SLICE_LENGTH(md->metadata[i].value);
			if (n >= cap)
				n = cap - 1;
			memcpy(buf, GRPC_SLICE_START_PTR(md->metadata[i].value), n);
			buf[n] = 0;
			return buf;
		}
	}
	return NULL;
}
