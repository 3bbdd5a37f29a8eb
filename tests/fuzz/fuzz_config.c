/*
 * fuzz_config.c - libFuzzer target for the daemon's config parser
 * (tools/config.c over inih, and tools/schedule.c): any bytes give either
 * a config or one "FILE:LINE: ..." message, never a crash.  Every
 * schedule of an accepted config is then asked for its slots.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tools/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config c;	/* large: not on the stack */
	char err[600];

	memset(err, 0x55, sizeof(err));
	int r = config_parse_buffer((const char *)data, size, "fuzz.ini", &c, err, sizeof(err));
	if (r != 0) {
		/* one message, naming the file */
		if (r != -EINVAL || strncmp(err, "fuzz.ini", 8) || !memchr(err, 0, sizeof(err)))
			abort();
		return 0;
	}
	if (!c.store[0] || c.store[0] != '/' || c.nvol > CONFIG_MAX_VOLUMES ||
	    c.nrem > CONFIG_MAX_REMOTES)
		abort();
	for (int i = 0; i < c.nvol; i++)
		if (c.vol[i].mountpoint[0] != '/')
			abort();
	const struct schedule *s[] = { &c.snapshot, &c.push, &c.check };
	for (int i = 0; i < 3; i++) {
		time_t t = 1790000000;
		time_t last = schedule_latest(s[i], t), next = schedule_next(s[i], t);
		if ((last && last > t) || (next && next <= t))
			abort();
		char buf[64];
		schedule_format(s[i], buf, sizeof(buf));
		struct schedule back;
		if (schedule_parse(buf, &back, err, sizeof(err)) ||
		    memcmp(&back, s[i], sizeof(back)))
			abort();
	}
	return 0;
}
