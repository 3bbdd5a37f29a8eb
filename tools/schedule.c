/*
 * schedule.c - due times of the daemon's jobs (see schedule.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "schedule.h"

static const char *const wdays[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };

/* "HH:MM" -> hour, minute; 0 or -1. */
static int parse_hhmm(const char *s, int *h, int *m)
{
	if (strlen(s) != 5 || s[2] != ':')
		return -1;
	for (int i = 0; i < 5; i++)
		if (i != 2 && (s[i] < '0' || s[i] > '9'))
			return -1;
	*h = (s[0] - '0') * 10 + s[1] - '0';
	*m = (s[3] - '0') * 10 + s[4] - '0';
	return *h < 24 && *m < 60 ? 0 : -1;
}

int schedule_parse(const char *s, struct schedule *out, char *err, size_t errsize)
{
	char w[4][32];
	int n = 0;
	const char *p = s;
	memset(out, 0, sizeof(*out));
	while (*p) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		size_t len = strcspn(p, " \t");
		if (n == 4 || len >= sizeof(w[0])) {
			snprintf(err, errsize, "too many words in schedule '%s'", s);
			return -EINVAL;
		}
		memcpy(w[n], p, len);
		w[n++][len] = 0;
		p += len;
	}
	const char *usage = "(use never, hourly :MM, daily HH:MM, weekly DAY HH:MM or monthly D HH:MM)";
	if (n == 1 && (!strcasecmp(w[0], "never") || !strcasecmp(w[0], "off"))) {
		out->kind = SCHED_NEVER;
		return 0;
	}
	if (n >= 1 && !strcasecmp(w[0], "hourly")) {
		out->kind = SCHED_HOURLY;
		if (n == 1)
			return 0;
		char *end;
		long m = w[1][0] == ':' ? strtol(w[1] + 1, &end, 10) : -1;
		if (n == 2 && m >= 0 && m < 60 && w[1][1] && !*end) {
			out->minute = (int)m;
			return 0;
		}
	} else if (n == 2 && !strcasecmp(w[0], "daily")) {
		out->kind = SCHED_DAILY;
		if (!parse_hhmm(w[1], &out->hour, &out->minute))
			return 0;
	} else if (n == 3 && !strcasecmp(w[0], "weekly")) {
		out->kind = SCHED_WEEKLY;
		out->wday = -1;
		for (int i = 0; i < 7; i++)
			if (!strncasecmp(w[1], wdays[i], 3) && strlen(w[1]) >= 3)
				out->wday = i;
		if (out->wday >= 0 && !parse_hhmm(w[2], &out->hour, &out->minute))
			return 0;
	} else if (n == 3 && !strcasecmp(w[0], "monthly")) {
		out->kind = SCHED_MONTHLY;
		char *end;
		long d = strtol(w[1], &end, 10);
		if (*end || d < 1 || d > 28) {
			snprintf(err, errsize, "day of month must be 1 to 28 in '%s'", s);
			return -EINVAL;
		}
		out->mday = (int)d;
		if (!parse_hhmm(w[2], &out->hour, &out->minute))
			return 0;
	}
	snprintf(err, errsize, "bad schedule '%s' %s", s, usage);
	return -EINVAL;
}

/* The slot of the local date in *day (its time fields are replaced).
 * mktime's guess for an ambiguous or missing local time depends on its
 * previous calls, so both readings are tried: a time that exists twice
 * (fall-back) is its first instant, a time that does not exist
 * (spring-forward) is the instant after the gap it falls into. */
