/*
 * hook.h - the commands the daemon runs before and after a snapshot of a
 * volume or a set (`before-snapshot`, `after-snapshot`): one run, with a
 * timeout, its environment, and its output copied to the log line by
 * line, bounded (a hook that writes gigabytes costs no memory: what is
 * past HOOK_LOG_MAX bytes is read and counted, not kept).
 *
 * The command is a path and arguments separated by spaces, run without a
 * shell (a script does what needs one), in a session of its own: a
 * timeout ends its whole process group (SIGTERM, then SIGKILL 2 s later),
 * and so does its end (nothing it started outlives it).
 */
#ifndef TRESOR_HOOK_H
#define TRESOR_HOOK_H

#include <stddef.h>
#include <stdint.h>

#define HOOK_LOG_MAX (64 * 1024)	/* bytes of output logged per run */

struct hook_result {
	int status;		/* exit code, 128 + signal; -1: could not run */
	int run_errno;		/* status -1: why (exec's errno) */
	int timed_out;
	int stopped;		/* ended because h->stop said so */
	uint64_t bytes;		/* output read */
	uint64_t dropped;	/* of those, not logged */
	char last_line[240];	/* the last line of output (for the error) */
};

/* One run of a hook. */
struct hook_spec {
	const char *cmd;	/* absolute path, arguments after spaces */
	char *const *env;	/* NAME=VALUE strings added to ours, NULL-ended */
	int timeout_s;
	const char *label;	/* prefix of its logged lines */
	/* Asked every 100 ms: non-zero ends the hook as a timeout would
	 * (the daemon is stopping).  May be NULL. */
	int (*stop)(void *arg);
	void *stop_arg;
};

/*
 * Run h: each line of its stdout and stderr is logged prefixed with its
 * label.  0 if it ran and exited 0; -1 else, with why in r and a one-line
 * description in why.
 */
int hook_run(const struct hook_spec *h, struct hook_result *r, char *why,
	     size_t whysize);

#endif
