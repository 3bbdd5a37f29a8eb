/*
 * schedule.h - when the daemon's jobs are due: "daily 02:00",
 * "weekly sun 03:00", "monthly 1 04:00", "hourly :15", "never".
 *
 * Slots are instants in local time (the process's TZ).  Each calendar
 * period has exactly one slot, so a run is never doubled or lost across a
 * DST change: a 02:30 slot on the spring-forward day (when 02:30 does not
 * exist) is the instant mktime gives for it (03:30 with glibc), and on the
 * fall-back day (when 01:30 exists twice) the first one mktime picks.
 * Pure functions: no clock of their own, no I/O.
 */
#ifndef TRESOR_SCHEDULE_H
#define TRESOR_SCHEDULE_H

#include <stddef.h>
#include <time.h>

enum sched_kind { SCHED_NEVER, SCHED_HOURLY, SCHED_DAILY, SCHED_WEEKLY, SCHED_MONTHLY };

struct schedule {
	enum sched_kind kind;
	int minute, hour;	/* local time of day */
	int wday;		/* weekly: 0 = Sunday .. 6 */
	int mday;		/* monthly: 1..28 */
};

/* Parse s; on error return -EINVAL with a reason in err. */
int schedule_parse(const char *s, struct schedule *out, char *err, size_t errsize);

/* The latest slot at or before now, or 0 if there is none (never). */
time_t schedule_latest(const struct schedule *s, time_t now);

/* The first slot after now, or 0 if there is none. */
time_t schedule_next(const struct schedule *s, time_t now);

/* s written back in the syntax schedule_parse reads. */
void schedule_format(const struct schedule *s, char *buf, size_t size);

#endif
