/*
 * retention.h - the snapshot retention policy behind `tresor prune`.
 *
 * Owns one pure decision: given a list of snapshots (name, time, pinned)
 * and a policy (--keep-last/-hourly/-daily/-weekly/-monthly/-yearly and
 * --keep-within), which snapshots to keep and why.  No I/O, no clock, no
 * global state: the caller lists the snapshots and removes the ones
 * marked keep = 0.  The semantics are those of restic's `forget` policy
 * (restic <= 0.15; see retention.c for the rule, for where tresor
 * deliberately differs, and for why).
 *
 * Tresor's choices where restic has no direct equivalent:
 *  - Pinned snapshots are always kept, and the policy is evaluated as if
 *    they did not exist: a pinned snapshot consumes no bucket count, does
 *    not occupy its day/week/... bucket (an unpinned snapshot of the same
 *    day can still be that day's daily snapshot), is not the reference
 *    "newest snapshot" of --keep-within, and its reasons are just "pinned".
 *    (restic's --keep-tag, the nearest thing, does consume counts.)
 *  - Durations are fixed lengths, not calendar arithmetic: h = 1 hour,
 *    d = 24 hours, m = 31 days, y = 366 days.  restic subtracts calendar
 *    months and years in local time; 31 and 366 days are never shorter,
 *    so tresor keeps at least what restic keeps there.  A "d" window that
 *    spans a DST change is 1 hour longer or shorter in restic.
 *  - restic ignores future-dated snapshots when finding the newest one;
 *    this module has no clock, so the newest unpinned snapshot is used.
 */
#ifndef TRESOR_RETENTION_H
#define TRESOR_RETENTION_H

#include <stddef.h>
#include <stdint.h>

struct retention_policy {
	/* How many snapshots to keep per rule: 0 = rule not used,
	 * -1 = unlimited (restic's -1), other negatives are invalid. */
	int last, hourly, daily, weekly, monthly, yearly;
	/* Keep every snapshot newer than (newest snapshot time - within);
	 * 0 = not used, negative is invalid. */
	int64_t within_ns;
};

struct retention_snap {
	const char *name;	/* for reports and for breaking time ties */
	int64_t time_ns;	/* UTC ns since the epoch */
	int pinned;		/* never removed; invisible to the policy */
	/* outputs of retention_apply: */
	int keep;		/* 1 keep, 0 remove */
	char reasons[128];	/* e.g. "daily snapshot, monthly snapshot",
				 * "pinned", "last snapshot", "within 7d";
				 * "" when removed; truncated if too long */
};

/*
 * Decide keep/remove for n snapshots (any input order; the array is not
 * reordered) by policy p, using local time (the process's TZ, re-read on
 * each call) for the hour/day/week/month/year buckets.  Weeks are ISO 8601
 * weeks (Monday first, week 1 holds the year's first Thursday).  Snapshots
 * with equal times are ordered by name, then by array position.
 *
 * Returns 0, -EINVAL if the policy keeps nothing at all (every count 0 and
 * within 0: restic refuses an empty policy too) or has invalid values,
 * -ENOMEM, or -EOVERFLOW if a time cannot be broken into local time.
 * On error the outputs are undefined.
 */
int retention_apply(const struct retention_policy *p,
		    struct retention_snap *s, size_t n);

/*
 * Parse a restic --keep-within duration such as "30d", "7d", "12h" or
 * "2y5m7d3h" (units y, m = month, d, h; each at most once, any order,
 * non-negative decimal numbers) into ns, with the unit lengths above.
 * "0d" parses to 0 (rule not used).  Returns 0 or -EINVAL (empty input,
 * a number without unit, an unknown or repeated unit, a sign, or a result
 * that overflows int64); *ns is untouched on error.
 */
int retention_parse_duration(const char *s, int64_t *ns);

/*
 * Format ns as a duration for reasons and messages, in days, hours and
 * seconds ("30d", "1d12h", "90s", "0s"); writes at most len bytes including
 * the NUL.  Returns what snprintf returns.
 */
int retention_format_duration(int64_t ns, char *buf, size_t len);

#endif
