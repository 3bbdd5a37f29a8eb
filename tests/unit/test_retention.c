/*
 * test_retention.c - unit tests for fs/retention.c: the restic-style
 * keep/remove decision (daily, weekly by ISO week, monthly and yearly
 * across a year boundary, hourly, last, within, pinned, ties, empty and
 * invalid policies, DST days in Europe/Berlin) and duration parsing.
 *
 * Times are written as UTC (tm() below) with the Europe/Berlin local time
 * in a comment, so the test does not depend on mktime's handling of
 * DST gaps; TZ is set to Europe/Berlin at the start of main.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "check.h"
#include "retention.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEC INT64_C(1000000000)
#define HOUR (3600 * SEC)
#define DAY (24 * HOUR)

/* UTC y-mo-d h:mi as ns since the epoch. */
static int64_t tm(int y, int mo, int d, int h, int mi)
{
	struct tm t = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
			.tm_hour = h, .tm_min = mi };

	return (int64_t)timegm(&t) * SEC;
}

/* Fill s[i] with name names[i] and time times[i], unpinned. */
static void mk(struct retention_snap *s, size_t n, const char *const *names,
	       const int64_t *times)
{
	size_t i;

	memset(s, 0, n * sizeof(*s));
	for (i = 0; i < n; i++) {
		s[i].name = names[i];
		s[i].time_ns = times[i];
	}
}

/* The kept names as one string "a b c" in array order, for CHECKs. */
static const char *kept(const struct retention_snap *s, size_t n)
{
	static char buf[1024];
	size_t i;

	buf[0] = '\0';
	for (i = 0; i < n; i++) {
		if (!s[i].keep)
			continue;
		if (buf[0])
			strcat(buf, " ");
		strcat(buf, s[i].name);
	}
	return buf;
}

#define CHECK_KEPT(s, n, want)						\
	do {								\
		const char *got_ = kept(s, n);				\
		if (strcmp(got_, want)) {				\
			fprintf(stderr, "%s:%d: kept \"%s\", want \"%s\"\n", \
				__FILE__, __LINE__, got_, want);	\
			check_failures++;				\
		}							\
	} while (0)

#define CHECK_STR(a, b) CHECK(strcmp((a), (b)) == 0)

/* Europe/Berlin really is in effect (tzdata installed): otherwise glibc
 * silently uses UTC and every local-time case below would mislead. */
static void test_tz_sane(void)
{
	time_t winter = 1767225600, summer = 1782864000;	/* Jan, Jul 2026 */
	struct tm t;

	CHECK(localtime_r(&winter, &t) && t.tm_gmtoff == 3600);
	CHECK(localtime_r(&summer, &t) && t.tm_gmtoff == 7200);
}

/* Several snapshots a day: daily keeps the newest of each of the newest
 * `daily` days, whatever the input order. */
static void test_daily(void)
{
	static const char *const names[] = {
		"d1a", "d3c", "d1b", "d2a", "d3a", "d2b", "d3b", "d1c",
	};
	const int64_t times[] = {
		tm(2026, 6, 1, 6, 0),	/* 08:00 CEST */
		tm(2026, 6, 3, 21, 0),	/* 23:00 */
		tm(2026, 6, 1, 10, 0),
		tm(2026, 6, 2, 5, 0),
		tm(2026, 6, 3, 1, 0),
		tm(2026, 6, 2, 21, 59),	/* 23:59 */
		tm(2026, 6, 3, 12, 0),
		tm(2026, 6, 1, 20, 0),
	};
	struct retention_policy p = { .daily = 2 };
	struct retention_snap s[8];

	mk(s, 8, names, times);
	CHECK_EQ(retention_apply(&p, s, 8), 0);
	CHECK_KEPT(s, 8, "d3c d2b");
	CHECK_STR(s[1].reasons, "daily snapshot");
	CHECK_STR(s[0].reasons, "");

	p.daily = -1;		/* unlimited: one per day, all days */
	CHECK_EQ(retention_apply(&p, s, 8), 0);
	CHECK_KEPT(s, 8, "d3c d2b d1c");

	p.daily = 10;		/* more counts than days: same */
	CHECK_EQ(retention_apply(&p, s, 8), 0);
	CHECK_KEPT(s, 8, "d3c d2b d1c");
}

