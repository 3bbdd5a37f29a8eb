/*
 * check_remote.h - does a remote hold what the store pushed to it?
 *
 * Every pack the store recorded as pushed must be there with its size
 * (and, reading data, verify completely); the metadata chain meta/1 ..
 * meta/N-1 must be complete and end where the store's last push ended
 * (a shorter chain is a rollback or a deletion, a longer one another
 * writer); with data, every delta must authenticate under its number.
 * Reads only.  Problems go through check_report_fn like store_check.
 */
#ifndef TRESOR_CHECK_REMOTE_H
#define TRESOR_CHECK_REMOTE_H

#include "check.h"
#include "repo.h"

struct remote_check_result {
	uint64_t packs, metas, problems;
	uint64_t not_pushed;	/* packs made since the last push */
	uint64_t bytes_read;
};

int check_remote(struct store *st, struct remote *r, const struct remote_cfg *cfg,
		 int read_data, check_report_fn report, void *arg,
		 void (*progress)(void *arg, uint64_t done, uint64_t total),
		 void *parg, struct remote_check_result *res);

#endif
