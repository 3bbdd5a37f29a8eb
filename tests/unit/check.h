/*
 * check.h - the few assertion macros the C unit tests use.  A failed
 * CHECK prints file:line and the expression and makes main return 1.
 */
#ifndef TRESOR_CHECK_H
#define TRESOR_CHECK_H

#include <stdio.h>

static int check_failures;

#define CHECK(cond)                                                     \
	do {                                                            \
		if (!(cond)) {                                          \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n",    \
				__FILE__, __LINE__, #cond);             \
			check_failures++;                               \
		}                                                       \
	} while (0)

#define CHECK_EQ(a, b)                                                  \
	do {                                                            \
		long long va_ = (long long)(a), vb_ = (long long)(b);   \
		if (va_ != vb_) {                                       \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s " \
				"(%lld != %lld)\n", __FILE__, __LINE__, \
				#a, #b, va_, vb_);                      \
			check_failures++;                               \
		}                                                       \
	} while (0)

#define CHECK_DONE() (check_failures ? 1 : 0)

#endif