/* A snapshot at 00:30 local time on a DST-change day belongs to that
 * local day (in UTC it is still the day before). */
static void test_dst_days(void)
{
	static const char *const names[] = {
		"m28", "m29early", "m29", "o24", "o25early", "o25",
	};
	const int64_t times[] = {
		tm(2026, 3, 28, 22, 30),	/* 03-28 23:30 CET */
		tm(2026, 3, 28, 23, 30),	/* 03-29 00:30 CET */
		tm(2026, 3, 29, 10, 0),		/* 03-29 12:00 CEST */
		tm(2026, 10, 24, 21, 0),	/* 10-24 23:00 CEST */
		tm(2026, 10, 24, 22, 30),	/* 10-25 00:30 CEST */
		tm(2026, 10, 25, 22, 30),	/* 10-25 23:30 CET */
	};
	struct retention_policy p = { .daily = -1 };
	struct retention_snap s[6];

	mk(s, 6, names, times);
	CHECK_EQ(retention_apply(&p, s, 6), 0);
	/* by UTC day it would be "m29early m29 o25early o25" */
	CHECK_KEPT(s, 6, "m28 m29 o24 o25");

	/* The two ends of each DST day alone: 00:30 and 23:30 local are the
	 * same day although 22 resp. almost 24 hours apart... */
	{
		static const char *const n2[] = { "early", "late" };
		const int64_t spring[] = {
			tm(2026, 3, 28, 23, 30),	/* 03-29 00:30 CET */
			tm(2026, 3, 29, 21, 30),	/* 03-29 23:30 CEST */
		};
		const int64_t autumn[] = {
			tm(2026, 10, 24, 22, 30),	/* 10-25 00:30 CEST */
			tm(2026, 10, 25, 22, 29),	/* 10-25 23:29 CET */
		};

		mk(s, 2, n2, spring);
		CHECK_EQ(retention_apply(&p, s, 2), 0);
		CHECK_KEPT(s, 2, "late");
		mk(s, 2, n2, autumn);
		CHECK_EQ(retention_apply(&p, s, 2), 0);
		CHECK_KEPT(s, 2, "late");
	}

	/* ...and the repeated hour 02:00-03:00 of 10-25 is one hourly
	 * bucket, as in restic (both are 2026102502 in local time). */
	{
		static const char *const n3[] = { "cest0230", "cet0230", "cet0330" };
		const int64_t t3[] = {
			tm(2026, 10, 25, 0, 30),	/* 02:30 CEST */
			tm(2026, 10, 25, 1, 30),	/* 02:30 CET */
			tm(2026, 10, 25, 2, 30),	/* 03:30 CET */
		};
		struct retention_policy ph = { .hourly = -1 };

		mk(s, 3, n3, t3);
		CHECK_EQ(retention_apply(&ph, s, 3), 0);
		CHECK_KEPT(s, 3, "cet0230 cet0330");
		CHECK_STR(s[2].reasons, "hourly snapshot");
	}
}

/* Monthly and yearly across a year boundary; a snapshot at 00:30 local on
 * New Year's Day (23:30 UTC the day before) is January's. */
static void test_monthly_yearly(void)
{
	static const char *const names[] = {
		"oct", "nov", "dec10", "dec31", "jan01", "jan20",
	};
	const int64_t times[] = {
		tm(2025, 10, 2, 10, 0),
		tm(2025, 11, 15, 10, 0),
		tm(2025, 12, 10, 10, 0),
		tm(2025, 12, 31, 22, 30),	/* 12-31 23:30 CET */
		tm(2025, 12, 31, 23, 30),	/* 2026-01-01 00:30 CET */
		tm(2026, 1, 20, 10, 0),
	};
	struct retention_policy p = { .monthly = 3 };
	struct retention_snap s[6];

	mk(s, 6, names, times);
	CHECK_EQ(retention_apply(&p, s, 6), 0);
	CHECK_KEPT(s, 6, "nov dec31 jan20");

	p.monthly = 0;
	p.yearly = 5;
	CHECK_EQ(retention_apply(&p, s, 6), 0);
	CHECK_KEPT(s, 6, "dec31 jan20");
	CHECK_STR(s[3].reasons, "yearly snapshot");

	/* several rules: each lists itself */
	p.monthly = 2;
	p.yearly = 2;
	p.daily = 1;
	CHECK_EQ(retention_apply(&p, s, 6), 0);
	CHECK_KEPT(s, 6, "dec31 jan20");
	CHECK_STR(s[5].reasons,
		  "daily snapshot, monthly snapshot, yearly snapshot");
	CHECK_STR(s[3].reasons, "monthly snapshot, yearly snapshot");
}

