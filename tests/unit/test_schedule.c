/*
 * test_schedule.c - schedule slots (tools/schedule.c) across DST changes
 * and the config parser's messages (tools/config.c).
 *
 * Walks whole days minute by minute in Europe/Berlin and America/New_York
 * and counts how often the "latest slot" changes: once a day for a daily
 * schedule, also on the spring-forward day (02:30 does not exist) and on
 * the fall-back day (01:30 exists twice).
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../tools/config.h"
#include "../../tools/schedule.h"

static time_t local(int y, int mo, int d, int h, int mi)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
			 .tm_hour = h, .tm_min = mi, .tm_isdst = -1 };
	return mktime(&tm);
}

/* Slot changes in [from, to) stepping a minute (the window starts half
 * an hour early, so a slot at midnight is inside it). */
static int changes(const struct schedule *s, time_t from, time_t to)
{
	int n = 0;
	from -= 1800;
	to -= 1800;
	time_t last = schedule_latest(s, from);
	for (time_t t = from; t < to; t += 60) {
		time_t cur = schedule_latest(s, t);
		assert(cur <= t);
		if (cur != last) {
			assert(cur > last);
			n++;
			last = cur;
		}
	}
	return n;
}

static void parse_ok(const char *text, struct schedule *s)
{
	char err[256];
	if (schedule_parse(text, s, err, sizeof(err))) {
		fprintf(stderr, "schedule_parse(%s): %s\n", text, err);
		abort();
	}
}

static void dst_days(const char *tz, int spring_m, int spring_d, int fall_m, int fall_d,
		     const char *when)
{
	setenv("TZ", tz, 1);
	tzset();
	struct schedule s;
	parse_ok(when, &s);
	/* each day from the day before to the day after each change: once */
	for (int k = -1; k <= 1; k++) {
		time_t a = local(2026, spring_m, spring_d + k, 0, 0);
		time_t b = local(2026, spring_m, spring_d + k + 1, 0, 0);
		int n1 = changes(&s, a, b);
		a = local(2026, fall_m, fall_d + k, 0, 0);
		b = local(2026, fall_m, fall_d + k + 1, 0, 0);
		int n2 = changes(&s, a, b);
		if (n1 != 1 || n2 != 1)
			fprintf(stderr, "%s %s: day %+d: %d run(s) around spring, %d around fall\n",
				tz, when, k, n1, n2);
		assert(n1 == 1 && n2 == 1);
	}
	/* a whole year: 365 runs */
	int year = changes(&s, local(2026, 1, 1, 0, 0), local(2027, 1, 1, 0, 0));
	if (year != 365)
		fprintf(stderr, "%s %s: %d runs in 2026\n", tz, when, year);
	assert(year == 365);
}

static void expect_error(const char *text, const char *want)
{
	struct config *c = malloc(sizeof(*c));
	char err[600];
	int r = config_parse_buffer(text, strlen(text), "t.ini", c, err, sizeof(err));
	if (r == 0 || !strstr(err, want)) {
		fprintf(stderr, "config: want error containing '%s', got %d '%s'\n", want, r,
			r ? err : "");
		abort();
	}
	free(c);
}

