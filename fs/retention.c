/*
 * retention.c - restic-style snapshot retention decisions (see retention.h).
 *
 * The rule, as restic's ApplyPolicy (internal/restic/snapshot_policy.go,
 * restic <= 0.15) has it: walk the snapshots newest first.  A snapshot is
 * kept if any of these holds:
 *  - within: its time is strictly after (newest time - within);
 *  - for each bucket rule (last, hourly, daily, weekly, monthly, yearly)
 *    whose count is not used up: its bucket value (a unique number for
 *    "last"; YYYYMMDDHH, YYYYMMDD, ISO year*100+week, YYYYMM, YYYY in
 *    local time) differs from the value of the last snapshot that rule
 *    kept.  Keeping it sets that value and uses up one count (none for
 *    -1, unlimited).
 * So each rule keeps the newest snapshot of each of its newest `count`
 * buckets that hold a snapshot.  restic >= 0.16 also keeps the oldest
 * snapshot when a rule still has counts left at the end; tresor does not
 * (it follows the rule above, which Debian 12's restic 0.14 implements).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "retention.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS_PER_SEC INT64_C(1000000000)
#define NS_PER_HOUR (3600 * NS_PER_SEC)
#define NS_PER_DAY (24 * NS_PER_HOUR)

/* The bucket rules in restic's order (which is also the reasons' order). */
enum rule { R_LAST, R_HOURLY, R_DAILY, R_WEEKLY, R_MONTHLY, R_YEARLY, R_N };

static const char *const rule_reason[R_N] = {
	"last snapshot", "hourly snapshot", "daily snapshot",
	"weekly snapshot", "monthly snapshot", "yearly snapshot",
};

/* One entry of the newest-first order: which snapshot, and its sort keys. */
struct order_ent {
	size_t idx;
	int64_t time_ns;
	const char *name;
};

/* qsort order: newest first; equal times by name, then array position, so
 * the result never depends on the qsort implementation. */