/* Weekly buckets are ISO weeks: Monday first, and the days around New
 * Year belong to the ISO year of their week's Thursday. */
static void test_weekly_iso(void)
{
	/* 2026-01-01 is a Thursday: 2026-W01 = Mon 12-29 .. Sun 01-04. */
	static const char *const names[] = {
		"sun1228", "mon1229", "sat0103", "sun0104", "mon0105",
	};
	const int64_t times[] = {
		tm(2025, 12, 28, 11, 0),	/* 2025-W52 */
		tm(2025, 12, 29, 11, 0),	/* 2026-W01 */
		tm(2026, 1, 3, 11, 0),		/* 2026-W01 */
		tm(2026, 1, 4, 11, 0),		/* 2026-W01 (Sunday) */
		tm(2026, 1, 5, 11, 0),		/* 2026-W02 */
	};
	/* 2021-01-01 is a Friday: it and 01-03 are in 2020-W53. */
	static const char *const names2[] = { "thu1231", "sun0103", "mon0104" };
	const int64_t times2[] = {
		tm(2020, 12, 31, 11, 0),
		tm(2021, 1, 3, 11, 0),
		tm(2021, 1, 4, 11, 0),
	};
	struct retention_policy p = { .weekly = -1 };
	struct retention_snap s[5];

	mk(s, 5, names, times);
	CHECK_EQ(retention_apply(&p, s, 5), 0);
	CHECK_KEPT(s, 5, "sun1228 sun0104 mon0105");

	mk(s, 3, names2, times2);
	CHECK_EQ(retention_apply(&p, s, 3), 0);
	CHECK_KEPT(s, 3, "sun0103 mon0104");

	p.weekly = 1;
	CHECK_EQ(retention_apply(&p, s, 3), 0);
	CHECK_KEPT(s, 3, "mon0104");
}

/* One snapshot a day at 23:30 local for 2019..2027: weekly -1 must keep
 * exactly the days whose successor is in another ISO week by glibc's
 * strftime %G%V (and the newest). */
static void test_weekly_vs_strftime(void)
{
	enum { N = 9 * 366 };
	struct retention_snap *s = calloc(N, sizeof(*s));
	struct retention_policy p = { .weekly = -1 };
	int64_t t0 = tm(2019, 1, 1, 22, 30);	/* 23:30 CET */
	char prev[16] = "", cur[16];
	int i, bad = 0;

	if (!s) {
		CHECK(0);
		return;
	}
	for (i = 0; i < N; i++) {
		s[i].name = "x";
		s[i].time_ns = t0 + (int64_t)i * DAY;
	}
	/* Correct for DST so each stays at 23:30 local (22:30 or 21:30 UTC). */
	for (i = 0; i < N; i++) {
		time_t t = (time_t)(s[i].time_ns / SEC);
		struct tm lt;

		localtime_r(&t, &lt);
		if (lt.tm_hour == 0)	/* 00:30 CEST next day: use 23:30 */
			s[i].time_ns -= HOUR;
	}
	CHECK_EQ(retention_apply(&p, s, N), 0);
	for (i = N - 1; i >= 0; i--) {
		time_t t = (time_t)(s[i].time_ns / SEC);
		struct tm lt;
		int want;

		localtime_r(&t, &lt);
		CHECK_EQ(lt.tm_hour, 23);
		strftime(cur, sizeof(cur), "%G%V", &lt);
		want = strcmp(cur, prev) != 0;	/* newest of its week */
		if (s[i].keep != want)
			bad++;
		memcpy(prev, cur, sizeof(prev));
	}
	CHECK_EQ(bad, 0);
	free(s);
}

