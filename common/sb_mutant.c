/* sb_mutant.c - STREAMBUS_MUTANT parsing (test builds only; see sb_mutant.h). */
#include "sb_mutant.h"

#ifdef SB_MUTANTS
#include <stdlib.h>
#include <string.h>

unsigned sb_mutants;

unsigned sb_mutant_init(void)
{
	static const struct {
		const char *name;
		unsigned kind;
	} names[] = {
		{"skip_fsync", SB_MUTANT_SKIP_FSYNC},
		{"skip_dir_fsync", SB_MUTANT_SKIP_DIR_FSYNC},
		{"ignore_fsync_error", SB_MUTANT_IGNORE_FSYNC_ERROR},
		{"follower_early_ack", SB_MUTANT_FOLLOWER_EARLY_ACK},
	};
	const char *v = getenv("STREAMBUS_MUTANT");
	unsigned set = 0;
	for (size_t i = 0; v && i < sizeof names / sizeof *names; i++) {
		size_t n = strlen(names[i].name);
		for (const char *p = strstr(v, names[i].name); p; p = strstr(p + 1, names[i].name))
			if ((p == v || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
				set |= names[i].kind;
	}
	sb_mutants = set;
	return set;
}
#endif
