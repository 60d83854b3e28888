/* abuse_client.c - a tiny gRPC C-core client for test_abuse.py: sends ONE
 * raw message (given in hex, so it can be anything) to a method, reads every
 * response message, and prints "<status code> <details>" on stdout.
 *
 *   abuse_client HOST:PORT /pkg.Service/Method HEX
 *
 * Exit 0 when a status was received (whatever it is), 1 on a client error,
 * 2 on usage errors. test_abuse.py compiles it at run time with
 * `cc ... $(pkg-config --cflags --libs grpc)` (not part of the build). */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Runs one batch and waits for it on cq. 0 = success. */
static int run(grpc_call *call, grpc_completion_queue *cq, const grpc_op *ops, size_t n, void *tag, int *ok)
{
	if (grpc_call_start_batch(call, ops, n, tag, NULL) != GRPC_CALL_OK)
		return -1;
	grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
	if (ev.type != GRPC_OP_COMPLETE || ev.tag != tag)
		return -1;
	*ok = ev.success;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: abuse_client HOST:PORT /pkg.Service/Method HEX\n");
		return 2;
	}
	size_t hl = strlen(argv[3]);
	if (hl % 2) {
		fprintf(stderr, "odd hex length\n");
		return 2;
	}
	unsigned char *msg = malloc(hl / 2 + 1);
	for (size_t i = 0; i < hl / 2; i++) {
		int a = hexval(argv[3][2 * i]), b = hexval(argv[3][2 * i + 1]);
		if (a < 0 || b < 0) {
			fprintf(stderr, "bad hex\n");
			return 2;
		}
		msg[i] = (unsigned char)(a << 4 | b);
	}

	grpc_init();
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	grpc_channel *ch = grpc_channel_create(argv[1], creds, NULL);
	grpc_channel_credentials_release(creds);
	grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
	grpc_slice method = grpc_slice_from_copied_string(argv[2]);
	gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(20, GPR_TIMESPAN));
	grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL, deadline, NULL);
	grpc_slice_unref(method);

	grpc_slice payload = grpc_slice_from_copied_buffer((const char *)msg, hl / 2);
	grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&payload, 1);
	grpc_slice_unref(payload);
	grpc_metadata_array initial, trailing;
	grpc_metadata_array_init(&initial);
	grpc_metadata_array_init(&trailing);
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	int ok = 0, rc = 1;

	grpc_op ops[4];
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
	if (run(call, cq, ops, 4, (void *)1, &ok))
		goto out;
	/* Read every response message (a status may follow messages). */
	for (int n = 0; n < 100000; n++) {
		grpc_byte_buffer *recv = NULL;
		grpc_op r;
		memset(&r, 0, sizeof r);
		r.op = GRPC_OP_RECV_MESSAGE;
		r.data.recv_message.recv_message = &recv;
		if (run(call, cq, &r, 1, (void *)2, &ok))
			goto out;
		if (!recv)
			break;
		grpc_byte_buffer_destroy(recv);
	}
	grpc_op st;
	memset(&st, 0, sizeof st);
	st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	st.data.recv_status_on_client.trailing_metadata = &trailing;
	st.data.recv_status_on_client.status = &status;
	st.data.recv_status_on_client.status_details = &details;
	if (run(call, cq, &st, 1, (void *)3, &ok))
		goto out;
	printf("%d %.*s\n", (int)status, (int)GRPC_SLICE_LENGTH(details), (const char *)GRPC_SLICE_START_PTR(details));
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "abuse_client: call failed\n");
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&initial);
	grpc_metadata_array_destroy(&trailing);
	grpc_byte_buffer_destroy(send);
	grpc_call_unref(call);
	grpc_channel_destroy(ch);
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
	grpc_shutdown();
	free(msg);
	return rc;
}