static int cmp_newest_first(const void *a, const void *b)
{
	const struct order_ent *x = a, *y = b;
	int c;

	if (x->time_ns != y->time_ns)
		return x->time_ns > y->time_ns ? -1 : 1;
	c = strcmp(x->name, y->name);
	if (c)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int is_leap(long year)
{
	return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

/* ISO 8601 year*100 + week of a broken-down time, like Go's ISOWeek:
 * the week belongs to the year that holds its Thursday. */
static long iso_year_week(const struct tm *tm)
{
	long year = (long)tm->tm_year + 1900;
	int wday = (tm->tm_wday + 6) % 7;	/* Monday = 0 */
	int thu = tm->tm_yday - wday + 3;	/* yday of this week's Thursday */

	if (thu < 0) {
		year--;
		thu += is_leap(year) ? 366 : 365;
	} else if (thu >= (is_leap(year) ? 366 : 365)) {
		thu -= is_leap(year) ? 366 : 365;
		year++;
	}
	return year * 100 + thu / 7 + 1;
}

/* Fill b[] with the bucket values of time t in local time; b[R_LAST] is
 * the position nr (restic's "always": every snapshot is its own bucket).
 * -EOVERFLOW if t cannot be broken down. */
static int bucket_values(int64_t t, size_t nr, long long b[R_N])
{
	/* floor division: a time before the epoch still lands in its second */
	time_t sec = (time_t)(t / NS_PER_SEC - (t % NS_PER_SEC < 0));
	struct tm tm;
	long long y, mo, d;

	if (!localtime_r(&sec, &tm))
		return -EOVERFLOW;
	y = (long long)tm.tm_year + 1900;
	mo = tm.tm_mon + 1;
	d = tm.tm_mday;
	b[R_LAST] = (long long)nr;
	b[R_HOURLY] = y * 1000000 + mo * 10000 + d * 100 + tm.tm_hour;
	b[R_DAILY] = y * 10000 + mo * 100 + d;
	b[R_WEEKLY] = iso_year_week(&tm);
	b[R_MONTHLY] = y * 100 + mo;
	b[R_YEARLY] = y;
	return 0;
}

/* Append ", what" (or just "what" first) to a snapshot's reasons, cutting
 * it short rather than overflowing. */
static void add_reason(struct retention_snap *s, const char *what)
{
	size_t used = strlen(s->reasons);

	snprintf(s->reasons + used, sizeof(s->reasons) - used, "%s%s",
		 used ? ", " : "", what);
}

/* The policy's counts in rule order; also validates them. */
static int policy_counts(const struct retention_policy *p, int c[R_N])
{
	int any = p->within_ns != 0, i;

	c[R_LAST] = p->last;
	c[R_HOURLY] = p->hourly;
	c[R_DAILY] = p->daily;
	c[R_WEEKLY] = p->weekly;
	c[R_MONTHLY] = p->monthly;
	c[R_YEARLY] = p->yearly;
	if (p->within_ns < 0)
		return -EINVAL;
	for (i = 0; i < R_N; i++) {
		if (c[i] < -1)
			return -EINVAL;
		any |= c[i] != 0;
	}
	return any ? 0 : -EINVAL;
}

int retention_apply(const struct retention_policy *p,
		    struct retention_snap *s, size_t n)
{
	int count[R_N];
	long long last_val[R_N], val[R_N];
	int have_last[R_N] = { 0 };
	struct order_ent *ord;
	size_t i, m = 0, nr;
	int64_t threshold = 0;
	int within_all = 0, r;
	char within_reason[64] = "";

	r = policy_counts(p, count);
	if (r)
		return r;

	for (i = 0; i < n; i++) {
		s[i].keep = 0;
		s[i].reasons[0] = '\0';
		if (s[i].pinned) {
			s[i].keep = 1;
			add_reason(&s[i], "pinned");
		}
	}
	if (!n)
		return 0;

	/* Newest-first order of the unpinned snapshots only: pinned ones
	 * are invisible to the policy (retention.h). */
	ord = calloc(n, sizeof(*ord));
	if (!ord)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		if (s[i].pinned)
			continue;
		ord[m].idx = i;
		ord[m].time_ns = s[i].time_ns;
		ord[m].name = s[i].name ? s[i].name : "";
		m++;
	}
	qsort(ord, m, sizeof(*ord), cmp_newest_first);

	/* restic: keep if cur.Time.After(latest - within).  If the
	 * subtraction overflows, everything is within. */
	if (p->within_ns && m) {
		if (__builtin_sub_overflow(ord[0].time_ns, p->within_ns,
					   &threshold))
			within_all = 1;
		memcpy(within_reason, "within ", 7);
		retention_format_duration(p->within_ns, within_reason + 7,
					  sizeof(within_reason) - 7);
	}

	tzset();	/* honour the TZ in force now, not at first use */
	for (nr = 0; nr < m; nr++) {
		struct retention_snap *cur = &s[ord[nr].idx];

		if (p->within_ns &&
		    (within_all || cur->time_ns > threshold)) {
			cur->keep = 1;
			add_reason(cur, within_reason);
		}
		r = bucket_values(cur->time_ns, nr, val);
		if (r)
			goto out;
		for (i = 0; i < R_N; i++) {
			if (count[i] == 0)
				continue;	/* unused or used up */
			if (have_last[i] && val[i] == last_val[i])
				continue;	/* bucket already has its newest */
			cur->keep = 1;
			add_reason(cur, rule_reason[i]);
			last_val[i] = val[i];
			have_last[i] = 1;
			if (count[i] > 0)
				count[i]--;
		}
	}
	r = 0;
out:
	free(ord);
	return r;
}

int retention_parse_duration(const char *s, int64_t *ns)
{
	/* unit lengths: see retention.h for why m and y are 31 and 366 d */
	static const struct {
		char unit;
		int64_t len;
	} units[] = {
		{ 'y', 366 * NS_PER_DAY },
		{ 'm', 31 * NS_PER_DAY },
		{ 'd', NS_PER_DAY },
		{ 'h', NS_PER_HOUR },
	};
	unsigned seen = 0;
	int64_t total = 0;

	if (!s || !*s)
		return -EINVAL;
	while (*s) {
		int64_t num = 0, part;
		size_t u;

		if (*s < '0' || *s > '9')
			return -EINVAL;		/* sign, space, missing number */
		while (*s >= '0' && *s <= '9') {
			if (__builtin_mul_overflow(num, 10, &num) ||
			    __builtin_add_overflow(num, *s - '0', &num))
				return -EINVAL;
			s++;
		}
		for (u = 0; u < sizeof(units) / sizeof(units[0]); u++)
			if (units[u].unit == *s)
				break;
		if (u == sizeof(units) / sizeof(units[0]) || (seen & 1u << u))
			return -EINVAL;		/* none, unknown or repeated */
		seen |= 1u << u;
		s++;
		if (__builtin_mul_overflow(num, units[u].len, &part) ||
		    __builtin_add_overflow(total, part, &total))
			return -EINVAL;
	}
	*ns = total;
	return 0;
}

int retention_format_duration(int64_t ns, char *buf, size_t len)
{
	/* work in unsigned magnitude so INT64_MIN formats too */
	uint64_t mag = ns < 0 ? -(uint64_t)ns : (uint64_t)ns;
	uint64_t days = mag / (uint64_t)NS_PER_DAY;
	uint64_t hours = mag % (uint64_t)NS_PER_DAY / (uint64_t)NS_PER_HOUR;
	uint64_t rest = mag % (uint64_t)NS_PER_HOUR;
	char d[32] = "", h[32] = "", sec[48] = "";

	if (days)
		snprintf(d, sizeof(d), "%" PRIu64 "d", days);
	if (hours)
		snprintf(h, sizeof(h), "%" PRIu64 "h", hours);
	if (rest % (uint64_t)NS_PER_SEC)
		snprintf(sec, sizeof(sec), "%" PRIu64 ".%09" PRIu64 "s",
			 rest / (uint64_t)NS_PER_SEC,
			 rest % (uint64_t)NS_PER_SEC);
	else if (rest || !mag)
		snprintf(sec, sizeof(sec), "%" PRIu64 "s",
			 rest / (uint64_t)NS_PER_SEC);
	return snprintf(buf, len, "%s%s%s%s", ns < 0 ? "-" : "", d, h, sec);
}