/* --keep-last keeps the n newest; equal times are ordered by name. */
static void test_last(void)
{
	static const char *const names[] = { "c", "e", "a", "d", "b" };
	const int64_t times[] = {
		tm(2026, 5, 3, 0, 0), tm(2026, 5, 5, 0, 0), tm(2026, 5, 1, 0, 0),
		tm(2026, 5, 4, 0, 0), tm(2026, 5, 2, 0, 0),
	};
	static const char *const tie[] = { "b", "a", "c" };
	const int64_t tt[] = { 5 * SEC, 5 * SEC, 4 * SEC };
	struct retention_policy p = { .last = 3 };
	struct retention_snap s[5];

	mk(s, 5, names, times);
	CHECK_EQ(retention_apply(&p, s, 5), 0);
	CHECK_KEPT(s, 5, "c e d");
	CHECK_STR(s[1].reasons, "last snapshot");

	p.last = -1;
	CHECK_EQ(retention_apply(&p, s, 5), 0);
	CHECK_KEPT(s, 5, "c e a d b");

	p.last = 1;
	mk(s, 3, tie, tt);
	CHECK_EQ(retention_apply(&p, s, 3), 0);
	CHECK_KEPT(s, 3, "a");
	p.last = 2;
	CHECK_EQ(retention_apply(&p, s, 3), 0);
	CHECK_KEPT(s, 3, "b a");
}

/* --keep-within: strictly after (newest - within), relative to the newest
 * snapshot, not to now; reasons in restic's order (within first). */
static void test_within(void)
{
	static const char *const names[] = {
		"newest", "edge+1s", "edge", "old", "older",
	};
	int64_t t = tm(2026, 7, 1, 12, 0);
	const int64_t times[] = {
		t, t - 7 * DAY + SEC, t - 7 * DAY, t - 8 * DAY, t - 100 * DAY,
	};
	struct retention_policy p = { .within_ns = 7 * DAY };
	struct retention_snap s[5];

	mk(s, 5, names, times);
	CHECK_EQ(retention_apply(&p, s, 5), 0);
	CHECK_KEPT(s, 5, "newest edge+1s");
	CHECK_STR(s[0].reasons, "within 7d");
	CHECK_STR(s[1].reasons, "within 7d");

	p.last = 1;
	p.within_ns = 36 * HOUR;
	CHECK_EQ(retention_apply(&p, s, 5), 0);
	CHECK_KEPT(s, 5, "newest");
	CHECK_STR(s[0].reasons, "within 1d12h, last snapshot");

	/* huge within: everything, also when newest - within overflows */
	p.last = 0;
	p.within_ns = INT64_MAX;
	CHECK_EQ(retention_apply(&p, s, 5), 0);
	CHECK_KEPT(s, 5, "newest edge+1s edge old older");
	s[0].time_ns = -5 * SEC * 1000000000;	/* 1811 */
	s[1].time_ns = INT64_MIN;
	s[2].time_ns = INT64_MIN + 1;
	CHECK_EQ(retention_apply(&p, s, 3), 0);
	CHECK_KEPT(s, 3, "newest edge+1s edge");
}

/* Pinned snapshots are kept and invisible to the policy: they use no
 * count, do not fill a bucket, and are not the within reference. */
static void test_pinned(void)
{
	static const char *const names[] = { "pin-new", "a", "b", "pin-old" };
	const int64_t times[] = {
		tm(2026, 6, 10, 18, 0), tm(2026, 6, 10, 9, 0),
		tm(2026, 6, 9, 9, 0), tm(2025, 1, 1, 9, 0),
	};
	struct retention_policy p = { .daily = 1 };
	struct retention_snap s[4];

	mk(s, 4, names, times);
	s[0].pinned = 1;
	s[3].pinned = 1;
	CHECK_EQ(retention_apply(&p, s, 4), 0);
	/* "a" is 06-10's daily although pin-new is newer the same day */
	CHECK_KEPT(s, 4, "pin-new a pin-old");
	CHECK_STR(s[0].reasons, "pinned");
	CHECK_STR(s[1].reasons, "daily snapshot");
	CHECK_STR(s[3].reasons, "pinned");

	/* within counts from the newest unpinned snapshot ("a") */
	p.daily = 0;
	p.within_ns = 1 * DAY + HOUR;
	s[0].time_ns = tm(2026, 6, 20, 0, 0);
	CHECK_EQ(retention_apply(&p, s, 4), 0);
	CHECK_KEPT(s, 4, "pin-new a b pin-old");

	/* all pinned: all kept, nothing else to decide */
	s[1].pinned = s[2].pinned = 1;
	CHECK_EQ(retention_apply(&p, s, 4), 0);
	CHECK_KEPT(s, 4, "pin-new a b pin-old");
}