static time_t slot_of(const struct tm *day, int hour, int minute)
{
	time_t cand[2], best = (time_t)-1, later = (time_t)-1;
	for (int dst = 0; dst < 2; dst++) {
		struct tm t = *day;
		t.tm_hour = hour;
		t.tm_min = minute;
		t.tm_sec = 0;
		t.tm_isdst = dst;
		cand[dst] = mktime(&t);
		if (cand[dst] == (time_t)-1)
			continue;
		struct tm back;
		localtime_r(&cand[dst], &back);
		if (back.tm_year == day->tm_year && back.tm_mon == day->tm_mon &&
		    back.tm_mday == day->tm_mday && back.tm_hour == hour &&
		    back.tm_min == minute && (best == (time_t)-1 || cand[dst] < best))
			best = cand[dst];
		if (later == (time_t)-1 || cand[dst] > later)
			later = cand[dst];
	}
	return best != (time_t)-1 ? best : later;
}

/* Does the local date *day have a slot? */
static int day_matches(const struct schedule *s, const struct tm *day)
{
	switch (s->kind) {
	case SCHED_DAILY: return 1;
	case SCHED_WEEKLY: return day->tm_wday == s->wday;
	case SCHED_MONTHLY: return day->tm_mday == s->mday;
	default: return 0;
	}
}

/* The local date delta days from *day (noon avoids DST edges). */
static struct tm shift_day(const struct tm *day, int delta)
{
	struct tm t = *day;
	t.tm_mday += delta;
	t.tm_hour = 12;
	t.tm_min = t.tm_sec = 0;
	t.tm_isdst = -1;
	time_t x = mktime(&t);
	localtime_r(&x, &t);
	return t;
}

/* Hourly slots: minute m of every local hour (whole-hour zones move the
 * hour, not the minute, so this is UTC arithmetic plus the offset's
 * minutes). */
static time_t hourly_latest(const struct schedule *s, time_t now)
{
	struct tm lt;
	localtime_r(&now, &lt);
	long off = lt.tm_gmtoff;
	time_t local = now + off;
	time_t slot = local - ((local % 3600) + 3600) % 3600 + s->minute * 60 - off;
	if (slot > now)
		slot -= 3600;
	return slot;
}

time_t schedule_latest(const struct schedule *s, time_t now)
{
	if (s->kind == SCHED_NEVER)
		return 0;
	if (s->kind == SCHED_HOURLY)
		return hourly_latest(s, now);
	struct tm today;
	localtime_r(&now, &today);
	/* Back day by day: at most a month (plus a day for DST shifts). */
	for (int d = 0; d <= 32; d++) {
		struct tm day = d ? shift_day(&today, -d) : today;
		if (!day_matches(s, &day))
			continue;
		time_t t = slot_of(&day, s->hour, s->minute);
		if (t != (time_t)-1 && t <= now)
			return t;
	}
	return 0;
}

time_t schedule_next(const struct schedule *s, time_t now)
{
	if (s->kind == SCHED_NEVER)
		return 0;
	if (s->kind == SCHED_HOURLY)
		return hourly_latest(s, now) + 3600;
	struct tm today;
	localtime_r(&now, &today);
	for (int d = 0; d <= 32; d++) {
		struct tm day = d ? shift_day(&today, d) : today;
		if (!day_matches(s, &day))
			continue;
		time_t t = slot_of(&day, s->hour, s->minute);
		if (t != (time_t)-1 && t > now)
			return t;
	}
	return 0;
}

void schedule_format(const struct schedule *s, char *buf, size_t size)
{
	switch (s->kind) {
	case SCHED_NEVER: snprintf(buf, size, "never"); break;
	case SCHED_HOURLY: snprintf(buf, size, "hourly :%02d", s->minute); break;
	case SCHED_DAILY: snprintf(buf, size, "daily %02d:%02d", s->hour, s->minute); break;
	case SCHED_WEEKLY:
		snprintf(buf, size, "weekly %s %02d:%02d", wdays[((s->wday % 7) + 7) % 7],
			 s->hour, s->minute);
		break;
	case SCHED_MONTHLY:
		snprintf(buf, size, "monthly %d %02d:%02d", s->mday, s->hour, s->minute);
		break;
	}
}