int main(void)
{
	/* Berlin: 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00 */
	dst_days("Europe/Berlin", 3, 29, 10, 25, "daily 02:30");
	dst_days("Europe/Berlin", 3, 29, 10, 25, "daily 02:00");
	dst_days("Europe/Berlin", 3, 29, 10, 25, "daily 00:00");
	/* New York: 2026-03-08 02:00 -> 03:00, 2026-11-01 02:00 -> 01:00 */
	dst_days("America/New_York", 3, 8, 11, 1, "daily 01:30");
	dst_days("America/New_York", 3, 8, 11, 1, "daily 02:30");

	setenv("TZ", "Europe/Berlin", 1);
	tzset();
	struct schedule s;
	parse_ok("weekly sun 03:00", &s);
	assert(changes(&s, local(2026, 1, 1, 0, 0), local(2027, 1, 1, 0, 0)) == 52);
	parse_ok("monthly 1 04:00", &s);
	assert(changes(&s, local(2026, 1, 1, 0, 0), local(2027, 1, 1, 0, 0)) == 12);
	parse_ok("hourly :15", &s);
	/* 23 hours on the spring-forward day, 25 on the fall-back day */
	assert(changes(&s, local(2026, 3, 29, 0, 0), local(2026, 3, 30, 0, 0)) == 23);
	assert(changes(&s, local(2026, 10, 25, 0, 0), local(2026, 10, 26, 0, 0)) == 25);
	parse_ok("never", &s);
	assert(schedule_latest(&s, time(NULL)) == 0 && schedule_next(&s, time(NULL)) == 0);
	/* next is the first slot after now */
	parse_ok("daily 02:00", &s);
	time_t t = local(2026, 6, 1, 1, 0);
	assert(schedule_next(&s, t) == local(2026, 6, 1, 2, 0));
	assert(schedule_latest(&s, t) == local(2026, 5, 31, 2, 0));
	char buf[64];
	schedule_format(&s, buf, sizeof(buf));
	assert(!strcmp(buf, "daily 02:00"));

	char err[200];
	const char *bad[] = { "daily", "daily 24:00", "daily 2:00", "weekly xyz 02:00",
			      "monthly 31 02:00", "hourly 15", "yearly 02:00", "daily 02:00 x y z" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert(schedule_parse(bad[i], &s, err, sizeof(err)) == -22);

	/* config: a good file and the first bad line of bad ones */
	const char *good =
		"[tresor]\nstore = /srv/tresor\npassphrase-file = /etc/tresor.pass\n"
		"metrics-listen = 127.0.0.1:9109\n\n[schedule]\nsnapshot = daily 02:00\n"
		"push = daily 05:00 ; after the snapshot\ncheck = weekly sun 03:00\n"
		"check-read-data = 10%\n[retention]\nkeep-daily = 7\n"
		"[volume plans]\nmountpoint = /mnt/plans\noptions = allow_other,ro\n"
		"[remote offsite]\nurl = s3://bucket/tresor\nregion = auto\n";
	struct config *c = malloc(sizeof(*c));
	assert(config_parse_buffer(good, strlen(good), "t.ini", c, err, sizeof(err)) == 0);
	assert(c->nvol == 1 && !strcmp(c->vol[0].mountpoint, "/mnt/plans"));
	assert(c->keep.daily == 7 && c->keep.monthly == 0);	/* file replaces defaults */
	assert(c->check_read_data == 10 && c->nrem == 1);
	assert(!strcmp(c->state_file, "/srv/tresor/daemon.state"));
	assert(config_parse_buffer("[tresor]\nstore=/s\n", 17, "t.ini", c, err, sizeof(err)) == 0);
	assert(c->keep.daily == 30 && c->keep.monthly == 12);	/* defaults */
	free(c);
	expect_error("[tresor]\nstore = /s\nfoo = 1\n", "t.ini:3: unknown key 'foo'");
	expect_error("[tresor]\nstore = /s\n[schedule]\nsnapshot = at noon\n", "t.ini:4: snapshot: bad schedule");
	expect_error("[tresor]\nstore = /s\nthis is not ini\n", "t.ini:3: not NAME = VALUE");
	expect_error("[tresor]\nstore = relative\n", "t.ini:2: store must be an absolute path");
	expect_error("[tresor]\nstore = /s\n[volume a]\nmountpoint=/m\n[volume a]\n", "t.ini:5: [volume a] given twice");
	expect_error("[tresor]\nstore = /s\n\n[volume a]\n", "t.ini:4: [volume a] has no mountpoint");
	expect_error("[tresor]\npassphrase-file = /p\n", "t.ini:1: no 'store = /path'");
	expect_error("[nope]\n", "t.ini:1: unknown section [nope]");
	expect_error("[tresor]\nstore = /s\n[retention]\nkeep-daily = x\n", "t.ini:4: keep-daily: not a count");
	expect_error("[tresor]\nstore=/s\nmetrics-listen = 0.0.0.0\n", "t.ini:3: metrics-listen");
	expect_error("store = /s\n", "t.ini:1: 'store' is outside any section");
	expect_error("[tresor]\nstore = /s\n[volume a]\nmountpoint=/m\noptions = a b\n", "t.ini:5: options");
	/* push options of the daemon: the rate grammar of push --limit-upload */
	uint64_t rate = 0;
	assert(config_parse_rate("10M", &rate) == 0 && rate == 10u << 20);
	assert(config_parse_rate("512k", &rate) == 0 && rate == 512u << 10);
	assert(config_parse_rate("2.5MB/s", &rate) == 0 && rate == 5u << 19);
	assert(config_parse_rate("1G", &rate) == 0 && rate == 1u << 30);
	assert(config_parse_rate("300", &rate) == 0 && rate == 300);
	const char *badrate[] = { "0", "-1", "10Q", "x", "", "0.5", "inf", "nan", "10 M", "1e300" };
	for (size_t i = 0; i < sizeof(badrate) / sizeof(badrate[0]); i++)
		assert(config_parse_rate(badrate[i], &rate) == -EINVAL);
	c = malloc(sizeof(*c));
	const char *pushcfg = "[tresor]\nstore=/s\n[schedule]\npush-jobs = 8\npush-limit-upload = 10M\n";
	assert(config_parse_buffer(pushcfg, strlen(pushcfg), "t.ini", c, err, sizeof(err)) == 0);
	assert(c->push_jobs == 8 && !strcmp(c->push_limit_upload, "10M"));
	assert(c->push_image_every == -1);	/* not set: push's default */
	const char *imgcfg = "[tresor]\nstore=/s\n[schedule]\npush-image-every = 0\n";
	assert(config_parse_buffer(imgcfg, strlen(imgcfg), "t.ini", c, err, sizeof(err)) == 0);
	assert(c->push_image_every == 0);
	imgcfg = "[tresor]\nstore=/s\n[schedule]\npush-image-every = 24\n";
	assert(config_parse_buffer(imgcfg, strlen(imgcfg), "t.ini", c, err, sizeof(err)) == 0);
	assert(c->push_image_every == 24);
	free(c);
	expect_error("[tresor]\nstore = /s\n[schedule]\npush-image-every = -1\n", "t.ini:4: push-image-every: a number of pushes");
	expect_error("[tresor]\nstore = /s\n[schedule]\npush-image-every = often\n", "t.ini:4: push-image-every: a number of pushes");
	expect_error("[tresor]\nstore = /s\n[schedule]\npush-jobs = 0\n", "t.ini:4: push-jobs: a number from 1 to 32");
	expect_error("[tresor]\nstore = /s\n[schedule]\npush-limit-upload = fast\n", "t.ini:4: push-limit-upload: not a rate");
	printf("test_schedule: ok\n");
	return 0;
}