/* An empty or invalid policy is refused; an empty list is fine. */
static void test_policy_errors(void)
{
	struct retention_policy empty = { 0 }, bad = { .daily = -2 };
	struct retention_policy badw = { .within_ns = -1 };
	struct retention_policy ok = { .last = 1 };
	struct retention_snap s[1] = { { .name = "x", .time_ns = 0 } };

	CHECK_EQ(retention_apply(&empty, s, 1), -EINVAL);
	CHECK_EQ(retention_apply(&empty, NULL, 0), -EINVAL);
	CHECK_EQ(retention_apply(&bad, s, 1), -EINVAL);
	CHECK_EQ(retention_apply(&badw, s, 1), -EINVAL);
	CHECK_EQ(retention_apply(&ok, NULL, 0), 0);
	/* a time before the epoch works (floor division to seconds) */
	s[0].time_ns = -1;
	CHECK_EQ(retention_apply(&ok, s, 1), 0);
	CHECK_EQ(s[0].keep, 1);
}

static void test_parse_duration(void)
{
	static const char *const bad[] = {
		"", "d", "30", "30x", "-1d", "+1d", "1d1d", " 1d", "1d ",
		"1.5d", "1D", "99999999999999999999d", "300000y", "1w",
	};
	int64_t ns;
	size_t i;
	char buf[64];

	CHECK_EQ(retention_parse_duration("30d", &ns), 0);
	CHECK_EQ(ns, 30 * DAY);
	CHECK_EQ(retention_parse_duration("7d", &ns), 0);
	CHECK_EQ(ns, 7 * DAY);
	CHECK_EQ(retention_parse_duration("12h", &ns), 0);
	CHECK_EQ(ns, 12 * HOUR);
	CHECK_EQ(retention_parse_duration("2y5m7d3h", &ns), 0);
	CHECK_EQ(ns, 2 * 366 * DAY + 5 * 31 * DAY + 7 * DAY + 3 * HOUR);
	CHECK_EQ(retention_parse_duration("3h1y", &ns), 0);	/* any order */
	CHECK_EQ(ns, 366 * DAY + 3 * HOUR);
	CHECK_EQ(retention_parse_duration("0d", &ns), 0);
	CHECK_EQ(ns, 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ns = 42;
		if (retention_parse_duration(bad[i], &ns) != -EINVAL ||
		    ns != 42) {
			fprintf(stderr, "accepted bad duration \"%s\"\n",
				bad[i]);
			check_failures++;
		}
	}
	CHECK_EQ(retention_parse_duration(NULL, &ns), -EINVAL);

	retention_format_duration(30 * DAY, buf, sizeof(buf));
	CHECK_STR(buf, "30d");
	retention_format_duration(36 * HOUR, buf, sizeof(buf));
	CHECK_STR(buf, "1d12h");
	retention_format_duration(90 * SEC, buf, sizeof(buf));
	CHECK_STR(buf, "90s");
	retention_format_duration(0, buf, sizeof(buf));
	CHECK_STR(buf, "0s");
	retention_format_duration(DAY + 1, buf, sizeof(buf));
	CHECK_STR(buf, "1d0.000000001s");
}

int main(void)
{
	setenv("TZ", "Europe/Berlin", 1);
	tzset();

	test_tz_sane();
	test_daily();
	test_dst_days();
	test_monthly_yearly();
	test_weekly_iso();
	test_weekly_vs_strftime();
	test_last();
	test_within();
	test_pinned();
	test_policy_errors();
	test_parse_duration();
	if (!check_failures)
		printf("test_retention: all checks passed\n");
	return CHECK_DONE();
}
